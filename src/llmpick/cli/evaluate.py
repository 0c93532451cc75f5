"""``llmpick eval``, ``results``, ``runs`` and ``rescore``: the evaluate stage."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from llmpick.backends.base import SamplingParams
from llmpick.cli._common import (
    Exportable,
    TableOrJson,
    console,
    err_console,
    get_context,
    print_json,
)
from llmpick.errors import UsageError
from llmpick.evaluate import (
    ColumnMapping,
    EvalResult,
    ModelPrice,
    RunOptions,
    cell_rows,
    load_dataset,
    rescore_run,
    run_eval,
    side_by_side,
)
from llmpick.evaluate.results import rows_to_csv, rows_to_markdown
from llmpick.store import DEFAULT_DB, open_store

_SIDE_BY_SIDE_ROWS = 20

DbOption = Annotated[Path, typer.Option("--db", help="SQLite file holding runs and the cache.")]


def register(app: typer.Typer) -> None:
    """Add ``eval``, ``results``, ``runs`` and ``rescore`` to ``app``."""
    app.command("eval")(eval_command)
    app.command("results")(results_command)
    app.command("runs")(runs_command)
    app.command("rescore")(rescore_command)


def _warn(text: str) -> None:
    err_console.print(f"[yellow]warning:[/] {text}", highlight=False)


def _parse_pairs(values: list[str], what: str) -> dict[str, str]:
    pairs = {}
    for value in values:
        key, sep, rest = value.partition("=")
        if not sep or not key or not rest:
            raise UsageError(
                f"bad {what} '{value}'", f"write it as KEY=VALUE, e.g. {what} prompt=question"
            )
        pairs[key.strip()] = rest.strip()
    return pairs


def _parse_prices(values: list[str]) -> dict[str, ModelPrice]:
    prices = {}
    for name, text in _parse_pairs(values, "--price").items():
        try:
            inp, out = (float(x) for x in text.split(","))
            prices[name] = ModelPrice(input_usd_per_mtok=inp, output_usd_per_mtok=out)
        except ValueError as exc:
            raise UsageError(
                f"bad --price for {name}: '{text}'",
                "write --price MODEL=INPUT_USD_PER_MTOK,OUTPUT_USD_PER_MTOK",
            ) from exc
    return prices


def eval_command(
    ctx: typer.Context,
    data: Annotated[
        str, typer.Argument(help="CSV, JSONL, JSON or Parquet file, or a suite: humaneval, tools.")
    ],
    model: Annotated[
        list[str], typer.Option("--model", "-m", help="A model to evaluate (repeat for more).")
    ],
    scorer: Annotated[
        list[str] | None,
        typer.Option("--scorer", "-s", help="NAME[:ARG=VAL,…], repeatable; default from the data."),
    ] = None,
    judge: Annotated[str | None, typer.Option("--judge", help="Model that judges outputs.")] = None,
    template: Annotated[
        str | None, typer.Option("--template", help="Jinja2 prompt template: a file or a string.")
    ] = None,
    system: Annotated[
        str | None, typer.Option("--system", help="System message for every row.")
    ] = None,
    column: Annotated[
        list[str] | None,
        typer.Option(
            "--column",
            help="Map a role to a column: prompt=, expected=, id=, category=, system=, messages=.",
        ),
    ] = None,
    max_tokens: Annotated[int, typer.Option("--max-tokens", min=1)] = 256,
    temperature: Annotated[float, typer.Option("--temperature", min=0.0, max=2.0)] = 0.0,
    top_p: Annotated[float, typer.Option("--top-p", min=0.0, max=1.0)] = 1.0,
    seed: Annotated[int | None, typer.Option("--seed", help="Repeat k uses seed + k.")] = None,
    repeat: Annotated[
        int, typer.Option("--repeat", min=1, help="Generations per row and model.")
    ] = 1,
    limit: Annotated[
        int | None, typer.Option("--limit", min=1, help="Only the first N rows.")
    ] = None,
    concurrency: Annotated[
        int,
        typer.Option(
            "--concurrency",
            min=1,
            help="Requests in flight per model (at most what its backend serves at once).",
        ),
    ] = 8,
    price: Annotated[
        list[str] | None,
        typer.Option("--price", help="MODEL=IN,OUT in USD per million tokens, for cost figures."),
    ] = None,
    db: DbOption = DEFAULT_DB,
    output_format: Annotated[TableOrJson, typer.Option("--format")] = TableOrJson.table,
    progress: Annotated[bool, typer.Option("--progress/--no-progress")] = True,
) -> None:
    """Run every model on every row, score the outputs, and compare the models.

    Finished cells are saved as they complete; re-running the same command
    after an interruption does only what is missing.

    Local GGUF models decode one sequence at a time here (unlike serve and bench), so
    outputs do not depend on what else runs; for speed on many rows set ``options:
    {parallel: null}`` (automatic slots) in llmpick.yaml: scores measured both ways
    stayed within noise (docs/batching.md).
    """
    context = get_context(ctx)
    mapping = ColumnMapping.model_validate(_parse_pairs(column or [], "--column"))
    if top_p <= 0:
        raise UsageError("--top-p must be above 0")
    dataset = load_dataset(data, mapping=mapping, template=template, system=system, limit=limit)
    params = SamplingParams.model_validate(
        {"temperature": temperature, "top_p": top_p, "max_tokens": max_tokens, "seed": seed}
    )
    options = RunOptions(
        repeats=repeat,
        concurrency=concurrency,
        judge=judge,
        prices=_parse_prices(price or []),
        progress=progress and err_console.is_terminal,
        on_warning=_warn,
    )
    result = run_eval(context, dataset, list(model), scorer, params, db, options)
    if output_format is TableOrJson.json:
        print_json(result.model_dump(mode="json", exclude={"warnings"}))
        return
    with open_store(db) as store:
        table = side_by_side(store, result.run_id, width=60)
    _print_side_by_side(table[:_SIDE_BY_SIDE_ROWS], f"Outputs (run {result.run_id})")
    if len(table) > _SIDE_BY_SIDE_ROWS:
        console.print(
            f"… {len(table) - _SIDE_BY_SIDE_ROWS} more rows: llmpick results {result.run_id}",
            highlight=False,
        )
    _print_summary(result)


def _fmt(value: float | None, digits: int = 3) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


def _print_side_by_side(rows: list[dict[str, Any]], title: str) -> None:
    if not rows:
        return
    table = Table(title=title, show_lines=True)
    for col in rows[0]:
        table.add_column(col, overflow="fold")
    for row in rows:
        table.add_row(
            *(
                "" if v is None else (_fmt(v, 2) if isinstance(v, float) else str(v))
                for v in row.values()
            )
        )
    console.print(table)


def _print_summary(result: EvalResult) -> None:
    table = Table(
        title=f"Scores ({result.scorer or 'no scorer'}), measured on this run",
        caption="95% intervals: bootstrap over rows; latency: end to end per cell",
    )
    for col in (
        "model",
        "n",
        "mean",
        "95% CI",
        "errors",
        "latency p50 s",
        "latency p90 s",
        "cost USD",
    ):
        table.add_column(col, justify="left" if col == "model" else "right")
    for name, m in result.models.items():
        ci = f"[{m.ci95[0]:.3f}, {m.ci95[1]:.3f}]" if m.ci95 else "—"
        table.add_row(
            name,
            str(m.n),
            _fmt(m.mean),
            ci,
            str(m.errors),
            _fmt(m.latency_s.p50, 2),
            _fmt(m.latency_s.p90, 2),
            _fmt(m.cost_usd, 4),
        )
    console.print(table)
    for comparison in result.comparisons:
        console.print(f"• {comparison.sentence} ({comparison.test})", highlight=False)
    if len(result.categories) > 1:
        cats = Table(title="By category (mean, n)")
        cats.add_column("category")
        names = list(result.models)
        for name in names:
            cats.add_column(name, justify="right")
        for category, per_model in result.categories.items():
            cats.add_row(
                category,
                *(
                    f"{_fmt(per_model[n].mean)} ({per_model[n].n})" if n in per_model else "—"
                    for n in names
                ),
            )
        console.print(cats)
    if result.pairwise:
        console.print(f"Pairwise (judge): {result.pairwise}", highlight=False)
    console.print(
        f"run {result.run_id}: {result.cells_total} cells, {result.cells_cached} from the cache. "
        f"Every cell: llmpick results {result.run_id}",
        highlight=False,
    )


def results_command(
    run_id: Annotated[str, typer.Argument(help="Run id (a unique prefix is enough).")],
    db: DbOption = DEFAULT_DB,
    output_format: Annotated[Exportable, typer.Option("--format")] = Exportable.table,
) -> None:
    """Show a run's cells: side by side (one row per prompt, one column per model)."""
    if not db.exists():
        raise UsageError(f"no store at {db}", "give the --db used by llmpick eval")
    with open_store(db) as store:
        run = store.get_run(run_id)
        if output_format is Exportable.json:
            print_json({"run_id": run.id, "cells": cell_rows(store, run.id)})
            return
        table = side_by_side(store, run.id, width=80 if output_format is Exportable.table else None)
    if output_format is Exportable.csv:
        typer.echo(rows_to_csv(table), nl=False)
    elif output_format is Exportable.markdown:
        typer.echo(rows_to_markdown(table), nl=False)
    else:
        _print_side_by_side(table, f"Run {run.id} on {run.dataset} ({run.status})")


