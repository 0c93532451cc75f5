"""The workbench in real headless Chromium: upload, columns, live cells, scores, votes, export, XSS.

One ``llmpick ui`` server and one browser for the module; SmolLM2 and Gemma 3
answer with at most 8 tokens. Screenshots of each view go to ``docs/``.
"""

from __future__ import annotations

import csv
import io
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conftest import free_port
from ui_server import REPO, start_ui, stop_ui

CHROMIUM = Path("/usr/bin/chromium")
DOCS = REPO / "docs"
SMOLLM = "smollm2-135m-instruct"
GEMMA = "gemma-3-270m"
TIMEOUT_MS = 240_000

pytestmark = [
    pytest.mark.slow,
    pytest.mark.browser,
    pytest.mark.skipif(
        not CHROMIUM.exists(), reason="needs Debian's chromium at /usr/bin/chromium"
    ),
]

QUESTIONS = [
    ("What is the capital of France?", "Paris", "geography"),
    ("What is 2 + 2?", "4", "math"),
    ("What color is the sky on a clear day?", "blue", "science"),
    ("What is the capital of Italy?", "Rome", "geography"),
    ("How many legs does a spider have?", "8", "science"),
    ("What is 10 minus 3?", "7", "math"),
    ("What is the opposite of hot?", "cold", "language"),
    ("What is the capital of Japan?", "Tokyo", "geography"),
    ("What do bees make?", "honey", "science"),
    ("What is 3 times 3?", "9", "math"),
]

PAYLOADS = [
    "<script>window.__xss = 1</script>",
    '<img src=x onerror="window.__xss = 2">',
    '<a href="javascript:window.__xss = 3">click</a>',
    "</textarea><script>window.__xss = 4</script>",
    '<img src="http://203.0.113.7/leak.png">',
]


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("workbench")


@pytest.fixture(scope="module")
def server(workdir: Path) -> Iterator[str]:
    port = free_port()
    process = start_ui(workdir / "llmpick.db", port, workdir)
    yield f"http://127.0.0.1:{port}"
    stop_ui(process)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    playwright = pytest.importorskip("playwright.sync_api")
    with playwright.sync_playwright() as p:
        chromium = p.chromium.launch(
            executable_path=str(CHROMIUM),
            args=[
                "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--no-first-run",
            ],
        )  # fmt: skip
        yield chromium
        chromium.close()


def _upload(page: Any, server: str, path: Path) -> str:
    page.goto(server + "/")
    page.set_input_files("#upload-file", str(path))
    page.click("#upload-button")
    page.wait_for_url("**/sheets/*")
    return str(page.url.rsplit("/", 1)[1])


def _add(page: Any, form: str, spec: str) -> None:
    page.fill(f"#{form} input[name=spec]", spec)
    with page.expect_navigation():
        page.click(f"#{form} button")


def _wait_finished(page: Any) -> None:
    page.wait_for_function(
        "document.body.dataset.state === 'finished'"
        " && document.querySelectorAll('td.cell.pending').length === 0",
        timeout=TIMEOUT_MS,
    )


