"""The run matrix through the library API, with outputs read from columns (no model)."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

from llmpick.backends.base import SamplingParams
from llmpick.context import Context
from llmpick.errors import DataError, ScorerError, UsageError
from llmpick.evaluate import (
    EvalResult,
    ModelPrice,
    RunOptions,
    cell_rows,
    load_dataset,
    rescore_run,
    run_eval,
    side_by_side,
)
from llmpick.store import open_store

CSV = """id,prompt,expected,good,bad,category
1,Capital of France?,Paris,Paris,Lyon,geo
2,2+2?,4,4,5,math
3,Colour of the sky?,blue,blue,blue,geo
4,3*3?,9,9,8,math
5,Largest planet?,Jupiter,Jupiter,Saturn,geo
6,10-3?,7,7,6,math
"""

MODELS = ["column:good", "column:bad"]
PARAMS = SamplingParams.model_validate({"max_tokens": 16})


@pytest.fixture()
def data(tmp_path: Path) -> Path:
    path = tmp_path / "data.csv"
    path.write_text(CSV, encoding="utf-8")
    return path


def test_matrix_summary_comparison_and_categories(
    context: Context, data: Path, tmp_path: Path
) -> None:
    db = tmp_path / "r.db"
    result = run_eval(context, load_dataset(data), MODELS, ["exact"], PARAMS, db)
    assert isinstance(result, EvalResult)
    assert result.cells_total == 12 and result.cells_cached == 0
    good, bad = result.models["column:good"], result.models["column:bad"]
    assert (good.n, good.mean, good.ci95) == (6, 1.0, (1.0, 1.0))
    assert bad.n == 6 and bad.mean == pytest.approx(1 / 6)
    assert bad.ci95 is not None and bad.ci95[0] <= 1 / 6 <= bad.ci95[1]
    assert good.latency_s.p50 is not None and good.cost_usd is None
    (comparison,) = result.comparisons
    assert (comparison.a, comparison.b, comparison.wins_a, comparison.wins_b, comparison.ties) == (
        "column:good",
        "column:bad",
        5,
        0,
        1,
    )
    assert comparison.test == "mcnemar"
    assert comparison.p_value == pytest.approx(0.0625)
    assert "column:good" in comparison.sentence
    assert result.categories["math"]["column:bad"].mean == 0.0
    assert result.categories["geo"]["column:bad"].n == 3
    dumped = result.model_dump(mode="json")
    assert {"run_id", "cells_total", "cells_cached", "models", "comparisons", "categories"} <= set(
        dumped
    )
    assert "timing" not in dumped
    assert set(dumped["models"]["column:good"]) >= {"n", "mean", "ci95", "latency_s", "cost_usd"}
    assert set(dumped["comparisons"][0]) >= {"a", "b", "wins_a", "wins_b", "ties", "p_value"}


def test_second_run_is_served_from_the_cache(context: Context, data: Path, tmp_path: Path) -> None:
    db = tmp_path / "r.db"
    first = run_eval(context, data, MODELS, ["exact", "contains"], PARAMS, db)
    second = run_eval(context, data, MODELS, ["exact", "contains"], PARAMS, db)
    assert second.run_id != first.run_id
    assert second.cells_cached == second.cells_total == 12
    assert second.models == first.models
    with open_store(db) as store:
        assert all(c.cached for c in store.get_cells(second.run_id))
        # scores were copied, not recomputed, and both runs hold every score
        assert len(store.get_scores(second.run_id)) == 24
        generations = store.db.execute("SELECT COUNT(*) FROM generations").fetchone()[0]
        assert generations == 12
    # other sampling settings are another cache entry
    third = run_eval(
        context, data, MODELS, ["exact"], SamplingParams.model_validate({"max_tokens": 8}), db
    )
    assert third.cells_cached == 0


def test_repeats_seeds_and_prices(context: Context, data: Path, tmp_path: Path) -> None:
    db = tmp_path / "r.db"
    options = RunOptions(
        repeats=3, prices={"column:good": ModelPrice(input_usd_per_mtok=1, output_usd_per_mtok=2)}
    )
    params = SamplingParams.model_validate({"max_tokens": 16, "seed": 7, "temperature": 0.7})
    result = run_eval(context, data, MODELS, ["exact"], params, db, options)
    assert result.cells_total == 36
    assert result.models["column:good"].n == 18
    # the column backend reports no token counts, so no cost can be computed
    assert result.models["column:good"].cost_usd is None
    assert result.comparisons[0].n == 6  # paired per row, repeats averaged
    with open_store(db) as store:
        run = store.get_run(result.run_id)
        assert run.repeats == 3 and run.params["seed"] == 7
        seeds = sorted(
            {
                r[0]
                for r in store.db.execute("SELECT json_extract(params, '$.seed') FROM generations")
            }
        )
        assert seeds == [7, 8, 9]
        table = side_by_side(store, result.run_id)
        assert len(table) == 18 and table[0]["repeat"] == 0


def test_results_views_and_rescore(context: Context, data: Path, tmp_path: Path) -> None:
    db = tmp_path / "r.db"
    result = run_eval(context, data, MODELS, ["exact"], PARAMS, db)
    with open_store(db) as store:
        cells = cell_rows(store, result.run_id)
        assert len(cells) == 12
        first = cells[0]
        assert {"row_id", "model", "repeat", "output", "score", "error"} <= set(first)
        table = side_by_side(store, result.run_id)
        assert [r["row_id"] for r in table] == ["1", "2", "3", "4", "5", "6"]
        assert table[0]["column:good"] == "Paris" and table[0]["column:bad score"] == 0.0
    rescored = rescore_run(context, result.run_id, ["regex:pattern=^[A-Z]"], db_path=db)
    assert rescored.run_id == result.run_id
    assert rescored.scorer is not None and rescored.scorer.startswith("regex")
    assert rescored.models["column:good"].mean == pytest.approx(2 / 6)  # Paris, Jupiter
    # the run's own scorers are now regex; rescoring again without arguments keeps them
    again = rescore_run(context, result.run_id[:8], db_path=db)
    assert again.models == rescored.models


def test_interrupted_run_resumes_the_same_run(context: Context, data: Path, tmp_path: Path) -> None:
    db = tmp_path / "r.db"
    result = run_eval(context, data, MODELS, ["exact"], PARAMS, db)
    # simulate a killed process: drop half the cells and mark the run unfinished
    raw = sqlite3.connect(db)
    raw.execute("PRAGMA foreign_keys = ON")
    raw.execute(
        "DELETE FROM cells WHERE run_id = ? AND row_id IN ('4', '5', '6')", (result.run_id,)
    )
    raw.execute("UPDATE runs SET status = 'running' WHERE id = ?", (result.run_id,))
    raw.commit()
    raw.close()
    resumed = run_eval(context, data, MODELS, ["exact"], PARAMS, db)
    assert resumed.run_id == result.run_id
    assert resumed.cells_cached == 12  # the dropped cells' generations are still cached
    with open_store(db) as store:
        cells = store.get_cells(result.run_id)
        assert len(cells) == 12
        assert len({(c.model, c.row_id, c.repeat) for c in cells}) == 12
        assert store.get_run(result.run_id).status == "finished"
    assert resumed.models == result.models


def test_bad_input_raises_typed_errors(context: Context, data: Path, tmp_path: Path) -> None:
    db = tmp_path / "r.db"
    with pytest.raises(ScorerError, match="unknown scorer 'nope'"):
        run_eval(context, data, MODELS, ["nope"], PARAMS, db)
    with pytest.raises(ScorerError):
        run_eval(context, data, MODELS, ['json:schema={"type": 12}'], PARAMS, db)
    with pytest.raises(ScorerError, match="judge"):
        run_eval(context, data, MODELS, ["pairwise"], PARAMS, db)
    with pytest.raises(UsageError, match="twice"):
        run_eval(context, data, ["column:good", "column:good"], ["exact"], PARAMS, db)
    with pytest.raises(UsageError, match="no models"):
        run_eval(context, data, [], ["exact"], PARAMS, db)
    with pytest.raises(DataError, match="no column 'missing'"):
        run_eval(context, data, ["column:missing"], ["exact"], PARAMS, db)


def test_column_outputs_depend_on_the_row_not_only_the_prompt(
    context: Context, tmp_path: Path
) -> None:
    path = tmp_path / "same.csv"
    path.write_text("id,prompt,expected,out\n1,same,a,a\n2,same,b,b\n", encoding="utf-8")
    result = run_eval(context, path, ["column:out"], ["exact"], PARAMS, tmp_path / "r.db")
    assert result.models["column:out"].mean == 1.0


def test_adaptive_limiter_halves_on_rate_limit_and_grows_back() -> None:
    asyncio.run(_limiter_scenario())


async def _limiter_scenario() -> None:
    from llmpick.evaluate.concurrency import AdaptiveLimiter

    limiter = AdaptiveLimiter(8)
    peak = 0

    async def hold() -> None:
        nonlocal peak
        async with limiter.slot():
            peak = max(peak, limiter.active)
            await asyncio.sleep(0.01)

    await asyncio.gather(*(hold() for _ in range(20)))
    assert peak == 8
    limiter.rate_limited()
    limiter.rate_limited()
    assert limiter.limit == 2
    peak = 0
    await asyncio.gather(*(hold() for _ in range(10)))
    assert peak == 2
    for _ in range(10):
        await limiter.succeeded()
    assert limiter.limit == 8
    for _ in range(5):
        limiter.rate_limited()
    assert limiter.limit == 1


def test_in_process_models_take_turns_without_starving() -> None:
    asyncio.run(_turns_scenario())


async def _turns_scenario() -> None:
    from llmpick.evaluate.concurrency import OneModelAtATime

    turns = OneModelAtATime()
    log: list[tuple[str, int]] = []

    async def request(model: str, hold_s: float) -> None:
        async with turns.turn(model):
            log.append((model, sum(1 for m, _ in log if m == model)))
            assert turns.owner == model, "never two models at once"
            await asyncio.sleep(hold_s)

    async def worker(model: str, n: int) -> None:
        for _ in range(n):
            await request(model, 0.005)

    # a batching model holds several turns at once; another still gets its turn
    await asyncio.gather(worker("a", 6), worker("a", 6), worker("b", 3))
    order = [m for m, _ in log]
    assert order.count("a") == 12 and order.count("b") == 3
    assert order.index("b") < 6, f"b waited for all of a: {order}"
    cancelled = asyncio.ensure_future(request("c", 0))
    async with turns.turn("a"):
        await asyncio.sleep(0)
        cancelled.cancel()
    await asyncio.gather(cancelled, return_exceptions=True)
    assert (turns.owner, turns.holders) == (None, 0)


def test_public_api_is_locked() -> None:
    import llmpick.evaluate
    import llmpick.store

    assert set(llmpick.evaluate.__all__) == {
        "CategorySummary", "ColumnMapping", "ComparisonSummary", "Dataset", "EvalResult",
        "LatencySummary", "ModelPrice", "ModelSummary", "Row", "RunOptions", "ScoreSummary",
        "arun_eval", "cell_rows", "load_dataset", "rescore_run", "run_eval", "side_by_side",
        "summarize",
    }  # fmt: skip
    assert set(llmpick.store.__all__) == {
        "DEFAULT_DB", "SCHEMA_VERSION", "CellRecord", "GenerationRecord", "RunRecord", "RunRow",
        "ScoreRecord", "Store", "open_store",
    }  # fmt: skip


def test_a_model_asked_with_its_own_prompts_and_params(
    context: Context, data: Path, tmp_path: Path
) -> None:
    """``RunOptions.overrides``: one model's own messages and sampling; its own run and cache."""
    from llmpick.backends.base import Message
    from llmpick.evaluate.runner import ModelOverride

    db = tmp_path / "o.db"
    plain = run_eval(context, data, MODELS, ["exact"], PARAMS, db)
    own = ModelOverride(
        messages=[[Message(role="user", content=f"Q{i}")] for i in range(6)],
        params=SamplingParams.model_validate({"max_tokens": 4}),
    )
    result = run_eval(context, data, MODELS, ["exact"], PARAMS, db,
                      RunOptions(overrides={"column:bad": own}))  # fmt: skip
    assert result.run_id != plain.run_id  # another fingerprint
    assert result.cells_cached == 6  # column:good is asked as before: from the cache
    with open_store(db) as store:
        cells = {(c.model, c.row_id): c for c in store.get_cells(result.run_id)}
        asked = store.get_generation(cells[("column:bad", "2")].cache_key)
        assert asked is not None and asked.messages == [{"role": "user", "content": "Q1"}]
        assert asked.params["max_tokens"] == 4
    with pytest.raises(UsageError, match="not in the run"):
        run_eval(context, data, MODELS, ["exact"], PARAMS, db,
                 RunOptions(overrides={"column:nope": own}))  # fmt: skip
    short = ModelOverride(messages=own.messages[:2])  # type: ignore[index]
    with pytest.raises(UsageError, match="2 prompts for 6 rows"):
        run_eval(context, data, MODELS, ["exact"], PARAMS, db,
                 RunOptions(overrides={"column:bad": short}))  # fmt: skip