def runs_command(
    db: DbOption = DEFAULT_DB,
    output_format: Annotated[TableOrJson, typer.Option("--format")] = TableOrJson.table,
    limit: Annotated[int, typer.Option("--limit", min=1)] = 50,
) -> None:
    """List the runs in the store, newest first."""
    if not db.exists():
        raise UsageError(f"no store at {db}", "run llmpick eval first, or give --db")
    with open_store(db) as store:
        runs = store.list_runs(limit)
    entries: list[dict[str, Any]] = [
        {
            "run_id": r.id,
            "created_at": r.created_at,
            "status": r.status,
            "dataset": r.dataset,
            "models": [m["name"] for m in r.models],
            "scorers": [s["name"] for s in r.scorers],
            "cells_total": (r.summary or {}).get("cells_total"),
            "means": {k: v.get("mean") for k, v in (r.summary or {}).get("models", {}).items()},
        }
        for r in runs
    ]
    if output_format is TableOrJson.json:
        print_json({"runs": entries})
        return
    table = Table(title=f"Runs in {db}")
    for col in ("run", "created", "status", "dataset", "models", "scorers", "means (measured)"):
        table.add_column(col)
    for e in entries:
        table.add_row(
            e["run_id"],
            e["created_at"][:19],
            e["status"],
            e["dataset"],
            ", ".join(e["models"]),
            ", ".join(e["scorers"]),
            ", ".join(f"{k} {_fmt(v)}" for k, v in e["means"].items()),
        )
    console.print(table)


def rescore_command(
    ctx: typer.Context,
    run_id: Annotated[str, typer.Argument(help="Run id (a unique prefix is enough).")],
    scorer: Annotated[
        list[str] | None,
        typer.Option("--scorer", "-s", help="New scorers (default: the run's own)."),
    ] = None,
    judge: Annotated[str | None, typer.Option("--judge", help="Judge model.")] = None,
    db: DbOption = DEFAULT_DB,
    output_format: Annotated[TableOrJson, typer.Option("--format")] = TableOrJson.table,
) -> None:
    """Recompute a run's scores from its stored outputs (no model runs again)."""
    if not db.exists():
        raise UsageError(f"no store at {db}", "give the --db used by llmpick eval")
    context = get_context(ctx)
    result = rescore_run(context, run_id, scorer, judge, db, on_warning=_warn)
    if output_format is TableOrJson.json:
        print_json(result.model_dump(mode="json", exclude={"warnings"}))
        return
    _print_summary(result)