def test_workbench_end_to_end(server: str, browser: Any, workdir: Path) -> None:
    data = workdir / "questions.csv"
    with data.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["question", "answer", "category"])
        writer.writerows(QUESTIONS)
    # bypass_csp: the page's CSP would block Playwright's wait_for_function (eval);
    # it also means the XSS test below proves escaping, not the CSP, keeps scripts out
    page = browser.new_page(viewport={"width": 1400, "height": 1000}, bypass_csp=True)
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    sheet = _upload(page, server, data)
    assert page.locator("#grid tbody tr").count() == len(QUESTIONS)

    page.fill("#settings-form input[name=max_tokens]", "8")
    page.click("#settings-form button")
    page.wait_for_selector("#toast.shown")
    _add(page, "add-model", SMOLLM)
    _add(page, "add-model", GEMMA)
    # cells fill live: some done while others still pending
    page.wait_for_function(
        "document.querySelectorAll('td.cell:not(.pending)').length > 0"
        " && document.querySelectorAll('td.cell.pending').length > 0",
        timeout=TIMEOUT_MS,
    )
    page.screenshot(path=str(DOCS / "workbench-filling.png"))
    _wait_finished(page)
    assert page.locator("#grid thead th.model").all_inner_texts() == [SMOLLM, GEMMA]

    _add(page, "add-scorer", "contains")
    _wait_finished(page)
    page.wait_for_selector("#summary-body table.summary")
    summary = page.locator("#summary-body").inner_text()
    assert SMOLLM in summary and GEMMA in summary and "95% interval" in summary
    assert page.locator("#summary-body td.ci").first.inner_text().startswith("[")
    assert page.locator("#summary-body ul.sentences li").count() == 1
    page.screenshot(path=str(DOCS / "workbench-grid.png"), full_page=True)

    page.locator("td.cell").first.click()
    page.wait_for_selector("#cell-dialog[open]")
    assert page.locator("#dialog-expected").inner_text() == "Paris"
    page.screenshot(path=str(DOCS / "workbench-cell.png"))
    page.click("#cell-dialog button")

    # export: the same cells as `llmpick results RUN --format csv`
    run_id = page.locator("#run-id").inner_text()
    exported = page.request.get(f"{server}/sheets/{sheet}/export.csv").text()
    cli = subprocess.run(
        [sys.executable, "-m", "llmpick", "results", run_id, "--format", "csv",
         "--db", str(workdir / "llmpick.db")],
        capture_output=True, check=True, cwd=workdir,
        env={**os.environ, "PYTHONPATH": str(REPO / "src")},
    )  # fmt: skip
    assert exported == cli.stdout.decode("utf-8")  # bytes: no newline translation
    table = list(csv.DictReader(io.StringIO(exported)))
    assert len(table) == len(QUESTIONS) and all(r[SMOLLM] is not None for r in table)

    # the LLM judge compares the two columns, so the votes get an agreement figure
    _add(page, "add-pairwise", SMOLLM)
    _wait_finished(page)

    page.goto(f"{server}/sheets/{sheet}/vote")
    expected = {q: a.lower() for q, a, _ in QUESTIONS}
    for i in range(10):
        vote_html = page.locator("#vote").inner_html()
        assert SMOLLM not in vote_html and GEMMA not in vote_html  # blind until the vote
        if i == 0:
            assert SMOLLM not in page.content() and GEMMA not in page.content()
        # the person prefers the answer that holds the expected one
        answer = expected[page.locator("#vote-prompt").inner_text()]
        left = answer in page.locator("#vote-left").inner_text().lower()
        right = answer in page.locator("#vote-right").inner_text().lower()
        verdict = {(1, 0): "left", (0, 1): "right", (1, 1): "tie"}.get((left, right), "both_bad")
        page.click(f"button.verdict[data-verdict={verdict}]")
        page.wait_for_function("document.getElementById('vote-reveal').textContent.length > 0")
        reveal = page.locator("#vote-reveal").inner_text()
        assert SMOLLM in reveal and GEMMA in reveal
        if i == 0:
            page.screenshot(path=str(DOCS / "workbench-vote.png"))
        page.wait_for_function(
            f"document.getElementById('vote-count').textContent === '{i + 1} votes'"
        )
        page.click("#vote-next")
        page.wait_for_function("document.getElementById('vote-reveal').textContent === ''")
    ranking = page.locator("#ranking-body tr")
    assert ranking.count() == 2
    assert "[" in ranking.first.inner_text()  # a bootstrap interval
    assert "Cohen's kappa" in page.locator("#agreement").inner_text()
    page.screenshot(path=str(DOCS / "workbench-ranking.png"), full_page=True)

    page.goto(f"{server}/sheets/{sheet}/report.html")  # the self-contained report
    assert page.locator("#summary tbody tr").count() == 2
    assert page.locator("#ranking tbody tr").count() == 2
    assert page.locator("#cells tbody tr").count() == len(QUESTIONS)
    page.screenshot(path=str(DOCS / "workbench-report.png"))
    assert errors == []
    page.close()


