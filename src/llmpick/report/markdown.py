"""Render ``report.md`` from a ``result.json`` document: the same sections, as text tables."""

from __future__ import annotations

from typing import Any

from llmpick.report.html import _bytes, _interval, _num, _usd

__all__ = ["render_markdown"]


def _table(header: list[str], rows: list[list[Any]]) -> str:
    def cell(value: Any) -> str:
        return ("" if value is None else str(value)).replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def _cut(text: Any, width: int = 120) -> str:
    flat = " ".join(str(text or "").split())
    return flat if len(flat) <= width else flat[: width - 1] + "…"


def render_markdown(doc: dict[str, Any]) -> str:
    """The Markdown report for a ``result.json`` document."""
    verdict = doc["verdict"]
    evaluation = doc.get("evaluation") or {}
    models = list((evaluation.get("models") or {}).keys())
    weights = doc["shortlist"]["weights"]
    out = ["# llmpick choose report\n"]
    out.append(
        f"Task **{doc['constraints']['task']}** on {doc['data']['rows']} prompts from "
        f"`{doc['data']['source']}`; measured on {doc['data']['here']['name']}.\n"
    )
    out.append("## Verdict\n")
    head = f"**Winner: {verdict['winner']}.** " if verdict.get("winner") else ""
    out.append(head + verdict["sentence"] + "\n")
    for sentence in verdict.get("comparisons") or []:
        out.append(f"- {sentence} (measured)")
    if verdict.get("comparisons"):
        out.append("")
    if doc.get("ranking"):
        out.append(
            f"Ranking by your weights (quality {weights['quality']:.2f}, speed "
            f"{weights['speed']:.2f}, cost {weights['cost']:.2f}):\n"
        )
        out.append(
            _table(
                ["#", "model", "quality (measured)", "95% interval", "n",
                 "output tokens/s (measured)", "$/1M output tokens", "weighted"],
                [
                    [r["rank"], r["model"], _num(r["quality"]), _interval(r["quality_ci95"]),
                     r["n"], _num(r["output_tokens_per_second"]), _usd(r["usd_per_mtok"]),
                     _num(r["weighted_score"])]
                    for r in doc["ranking"]
                ],
            )
        )  # fmt: skip
        pareto = doc.get("pareto") or {}
        out.append(
            "Pareto front — quality vs latency: "
            f"{', '.join(pareto.get('quality_latency', [])) or '—'}; quality vs cost: "
            f"{', '.join(pareto.get('quality_cost', [])) or '—'}.\n"
        )
    c = doc["constraints"]
    out.append("## Constraints\n")
    out.append(
        _table(
            ["constraint", "value"],
            [
                ["task", c["task"]],
                ["device", c["device_resolved"]["name"]],
                ["languages", ", ".join(c["languages"]) or "any"],
                ["license", c["license"]],
                ["minimum context", c["min_context"] or "none"],
                ["maximum API price", c["max_price"] if c["max_price"] is not None else "none"],
            ],
        )
    )
    out.append("## Shortlist (fit estimated)\n")
    out.append(
        _table(
            ["model", "quant", "memory (estimated)", "decode tokens/s (estimated)", "score"],
            [
                [s["id"], s["quant"], _bytes(s["estimated_memory_bytes"]),
                 _num(s["decode_tokens_per_second"]), _num(s["score"])]
                for s in doc["shortlist"]["candidates"]
            ],
        )
    )  # fmt: skip
    out.append("### Candidates on this machine\n")
    out.append(
        _table(
            ["model", "from", "status", "error / how to run"],
            [
                [x["name"], x["origin"], x["status"],
                 x["error"] or (x["how_to_run"][0] if x["how_to_run"] else "")]
                for x in doc["candidates"]
            ],
        )
    )  # fmt: skip
    out.append("## Quality on your data (measured)\n")
    if evaluation:
        out.append(
            f"Scorer `{evaluation.get('scorer')}`; {evaluation['cells_cached']} of "
            f"{evaluation['cells_total']} cells reused from the store.\n"
        )
        out.append(
            _table(
                ["model", "mean", "95% interval", "n", "errors", "latency p50 (s)"],
                [
                    [name, _num(m["mean"]), _interval(m["ci95"]), m["n"], m["errors"],
                     _num(m["latency_s"]["p50"])]
                    for name, m in evaluation["models"].items()
                ],
            )
        )  # fmt: skip
        categories = evaluation.get("categories") or {}
        if categories:
            out.append("### Per category (mean score, measured)\n")
            out.append(
                _table(
                    ["category", *models],
                    [
                        [cat, *[_num((per.get(m) or {}).get("mean")) for m in models]]
                        for cat, per in sorted(categories.items())
                    ],
                )
            )
    if doc.get("samples"):
        out.append("## Side-by-side outputs (measured)\n")
        out.append(
            _table(
                ["prompt", "expected", *models],
                [
                    [_cut(s["prompt"], 80), _cut(s["expected"], 40),
                     *[f"{_cut(s.get(m), 100)} (score {_num(s.get(m + ' score'))})"
                       for m in models]]
                    for s in doc["samples"]
                ],
            )
        )  # fmt: skip
    out.append("## Failures\n")
    failed = [x for x in doc["candidates"] if x["status"] == "failed"]
    for x in failed:
        out.append(f"- **{x['name']}** failed: {x['error']}")
    if failed:
        out.append("")
    if doc.get("failures"):
        out.append(
            _table(
                ["prompt", "model", "output", "why"],
                [[f["row_id"], f["model"], _cut(f["output"], 80), _cut(f["why"], 80)]
                 for f in doc["failures"]],
            )
        )  # fmt: skip
    elif not failed:
        out.append("None.\n")
    perf = {k: v for k, v in (doc.get("performance") or {}).items() if "measured" in v}
    out.append("## Speed and memory (measured here vs estimated)\n")
    out.append(
        _table(
            ["model", "TTFT p50 s (measured)", "TPOT p50 s (measured)",
             "output tokens/s (measured)", "decode tokens/s (estimated)",
             "peak memory (measured)", "total memory (estimated)"],
            [
                [name, _num(p["measured"]["time_to_first_token_s_p50"]),
                 _num(p["measured"]["time_per_output_token_s_p50"]),
                 _num(p["measured"]["output_tokens_per_second"]),
                 _num(p["estimated"]["decode_tokens_per_second"]),
                 _bytes(p["measured"]["peak_memory_bytes"]), _bytes(p["estimated"]["total_bytes"])]
                for name, p in perf.items()
            ],
        )
    )  # fmt: skip
    for name, p in (doc.get("performance") or {}).items():
        if "error" in p:
            out.append(f"- {name}: measurement failed: {p['error']}")
    out.append("## Cost\n")
    out.append(
        "Self-hosted $ per 1M output tokens = device $/hour / (3600 x output tokens/s) x 1e6, "
        "the device kept busy.\n"
    )
    out.append(
        _table(
            ["model", "device", "$/hour", "output tokens/s", "$/1M output tokens", "API prices",
             "basis"],
            [
                [r["model"], r["device"],
                 _usd(r["hourly"]["usd_per_hour"]) if r["hourly"] else "—",
                 f"{_num(r['throughput']['tokens_per_second'])} ({r['throughput']['kind']})"
                 if r["throughput"] else "—",
                 _usd(r["usd_per_mtok"]),
                 "; ".join(f"{a['provider']} {_usd(a['input_usd_per_mtok'])}/"
                           f"{_usd(a['output_usd_per_mtok'])} ({a['source']}, {a['date']})"
                           for a in r["api_prices"]) or "none in the catalog",
                 (f"{r['hourly']['provider']} {r['hourly'].get('url') or ''} "
                  f"{r['hourly'].get('date') or ''}".strip() if r["hourly"] else "")
                 + ("; " + "; ".join(r["notes"]) if r["notes"] else "")]
                for r in doc.get("cost") or []
            ],
        )
    )  # fmt: skip
    if doc.get("warnings"):
        out.append("## Warnings\n")
        out += [f"- {w}" for w in doc["warnings"]]
        out.append("")
    return "\n".join(out)
