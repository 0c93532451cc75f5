"""Evaluating tool calls and structured output: rows that carry tools / response_format.

The scorer's comparison rules are checked on hand-made cells; the runner is
checked end to end with the bundled suite (a perfect reference column, then the
bundled SmolLM2 under its grammar, whose calls must always parse and validate).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from llmpick.backends.base import SamplingParams
from llmpick.backends.tool_format import split_output
from llmpick.backends.tools import FunctionCall, ToolCall
from llmpick.context import Context
from llmpick.errors import DataError, ScorerError
from llmpick.evaluate import cell_rows, load_dataset, run_eval
from llmpick.evaluate.scorers.base import Cell
from llmpick.evaluate.scorers.registry import default_scorers
from llmpick.evaluate.scorers.tool_call import json_equal, tool_call
from llmpick.evaluate.suites import load_suite
from llmpick.store import open_store

PARAMS = SamplingParams.model_validate({"max_tokens": 96, "temperature": 0.0})


def _cell(expected: Any, calls: list[tuple[str, str]], output: str = "") -> Cell:
    return Cell(
        row_id="r1",
        row={"expected": expected},
        model="m",
        repeat=0,
        prompt="p",
        output=output,
        latency_s=0.1,
        tool_calls=[
            ToolCall(id=f"c{i}", function=FunctionCall(name=n, arguments=a))
            for i, (n, a) in enumerate(calls)
        ],
    )


def test_json_values_compare_by_value_not_text() -> None:
    assert json_equal({"a": 1, "b": [1, 2]}, {"b": [1.0, 2], "a": 1.0})
    assert not json_equal({"a": True}, {"a": 1})  # true is not 1
    assert not json_equal({"a": 1, "x": 2}, {"a": 1})
    assert json_equal({"a": {"b": 1, "x": 2}, "y": 3}, {"a": {"b": 1}}, ignore_extra=True)
    assert not json_equal([1, 2], [2, 1])


def test_scorer_labels_each_kind_of_miss() -> None:
    want = [{"name": "get_weather", "arguments": {"city": "Paris"}}]
    score = tool_call()
    assert score(_cell(want, [("get_weather", '{"city": "Paris"}')])).value == 1.0
    assert score(_cell(want, [])).label == "no-call"
    wrong = score(_cell(want, [("set_timer", '{"minutes": 3}')]))
    assert wrong.label == "wrong-function" and "expected get_weather" in (wrong.explanation or "")
    args = score(_cell(want, [("get_weather", '{"city": "Lyon"}')]))
    assert args.label == "wrong-arguments" and "Lyon" in (args.explanation or "")
    assert score(_cell(want, [("get_weather", "{not json")])).label == "invalid-arguments"
    extra = [("get_weather", '{"city": "Paris", "unit": "celsius"}')]
    assert score(_cell(want, extra)).value == 0.0
    assert tool_call(ignore_extra_arguments=True)(_cell(want, extra)).value == 1.0
    # OpenAI's shape with arguments as JSON text, and [] for "no call expected"
    openai_shape = {"function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}
    assert score(_cell([openai_shape], [("get_weather", '{"city":"Paris"}')])).value == 1.0
    assert score(_cell([], [], output="Bonjour")).value == 1.0
    assert score(_cell([], [("get_weather", "{}")])).label == "wrong-count"


def test_parallel_calls_in_order_or_in_any_order() -> None:
    want = [
        {"name": "get_weather", "arguments": {"city": "Tokyo"}},
        {"name": "get_weather", "arguments": {"city": "Berlin"}},
    ]
    swapped = [("get_weather", '{"city": "Berlin"}'), ("get_weather", '{"city": "Tokyo"}')]
    assert tool_call()(_cell(want, swapped)).label == "wrong-arguments"
    assert tool_call(ignore_order=True)(_cell(want, swapped)).value == 1.0
    twice = [("get_weather", '{"city": "Tokyo"}'), ("get_weather", '{"city": "Tokyo"}')]
    assert tool_call(ignore_order=True)(_cell(want, twice)).value == 0.0  # one call, one match


def test_bad_expected_rows_fail_before_the_run() -> None:
    scorer = tool_call()
    with pytest.raises(ScorerError, match="row 2 has no column 'expected'"):
        scorer.check_rows([{"id": 1, "expected": []}, {"id": 2}])
    with pytest.raises(ScorerError, match="not JSON"):
        scorer.check_rows([{"id": 1, "expected": "[{oops"}])
    with pytest.raises(ScorerError, match="needs a function 'name'"):
        scorer.check_rows([{"id": 1, "expected": [{"arguments": {}}]}])


def test_dataset_rows_carry_request_fields_and_bad_ones_are_named(tmp_path: Path) -> None:
    rows, _ = load_suite("tools")
    path = tmp_path / "t.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows), encoding="utf-8")
    ds = load_dataset(path)
    assert ds.rows[0].request.tools and ds.rows[0].request.tools[0].function.name == "get_weather"
    follow = next(r for r in ds.rows if r.id == "followup-01")
    assert [m.role for m in follow.messages] == ["user", "assistant", "tool"]
    assert follow.messages[1].tool_calls and follow.messages[2].tool_call_id == "call_w1"
    assert default_scorers(ds.columns)[0].name == "tool_call"

    bad = tmp_path / "bad.csv"
    bad.write_text('id,prompt,tools\n1,hi,"[{""type"": ""function""}]"\n', encoding="utf-8")
    with pytest.raises(DataError, match=r"row 1.*'tools\.0\.function'"):
        load_dataset(bad)
    broken = tmp_path / "broken.csv"
    broken.write_text("id,prompt,tools\n1,hi,[{oops\n", encoding="utf-8")
    with pytest.raises(DataError, match="column 'tools' is not JSON"):
        load_dataset(broken)


def test_suite_reference_answers_score_one(context: Context, tmp_path: Path) -> None:
    result = run_eval(context, "tools", ["column:reference"], None, PARAMS, tmp_path / "r.db")
    assert result.models["column:reference"].mean == 1.0
    assert result.models["column:reference"].n == 11


@pytest.mark.slow
def test_local_model_calls_only_declared_tools_with_valid_arguments(
    context: Context, tmp_path: Path, smollm2_path: Path
) -> None:
    """Under the grammar every call names a declared tool and its arguments fit the schema."""
    rows, _ = load_suite("tools")
    picked = [r for r in rows if r["id"] in ("weather-01", "order-01", "timer-01", "parallel-01")]
    data = tmp_path / "few.jsonl"
    data.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in picked), encoding="utf-8")
    db = tmp_path / "r.db"
    model = f"llamacpp:{smollm2_path}"
    result = run_eval(context, data, [model], ["tool_call:ignore_order=true"], PARAMS, db)
    assert result.models[model].n == 4 and result.models[model].errors == 0
    tools = {r["id"]: {t["function"]["name"]: t["function"] for t in r["tools"]} for r in picked}
    with open_store(db) as store:
        cells = cell_rows(store, result.run_id)
    called = 0
    for cell in cells:
        split = split_output(cell["output"])  # the store keeps the raw text
        if cell["row_id"] in ("order-01", "timer-01"):  # required / named: a call must come
            assert split.tool_calls, cell
        for call in split.tool_calls:
            declared = tools[cell["row_id"]][call.function.name]
            jsonschema.validate(call.function.parsed_arguments(), declared["parameters"])
            called += 1
        assert cell["score"] in (0.0, 1.0)
    assert called >= 2


@pytest.mark.slow
def test_response_format_rows_are_enforced_and_scored(
    context: Context, tmp_path: Path, smollm2_path: Path
) -> None:
    schema = {
        "type": "object",
        "properties": {"city": {"type": "string"}, "country": {"type": "string"}},
        "required": ["city", "country"],
        "additionalProperties": False,
    }
    fmt = {"type": "json_schema", "json_schema": {"name": "place", "schema": schema}}
    records = [
        {"id": "1", "prompt": "Name a city in France and its country.", "response_format": fmt},
        {
            "id": "2",
            "prompt": "Give me any JSON object.",
            "response_format": {"type": "json_object"},
        },
    ]
    data = tmp_path / "fmt.jsonl"
    data.write_text("\n".join(json.dumps(r) for r in records), encoding="utf-8")
    model = f"llamacpp:{smollm2_path}"
    ds = load_dataset(data)
    assert default_scorers(ds.columns)[0].args == {"schema_column": "response_format"}
    db = tmp_path / "r.db"
    result = run_eval(context, ds, [model], None, PARAMS, db)
    assert result.models[model].errors == 0
    with open_store(db) as store:
        cells = {c["row_id"]: c for c in cell_rows(store, result.run_id)}
    # constrained decoding: a finished answer always parses and fits its schema
    assert cells["1"]["score"] == 1.0 and json.loads(cells["1"]["output"])["city"]
    # a small model may ramble inside a free-form object until max_tokens cuts it:
    # then (and only then) it is not JSON, and the cell says so
    second = cells["2"]
    assert second["score"] == 1.0 or second["completion_tokens"] == PARAMS.max_tokens, second