def test_untrusted_text_is_shown_as_text(server: str, browser: Any, workdir: Path) -> None:
    data = workdir / "payloads.csv"
    with data.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["id", "prompt", "payload", "other"])
        for i, text in enumerate(PAYLOADS):
            writer.writerow([f"r{i}", text, text, text[::-1]])
    page = browser.new_page(viewport={"width": 1400, "height": 900}, bypass_csp=True)
    requests: list[str] = []
    dialogs: list[str] = []
    page.on("request", lambda r: requests.append(r.url))
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    sheet = _upload(page, server, data)
    _add(page, "add-model", "column:payload")
    _add(page, "add-model", "column:other")
    _wait_finished(page)
    for i, text in enumerate(PAYLOADS):
        row = page.locator(f"#grid tbody tr[data-row=r{i}]")
        assert row.locator("td.text").first.inner_text() == text
        assert row.locator("td.cell .out").first.inner_text() == text
    page.locator("td.cell").first.click()
    assert page.locator("#dialog-output").inner_text() == PAYLOADS[0]
    page.click("#cell-dialog button")
    page.screenshot(path=str(DOCS / "workbench-xss.png"), full_page=True)
    page.reload()  # the server-rendered first page as well as the script's
    _wait_finished(page)
    page.goto(f"{server}/sheets/{sheet}/vote")
    page.click("button.verdict[data-verdict=tie]")
    page.wait_for_function("document.getElementById('vote-reveal').textContent.length > 0")
    assert page.evaluate("window.__xss === undefined")
    page.goto(f"{server}/sheets/{sheet}/report.html")
    cells = page.locator("#cells tbody tr")
    for i, text in enumerate(PAYLOADS):
        assert cells.nth(i).locator("td").nth(1).inner_text() == text
        assert cells.nth(i).locator("td").nth(3).inner_text() == text
    assert page.locator("#cells img, #cells script, #cells a").count() == 0
    assert page.evaluate("window.__xss === undefined")
    assert (
        page.locator("#grid img, #vote img, #grid a[href^=javascript], #vote script").count() == 0
    )
    assert dialogs == []
    assert all(url.startswith(server) for url in requests), requests
    page.close()


def test_served_on_the_gateway_behind_a_key(browser: Any, workdir: Path) -> None:
    """``llmpick serve --ui``: the page at /ui asks for a gateway key; the API works beside it."""
    from llmpick.serve.keys import KeyStore
    from llmpick.store import open_store

    db = workdir / "gateway.db"
    with open_store(db) as store:
        _key, secret = KeyStore(store).create("ann")
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    process = start_ui(db, port, workdir, serve=("-m", SMOLLM))
    try:
        page = browser.new_page(viewport={"width": 1400, "height": 900}, bypass_csp=True)
        page.goto(base + "/ui/")
        assert page.url == base + "/ui/login"  # no page, no API without a key
        assert page.request.get(base + "/ui/api/sheets/x").status == 401
        page.fill("#login-form input[name=key]", "lp-000000000000-wrong")
        page.click("#login-form button")
        page.wait_for_selector("#toast.shown")
        assert "not valid" in page.locator("#toast").inner_text()
        page.screenshot(
            path=str(DOCS / "workbench-login.png"),
            clip={"x": 0, "y": 0, "width": 900, "height": 200},
        )
        page.fill("#login-form input[name=key]", secret)
        with page.expect_navigation():
            page.click("#login-form button")
        assert page.url == base + "/ui/"

        data = workdir / "gateway.csv"
        data.write_text("question,answer\nWhat is 2 + 2?,4\nSay hello.,hello\n", encoding="utf-8")
        page.set_input_files("#upload-file", str(data))
        page.click("#upload-button")
        page.wait_for_url("**/ui/sheets/*")
        page.fill("#settings-form input[name=max_tokens]", "8")
        page.click("#settings-form button")
        page.wait_for_selector("#toast.shown")
        page.click("#add-model summary")  # this column's own prompt template
        page.fill("#add-model input[name=template]", "Answer in one word: {question}")
        _add(page, "add-model", SMOLLM)
        _wait_finished(page)
        assert page.locator("#grid td.cell .out").count() == 2
        assert "own template" in page.locator("#column-list").inner_text()
        page.close()

        import openai

        client = openai.OpenAI(base_url=base + "/v1", api_key=secret, max_retries=0)
        answer = client.chat.completions.create(
            model=SMOLLM, messages=[{"role": "user", "content": "Hi"}], max_tokens=4
        )
        assert answer.model == SMOLLM
        with pytest.raises(openai.AuthenticationError):
            openai.OpenAI(base_url=base + "/v1", api_key="nope", max_retries=0).models.list()
    finally:
        stop_ui(process)
