"""``llmpick bench``: latency, throughput and memory of models, beside their estimates."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from llmpick.bench import BenchConfig, BenchInterrupted, BenchResult, Slo, run_bench, save_bench
from llmpick.bench.runner import config_summary
from llmpick.cli._common import TableOrJson, console, err_console, get_context, print_json
from llmpick.errors import UsageError

_SLO_KEYS = {
    "ttft": "time_to_first_token_s",
    "tpot": "time_per_output_token_s",
    "e2e": "e2e_latency_s",
}


def parse_int_list(text: str, option: str) -> tuple[int, ...]:
    """``"1,8"`` -> ``(1, 8)``; anything else is a UsageError."""
    try:
        values = tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise UsageError(
            f"{option} takes comma-separated integers, got '{text}'", f"e.g. {option} 1,8"
        ) from None
    if not values:
        raise UsageError(f"{option} is empty", f"e.g. {option} 1,8")
    return values


def parse_float_list(text: str, option: str) -> tuple[float, ...]:
    """``"0.5,2"`` -> ``(0.5, 2.0)``; anything else is a UsageError."""
    try:
        values = tuple(float(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise UsageError(
            f"{option} takes comma-separated numbers, got '{text}'", f"e.g. {option} 0.5,2"
        ) from None
    if not values:
        raise UsageError(f"{option} is empty", f"e.g. {option} 2")
    return values


def parse_slo(text: str) -> Slo:
    """``"ttft=0.5,tpot=0.05,e2e=10"`` (seconds) -> :class:`Slo`."""
    bounds: dict[str, float] = {}
    for part in text.split(","):
        if not part.strip():
            continue
        key, sep, value = part.partition("=")
        key = key.strip().lower()
        if not sep or key not in _SLO_KEYS:
            raise UsageError(
                f"bad SLO '{part}'", "write --slo ttft=SECONDS,tpot=SECONDS,e2e=SECONDS"
            )
        try:
            number = float(value)
        except ValueError:
            raise UsageError(f"SLO {key} needs a number of seconds, got '{value}'") from None
        if not number > 0:
            raise UsageError(f"SLO {key} must be positive, got {value}")
        bounds[_SLO_KEYS[key]] = number
    return Slo(**bounds)


def _fmt(value: float | None, scale: float = 1.0, digits: int = 1) -> str:
    return "-" if value is None else f"{value * scale:.{digits}f}"


def _mib(value: int | float | None) -> str:
    return "-" if value is None else f"{value / 2**20:.0f} MiB"


def print_table(result: BenchResult) -> None:
    """Print a Rich table of one model's load points, with memory and the estimate."""
    console.print(f"[bold]{result.model}[/] ({result.backend}) on {result.device}")
    estimate = result.estimate
    ratio = result.ratio()
    memory = (
        f"peak memory {_mib(result.peak_memory_bytes)} (measured)"
        if result.peak_memory_bytes is not None
        else "peak memory: not measured (held by the server, not this process)"
    )
    if estimate is not None and estimate.total_bytes:
        memory += f", {_mib(estimate.total_bytes)} (estimated)"
        if ratio.get("peak_memory_bytes") is not None:
            memory += f", ratio {ratio['peak_memory_bytes']:.2f}"
    console.print(memory, highlight=False)
    if result.server_metrics:
        shown = ", ".join(f"{k}={v:g}" for k, v in sorted(result.server_metrics.items()))
        console.print(f"server-reported: {shown}", highlight=False)
    if estimate is not None:
        console.print(
            "estimated by llmpick fit (basis in --format json): decode "
            f"{_fmt(estimate.decode_tokens_per_second)} tok/s, TTFT "
            f"{_fmt(estimate.time_to_first_token_s, 1000)} ms; measured/estimated: decode "
            f"{_fmt(ratio.get('decode_tokens_per_second'), digits=2)}, TTFT "
            f"{_fmt(ratio.get('time_to_first_token_s'), digits=2)}",
            highlight=False,
        )
    table = Table(title="measured (ms: p50 / p99)", title_justify="left")
    for column in ("load", "TTFT", "TPOT", "ITL", "E2E", "out tok/s", "req/s", "goodput", "err"):
        table.add_column(column, justify="left" if column == "load" else "right")
    for point in result.results:
        m = point.metrics

        def pair(summary: Any) -> str:
            return f"{_fmt(summary.p50, 1000)} / {_fmt(summary.p99, 1000)}"

        table.add_row(
            point.point.label + (" (partial)" if point.interrupted else ""),
            pair(m.time_to_first_token_s),
            pair(m.time_per_output_token_s),
            pair(m.inter_token_latency_s),
            pair(m.e2e_latency_s),
            _fmt(m.output_tokens_per_second),
            _fmt(m.requests_per_second, digits=2),
            _fmt(m.goodput, digits=2),
            str(m.errors),
        )
    console.print(table)
    for point in result.results:
        for message in point.metrics.error_messages[:3]:
            console.print(f"  {point.point.label} error: {message}", highlight=False, markup=False)
    for note in result.notes:
        console.print(f"note: {note}", highlight=False, markup=False)


