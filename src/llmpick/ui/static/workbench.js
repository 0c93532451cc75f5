// llmpick workbench: the page's only script (no library, works offline).
// Untrusted text (dataset cells, model outputs) is only ever written with textContent.
"use strict";

const BASE = document.querySelector('meta[name="llmpick-base"]').content;
const CSRF = document.querySelector('meta[name="csrf-token"]').content;
const PAGE_ROWS = 50;

function el(tag, text, cls) {
  const node = document.createElement(tag);
  if (text !== undefined && text !== null) node.textContent = String(text);
  if (cls) node.className = cls;
  return node;
}

function toast(text) {
  const box = document.getElementById("toast");
  box.textContent = text;
  box.classList.add("shown");
  setTimeout(() => box.classList.remove("shown"), 4000);
}

async function api(path, options = {}) {
  const init = { method: options.method || "GET", headers: options.headers || {} };
  if (init.method !== "GET") init.headers["X-CSRF-Token"] = CSRF;
  if (options.json !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(options.json);
  } else if (options.body !== undefined) {
    init.body = options.body;
  }
  const response = await fetch(BASE + path, init);
  const data = await response.json().catch(() => null);
  if (!response.ok) {
    const message = data && (data.error || data.detail);
    throw new Error(typeof message === "string" ? message : "request failed: " + response.status);
  }
  return data;
}

function fmt(x, digits = 2) {
  return x === null || x === undefined ? "–" : Number(x).toFixed(digits);
}

// -- start page -----------------------------------------------------------------------

function initIndex() {
  for (const used of document.querySelectorAll("button.from-run")) {
    used.addEventListener("click", async () => {
      try {
        const sheet = await api("/api/sheets/from-run/" + encodeURIComponent(used.dataset.run),
          { method: "POST" });
        window.location.href = BASE + "/sheets/" + encodeURIComponent(sheet.id);
      } catch (error) { toast(error.message); }
    });
  }
  const button = document.getElementById("upload-button");
  if (!button) return;
  button.addEventListener("click", async () => {
    const file = document.getElementById("upload-file").files[0];
    if (!file) return toast("choose a file first");
    try {
      const sheet = await api("/api/sheets?filename=" + encodeURIComponent(file.name),
        { method: "POST", body: file, headers: { "Content-Type": "application/octet-stream" } });
      window.location.href = BASE + "/sheets/" + encodeURIComponent(sheet.id);
    } catch (error) { toast(error.message); }
  });
}

// -- sheet page -------------------------------------------------------------------------

const state = { offset: 0, total: 0, rows: [], models: [], lastDone: -1, timer: null };

function filterQuery() {
  const form = document.getElementById("filters");
  const params = new URLSearchParams();
  params.set("offset", state.offset);
  params.set("limit", PAGE_ROWS);
  const category = form.elements.category.value;
  if (category) params.set("category", category);
  if (form.elements.failed.checked) params.set("failed", "true");
  if (form.elements.disagree.checked) params.set("disagree", "true");
  if (form.elements.search.value) params.set("search", form.elements.search.value);
  if (form.elements.sort.value) params.set("sort", form.elements.sort.value);
  return params.toString();
}

function renderGrid(page) {
  state.total = page.total_rows;
  state.rows = page.rows;
  state.models = page.models;
  const table = document.getElementById("grid");
  const head = el("tr");
  for (const name of ["#", "category", "prompt", "expected"]) head.appendChild(el("th", name));
  for (const model of page.models) head.appendChild(el("th", model, "model"));
  table.tHead.replaceChildren(head);
  const body = document.createElement("tbody");
  page.rows.forEach((row, index) => {
    const tr = el("tr");
    tr.dataset.row = row.row_id;
    tr.appendChild(el("td", row.row_id));
    tr.appendChild(el("td", row.category || ""));
    tr.appendChild(el("td", row.prompt, "text"));
    tr.appendChild(el("td", row.expected || "", "text"));
    row.cells.forEach((cell, c) => {
      const td = el("td", null, "cell" + (cell.error ? " failed" : cell.output === null ? " pending" : ""));
      td.dataset.model = cell.model;
      td.appendChild(el("div", cell.error || cell.output || "", "out"));
      if (cell.score !== null) td.appendChild(el("span", fmt(cell.score), "score"));
      td.addEventListener("click", () => openCell(index, c));
      tr.appendChild(td);
    });
    body.appendChild(tr);
  });
  table.tBodies[0].replaceWith(body);
  const last = page.offset + page.rows.length;
  document.getElementById("page-info").textContent =
    "rows " + (page.total_rows ? page.offset + 1 : 0) + "–" + last + " of " + page.total_rows;
}

