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
    # Two sources agreeing (84.8 and 84.8) raise no flag.
    assert rows["humaneval"].flag is None
    assert rows["ifeval"].flag is not None  # 71.2 (Qwen) vs 87.0 (quoted)


@pytest.mark.parametrize("fmt", ["json", "csv", "markdown", "table"])
def test_single_model_every_format(fmt: str) -> None:
    result = run("compare", "smollm2-135m-instruct", "-f", fmt)
    assert result.returncode == 0, result.stderr
    assert "SmolLM2-135M-Instruct" in result.stdout