def _emit(results: list[BenchResult], fmt: TableOrJson, plot: Path | None) -> None:
    if fmt == TableOrJson.json:
        documents = [r.to_json() for r in results]
        print_json(documents[0] if len(documents) == 1 else documents)
    else:
        for result in results:
            print_table(result)
    if plot is not None and results:
        from llmpick.bench.plots import write_plots

        for path in write_plots(results, plot):
            err_console.print(f"wrote {path}", highlight=False)


def _save(results: list[BenchResult], db: Path, config: BenchConfig) -> None:
    from llmpick.store import open_store

    with open_store(db) as store:
        for result in results:
            save_bench(store, result, config_summary(config))


def bench(
    ctx: typer.Context,
    model: Annotated[
        list[str], typer.Option("--model", "-m", help="Model spec; repeat for several.")
    ],
    concurrency: Annotated[
        str | None,
        typer.Option(help="Closed-loop concurrencies, comma-separated, e.g. 1,8."),
    ] = None,
    rate: Annotated[
        str | None,
        typer.Option(help="Open-loop Poisson request rates per second, comma-separated."),
    ] = None,
    prompt_tokens: Annotated[
        int, typer.Option(help="Synthetic prompt length in the model's tokens.")
    ] = 128,
    max_tokens: Annotated[int, typer.Option(help="Output tokens asked for per request.")] = 64,
    requests: Annotated[int, typer.Option(help="Measured requests per load point.")] = 8,
    dataset: Annotated[
        Path | None,
        typer.Option(help="Prompts from a file (.jsonl with 'prompt', or .txt lines)."),
    ] = None,
    warmup: Annotated[int, typer.Option(help="Unmeasured warm-up requests per model.")] = 1,
    slo: Annotated[
        str | None, typer.Option(help="Goodput SLOs in seconds: ttft=S,tpot=S,e2e=S.")
    ] = None,
    tokenizer: Annotated[
        Path | None,
        typer.Option(help="GGUF whose tokenizer counts tokens when the backend cannot."),
    ] = None,
    ignore_eos: Annotated[
        bool, typer.Option(help="Ask for exactly --max-tokens where the backend allows.")
    ] = True,
    seed: Annotated[int, typer.Option(help="Seed for prompts and Poisson arrivals.")] = 0,
    calibrate: Annotated[
        bool,
        typer.Option(
            "--calibrate",
            help="Store measured/estimated speed factors so fit, recommend and cost use them "
            "on this machine (needs concurrency 1 and an in-process model).",
        ),
    ] = False,
    db: Annotated[Path, typer.Option(help="SQLite store for the results.")] = Path("llmpick.db"),
    fmt: Annotated[TableOrJson, typer.Option("--format", help="Output format.")] = (
        TableOrJson.table
    ),
    plot: Annotated[
        Path | None, typer.Option(help="Write latency and throughput charts (HTML) here.")
    ] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress on stderr.")] = False,
) -> None:
    """Measure TTFT, TPOT, ITL, E2E, throughput, goodput and memory, beside fit's estimate.

    A model serves as many requests at once as its backend allows: a llamacpp
    model its ``parallel`` slots (continuous batching, docs/batching.md; default
    1: one request at a time), an
    openai: server backend what the pool allows. Concurrency above that queues
    requests (TTFT includes the wait). Requests are never retried. Metric
    definitions: docs/metrics.md.
    """
    config = BenchConfig(
        concurrency=parse_int_list(concurrency, "--concurrency") if concurrency else (),
        rates=parse_float_list(rate, "--rate") if rate else (),
        prompt_tokens=prompt_tokens,
        max_tokens=max_tokens,
        requests=requests,
        warmup=warmup,
        dataset=dataset,
        slo=parse_slo(slo) if slo else Slo(),
        tokenizer=tokenizer,
        ignore_eos=ignore_eos,
        seed=seed,
        calibrate=calibrate,
        progress=None if quiet else lambda text: err_console.print(text, highlight=False),
    )
    context = get_context(ctx)
    specs = [context.resolve(m) for m in model]
    results: list[BenchResult] = []
    try:
        for spec in specs:
            if not quiet:
                err_console.print(f"benchmarking {spec.name}", highlight=False)
            results.append(run_bench(context, spec, config))
    except BenchInterrupted as stop:
        if stop.result is not None:
            results.append(stop.result)
        err_console.print("interrupted: printing and saving the requests that finished")
        _save(results, db, config)
        _emit(results, fmt, plot)
        raise typer.Exit(130) from None
    _save(results, db, config)
    _emit(results, fmt, plot)


def register(app: typer.Typer) -> None:
    """Add ``llmpick bench`` to ``app``."""
    app.command("bench")(bench)