function openCell(rowIndex, cellIndex) {
  const row = state.rows[rowIndex];
  const cell = row.cells[cellIndex];
  document.getElementById("dialog-title").textContent = cell.model + " · row " + row.row_id;
  document.getElementById("dialog-output").textContent = cell.error || cell.output || "";
  document.getElementById("dialog-expected").textContent = row.expected || "";
  document.getElementById("dialog-prompt").textContent = row.prompt;
  const list = document.getElementById("dialog-scores");
  list.replaceChildren(...Object.entries(cell.scores).map(([k, v]) => el("li", k + " → " + v)));
  document.getElementById("cell-dialog").showModal();
}

async function loadGrid(sheet) {
  renderGrid(await api("/api/sheets/" + sheet + "/grid?" + filterQuery()));
}

function renderSummary(view) {
  const box = document.getElementById("summary-body");
  const result = view.result;
  if (!result || !result.scorer) {
    box.textContent = "Scores appear here once a scorer column has run.";
    return;
  }
  box.className = "";
  const table = el("table", null, "list summary");
  const head = el("tr");
  for (const name of ["model", "mean (" + result.scorer + ")", "95% interval", "n", "errors", "latency p50 (s)", "cost (USD)"])
    head.appendChild(el("th", name));
  table.appendChild(head);
  for (const [model, s] of Object.entries(result.models)) {
    const tr = el("tr");
    tr.appendChild(el("td", model));
    tr.appendChild(el("td", fmt(s.mean)));
    tr.appendChild(el("td", s.ci95 ? "[" + fmt(s.ci95[0]) + ", " + fmt(s.ci95[1]) + "]" : "–", "ci"));
    tr.appendChild(el("td", s.n));
    tr.appendChild(el("td", s.errors));
    tr.appendChild(el("td", fmt(s.latency_s.p50, 3)));
    tr.appendChild(el("td", s.cost_usd === null ? "–" : fmt(s.cost_usd, 4)));
    table.appendChild(tr);
  }
  const sentences = el("ul", null, "sentences");
  for (const c of result.comparisons) sentences.appendChild(el("li", c.sentence));
  box.replaceChildren(table, sentences);
}

async function refreshSheet(sheet, force) {
  const progress = await api("/api/sheets/" + sheet + "/progress");
  const bar = document.getElementById("progress");
  bar.max = progress.total || 1;
  bar.value = progress.done;
  document.getElementById("progress-text").textContent =
    progress.done + " / " + progress.total + " cells · " + progress.state;
  document.getElementById("progress-message").textContent = progress.message || "";
  document.body.dataset.state = progress.state;
  if (force || progress.done !== state.lastDone) {
    state.lastDone = progress.done;
    await loadGrid(sheet);
    renderSummary(await api("/api/sheets/" + sheet + "/summary"));
  }
  const runId = document.getElementById("run-id");
  if (progress.run_id && runId) runId.textContent = progress.run_id;
  clearTimeout(state.timer);
  if (progress.state === "running") state.timer = setTimeout(() => refreshSheet(sheet), 700);
}

function formJson(form) {
  const out = {};
  for (const [key, value] of new FormData(form).entries()) out[key] = value === "" ? null : value;
  return out;
}

