"""``llmpick compare``: formats, flags and errors, through the real CLI."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys

import pytest

from llmpick.catalog import load_catalog
from llmpick.catalog.compare import compare_rows

PAIR = ["llama-3.1-8b-instruct", "qwen2.5-7b-instruct"]


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", "from llmpick.cli import main; main()", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={**os.environ, "COLUMNS": "240"},
    )


def test_compare_json_has_the_promised_fields() -> None:
    result = run("compare", *PAIR, "--format", "json")
    assert result.returncode == 0, result.stderr
    cards = json.loads(result.stdout)
    assert [c["id"] for c in cards] == [
        "meta-llama/Llama-3.1-8B-Instruct",
        "Qwen/Qwen2.5-7B-Instruct",
    ]
    for card in cards:
        assert set(card["params"]) >= {"total", "active"}
        assert set(card["context"]) >= {"native", "max"}
        assert set(card["license"]) >= {"name", "commercial_use"}
        assert {"num_hidden_layers", "num_key_value_heads", "head_dim"} <= set(card["architecture"])
        assert isinstance(card["benchmarks"], list) and isinstance(card["prices"], list)
    assert cards[1]["context"] == {**cards[1]["context"], "native": 32768, "max": 131072}


def test_compare_markdown_and_csv() -> None:
    md = run("compare", *PAIR, "-f", "markdown")
    assert md.returncode == 0, md.stderr
    assert md.stdout.startswith("| section | field | meta-llama/Llama-3.1-8B-Instruct")
    assert "| benchmark | mmlu |" in md.stdout

    out = run("compare", *PAIR, "-f", "csv")
    assert out.returncode == 0, out.stderr
    rows = list(csv.DictReader(io.StringIO(out.stdout)))
    by_field = {r["field"]: r for r in rows}
    assert by_field["native context"]["winner"] == "meta-llama/Llama-3.1-8B-Instruct"
    assert by_field["attention / KV heads"]["Qwen/Qwen2.5-7B-Instruct"] == "28 / 4"
    # Meta's 72.6 against the user's document's 80.5: flagged, both shown.
    humaneval = by_field["humaneval"]
    assert "72.6" in humaneval["meta-llama/Llama-3.1-8B-Instruct"]
    assert "80.5" in humaneval["meta-llama/Llama-3.1-8B-Instruct"]
    assert "sources differ" in humaneval["flag"]


def test_compare_table_renders() -> None:
    result = run("compare", "gpt-oss-20b", "qwen3-30b-a3b")
    assert result.returncode == 0, result.stderr
    assert "openai/gpt-oss-20b" in result.stdout
    assert "not measured" in result.stdout


def test_unknown_id_is_one_line_with_suggestions() -> None:
    result = run("compare", "qwen2.5-7b-instrct")
    assert result.returncode == 2
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1
    assert "Qwen/Qwen2.5-7B-Instruct" in lines[0]
    assert "Traceback" not in result.stderr


def test_rows_flag_only_real_disagreements() -> None:
    catalog = load_catalog()
    rows = {r.label: r for r in compare_rows([catalog.get("qwen2.5-7b-instruct")])}
    # Two sources agreeing (84.8 and 84.8) raise no disagreement flag.
    assert "differ" not in (rows["humaneval"].flag or "")
    assert "differ" in (rows["ifeval"].flag or "")  # 71.2 (Qwen) vs 87.0 (quoted)


# Issue 14: third-party figures that the maker's own table contradicts, and the maker's figure.
CONTRADICTED = [
    ("llama-3.1-8b-instruct", "mmlu", 77.5),
    ("llama-3.1-8b-instruct", "gpqa-diamond", 51.0),
    ("llama-3.1-8b-instruct", "ifeval", 89.0),
    ("llama-3.1-8b-instruct", "humaneval", 80.5),
    ("llama-3.1-8b-instruct", "math", 69.9),
    ("qwen2.5-7b-instruct", "ifeval", 87.0),
    ("qwen2.5-coder-7b-instruct", "mbpp", 92.7),
]


@pytest.mark.parametrize(("model", "benchmark", "value"), CONTRADICTED)
def test_contradicted_third_party_figures_stay_visible_and_flagged(
    model: str, benchmark: str, value: float
) -> None:
    card = load_catalog().get(model)
    third = next(b for b in card.scores(benchmark) if b.value == value)
    assert third.origin == "third-party" and not third.verified
    assert card.contradicting(third), "the maker's own figure must be in the card"
    row = next(r for r in compare_rows([card]) if r.label == benchmark)
    assert "contradicted by the maker's" in row.cells[card.id]
    assert "contradicts the maker's" in (row.flag or "")


def test_compare_marks_unverified_architecture_and_figures() -> None:
    catalog = load_catalog()
    unchecked = next(c for c in catalog if not c.architecture.verified)
    rows = {r.label: r for r in compare_rows([unchecked])}
    assert rows["checked against config.json"].cells[unchecked.id] == "unverified"
    assert rows["checked against config.json"].flag
    card = catalog.get("llama-3.1-8b-instruct")
    cell = next(r for r in compare_rows([card]) if r.label == "livecodebench").cells[card.id]
    assert "22 (" in cell and "unverified" in cell.split("22 (", 1)[1]


def test_catalog_stats_table_and_json() -> None:
    result = run("catalog", "--stats", "-f", "json")
    assert result.returncode == 0, result.stderr
    stats = json.loads(result.stdout)
    assert stats["cards"] == len(load_catalog())
    assert stats["fields"] == sum(k["fields"] for k in stats["kinds"])
    assert 0 <= stats["share_verified"] <= 1
    assert {k["kind"] for k in stats["kinds"]} == {"architecture", "benchmark"}
    table = run("catalog", "--stats")
    assert table.returncode == 0 and "share verified" in table.stdout


@pytest.mark.parametrize("fmt", ["json", "csv", "markdown", "table"])
def test_single_model_every_format(fmt: str) -> None:
    result = run("compare", "smollm2-135m-instruct", "-f", fmt)
    assert result.returncode == 0, result.stderr
    assert "SmolLM2-135M-Instruct" in result.stdout