function initSheet() {
  const sheet = document.body.dataset.sheet;
  const addColumn = (kind) => async (event) => {
    event.preventDefault();
    const fields = event.target.elements;
    const body = fields.rubric  // the judge form: the rubric as a JSON string argument
      ? { kind, spec: "judge:rubric=" + JSON.stringify(fields.rubric.value.trim()),
          judge_model: fields.judge_model.value.trim() }
      : { kind, spec: fields.spec.value.trim() };
    if (kind === "model") {  // the column's own template and sampling, where given
      const own = {
        template: fields.template.value.trim() || null,
        max_tokens: fields.max_tokens.value === "" ? null : Number(fields.max_tokens.value),
        temperature: fields.temperature.value === "" ? null : Number(fields.temperature.value),
      };
      if (own.template !== null || own.max_tokens !== null || own.temperature !== null) body.settings = own;
    }
    try {
      await api("/api/sheets/" + sheet + "/columns", { method: "POST", json: body });
      window.location.reload();
    } catch (error) { toast(error.message); }
  };
  document.getElementById("add-model").addEventListener("submit", addColumn("model"));
  document.getElementById("add-scorer").addEventListener("submit", addColumn("scorer"));
  document.getElementById("add-judge").addEventListener("submit", addColumn("scorer"));
  document.getElementById("add-pairwise").addEventListener("submit", addColumn("pairwise"));
  document.getElementById("settings-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const body = formJson(event.target);
    body.max_tokens = Number(body.max_tokens);
    body.temperature = Number(body.temperature);
    try {
      await api("/api/sheets/" + sheet + "/settings", { method: "POST", json: body });
      toast("saved; press Resume to run with the new settings");
      refreshSheet(sheet, true);
    } catch (error) { toast(error.message); }
  });
  document.getElementById("stop").addEventListener("click", async () => {
    await api("/api/sheets/" + sheet + "/stop", { method: "POST" });
    refreshSheet(sheet, true);
  });
  document.getElementById("resume").addEventListener("click", async () => {
    try {
      await api("/api/sheets/" + sheet + "/run", { method: "POST" });
      refreshSheet(sheet, true);
    } catch (error) { toast(error.message); }
  });
  document.getElementById("prev").addEventListener("click", () => {
    state.offset = Math.max(0, state.offset - PAGE_ROWS);
    loadGrid(sheet);
  });
  document.getElementById("next").addEventListener("click", () => {
    if (state.offset + PAGE_ROWS < state.total) state.offset += PAGE_ROWS;
    loadGrid(sheet);
  });
  const filters = document.getElementById("filters");
  filters.addEventListener("change", () => { state.offset = 0; loadGrid(sheet); });
  filters.addEventListener("submit", (event) => { event.preventDefault(); loadGrid(sheet); });
  refreshSheet(sheet, true);
}

// -- vote page ---------------------------------------------------------------------------

function renderRanking(ranking) {
  document.getElementById("vote-count").textContent = ranking.votes + " votes";
  const body = document.getElementById("ranking-body");
  body.replaceChildren(...ranking.ranking.map((model, i) => {
    const tr = el("tr");
    const ci = ranking.ci95[model];
    tr.appendChild(el("td", i + 1));
    tr.appendChild(el("td", model));
    tr.appendChild(el("td", fmt(ranking.strengths[model])));
    tr.appendChild(el("td", ci ? "[" + fmt(ci[0]) + ", " + fmt(ci[1]) + "]" : "–"));
    return tr;
  }));
  const agreement = ranking.judge_agreement;
  document.getElementById("agreement").textContent = agreement
    ? "Agreement with the LLM judge on " + agreement.n + " shared pairs: Cohen's kappa " +
      (agreement.kappa === null ? "n/a" : fmt(agreement.kappa)) +
      " (raw agreement " + (agreement.agreement === null ? "n/a" : fmt(agreement.agreement)) + ")"
    : "";
}

function showTask(task) {
  const box = document.getElementById("vote");
  if (!task) {
    delete box.dataset.vote;
    document.getElementById("vote-reveal").textContent = "Nothing left to vote on.";
    return;
  }
  box.dataset.vote = task.vote_id;
  document.getElementById("vote-prompt").textContent = task.prompt;
  document.getElementById("vote-left").textContent = task.left;
  document.getElementById("vote-right").textContent = task.right;
  document.getElementById("vote-reveal").textContent = "";
  document.getElementById("vote-next").hidden = true;
  for (const b of document.querySelectorAll("button.verdict")) b.disabled = false;
}

function initVote() {
  const sheet = document.body.dataset.sheet;
  const box = document.getElementById("vote");
  for (const button of document.querySelectorAll("button.verdict")) {
    button.addEventListener("click", async () => {
      if (!box.dataset.vote) return;
      for (const b of document.querySelectorAll("button.verdict")) b.disabled = true;
      try {
        const result = await api("/api/votes/" + box.dataset.vote,
          { method: "POST", json: { verdict: button.dataset.verdict } });
        document.getElementById("vote-reveal").textContent =
          "A was " + result.left_model + ", B was " + result.right_model + ".";
        document.getElementById("vote-next").hidden = false;
        renderRanking(await api("/api/sheets/" + sheet + "/ranking"));
      } catch (error) { toast(error.message); }
    });
  }
  document.getElementById("vote-next").addEventListener("click", async () => {
    showTask(await api("/api/sheets/" + sheet + "/votes/next", { method: "POST" }));
  });
}

function initLogin() {
  document.getElementById("login-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    try {
      await api("/api/login", { method: "POST", body: event.target.elements.key.value });
      window.location.href = BASE + "/";
    } catch (error) { toast(error.message); }
  });
}

document.addEventListener("DOMContentLoaded", () => {
  const page = document.body.dataset.page;
  if (page === "login") initLogin();
  if (page === "index") initIndex();
  if (page === "sheet") initSheet();
  if (page === "vote") initVote();
});
