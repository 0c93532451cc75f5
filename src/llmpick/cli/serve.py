"""``llmpick serve``: the OpenAI-compatible gateway; ``serve stats``: its measured history."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import ValidationError
from rich.table import Table

from llmpick.cli._common import (
    Exportable,
    console,
    err_console,
    get_context,
    print_json,
)
from llmpick.errors import ConfigError
from llmpick.evaluate.results import rows_to_csv, rows_to_markdown
from llmpick.serve.gateway import GatewayConfig
from llmpick.serve.requestlog import serve_stats
from llmpick.serve.security import check_bind
from llmpick.serve.server import build_gateway, build_workbench, explain_routes, run_gateway
from llmpick.store import DEFAULT_DB, open_store

serve_app = typer.Typer(
    name="serve",
    help="Serve models behind an OpenAI-compatible API that routes each request to the "
    "model your measurements chose.",
    invoke_without_command=True,
)


def register(app: typer.Typer) -> None:
    """Add the ``serve`` group to ``app``."""
    app.add_typer(serve_app)


def _config(context_settings: dict[str, Any], flags: dict[str, Any]) -> GatewayConfig:
    """``serve:`` from llmpick.yaml with the flags that were given laid over it."""
    merged = dict(context_settings)
    security = dict(merged.get("security", {}))
    for key, value in flags.items():
        if value is None:
            continue
        if key.startswith("security."):
            name = key.removeprefix("security.")
            if name.startswith("rules."):
                rules = dict(security.get("rules", {}))
                rules[name.removeprefix("rules.")] = value
                security["rules"] = rules
            else:
                security[name] = value
        elif key.startswith("pool."):
            pool = dict(merged.get("pool", {}))
            pool[key.removeprefix("pool.")] = value
            merged["pool"] = pool
        else:
            merged[key] = value
    merged["security"] = security
    try:
        return GatewayConfig.model_validate(merged)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise ConfigError(
            f"bad serve setting '{where}': {first['msg']}",
            "check the serve: section of llmpick.yaml and the flags (llmpick serve --help)",
        ) from exc


@serve_app.callback()
def serve_command(
    ctx: typer.Context,
    model: Annotated[
        list[str] | None,
        typer.Option("-m", "--model", help="Model to serve (repeatable; default: bundled)."),
    ] = None,
    routes_from: Annotated[
        str | None,
        typer.Option(
            "--routes-from", help="A choose result.json (or its folder) or an eval run id."
        ),
    ] = None,
    explain: Annotated[
        bool, typer.Option("--explain-routes", help="Print the route table and exit.")
    ] = False,
    host: Annotated[str | None, typer.Option(help="Address (default 127.0.0.1).")] = None,
    port: Annotated[int | None, typer.Option(help="Port (default 8000).")] = None,
    db: Annotated[Path | None, typer.Option("--db", help="SQLite store.")] = None,
    redis: Annotated[
        str | None, typer.Option("--redis", help="Limits shared by replicas (redis://…).")
    ] = None,
    access_log: Annotated[
        Path | None, typer.Option("--access-log", help="JSON access log (HMACs, no text).")
    ] = None,
    log_text: Annotated[
        bool, typer.Option("--log-text", help="Also log raw prompts and outputs (opt-in).")
    ] = False,
    protect_metrics: Annotated[
        bool, typer.Option("--protect-metrics", help="/metrics and /ready need a key.")
    ] = False,
    allow_unauthenticated: Annotated[
        bool,
        typer.Option(
            "--allow-unauthenticated", help="Allow a non-loopback address without API keys."
        ),
    ] = False,
    max_queue: Annotated[
        int | None, typer.Option("--max-queue", help="Waiting requests per model (then 503).")
    ] = None,
    max_output_tokens: Annotated[
        int | None, typer.Option("--max-output-tokens", help="Cap on max_tokens (400 above).")
    ] = None,
    timeout: Annotated[
        float | None, typer.Option("--timeout", help="Seconds per request (then 504).")
    ] = None,
    drain_s: Annotated[
        float, typer.Option("--drain-deadline", help="Seconds to finish streams at SIGTERM.")
    ] = 30.0,
    ui: Annotated[
        bool,
        typer.Option(
            "--ui",
            help="Also serve the workbench at /ui (same models; login with a gateway key).",
        ),
    ] = False,
    ui_allow_any_model: Annotated[
        bool,
        typer.Option(
            "--ui-allow-any-model",
            help="Let workbench columns name any model spec (URLs, paths, downloads).",
        ),
    ] = False,
    allowed_host: Annotated[
        list[str] | None,
        typer.Option(
            "--allowed-host",
            help="A name clients may reach this server by, besides its addresses (repeatable).",
        ),
    ] = None,
) -> None:
    """Serve the bundled models (or -m/--routes-from) on http://127.0.0.1:8000/v1.

    Local GGUF models batch concurrent requests by default (automatic slots: 8, fewer
    if their KV cache would not fit; the choice is printed at start); set
    ``options: {parallel: 1}`` for a model in llmpick.yaml, or ``serve: {pool:
    {serving_defaults: false}}``, for one request at a time. See docs/batching.md.
    """
    if ctx.invoked_subcommand is not None:
        return
    context = get_context(ctx)
    config = _config(
        context.settings.config.serve,
        {
            "models": model or None,
            "routes_from": routes_from,
            "host": host,
            "port": port,
            "db": db,
            "allow_unauthenticated": allow_unauthenticated or None,
            "allowed_hosts": allowed_host or None,
            "security.redis_url": redis,
            "security.access_log": access_log,
            "security.log_text": log_text or None,
            "security.protect_metrics": protect_metrics or None,
            "security.protect_ready": protect_metrics or None,
            "security.rules.max_output_tokens": max_output_tokens,
            "security.rules.total_timeout_s": timeout,
            "pool.max_queue": max_queue,
        },
    )
    gateway = build_gateway(context, config)
    gateway.announce = lambda line: err_console.print(line, highlight=False, markup=False)
    if explain:
        _print_routes(gateway)
        return
    warning = check_bind(
        config.host,
        keys_configured=gateway.policy is not None and gateway.policy.keys.has_keys(),
        allow_open=config.allow_unauthenticated,
    )
    if warning:
        err_console.print(f"[yellow]{warning}[/]")
    url = f"http://{config.host}:{config.port}/v1"
    err_console.print(f"llmpick gateway on [bold]{url}[/] (Ctrl-C or SIGTERM drains and stops)")
    err_console.print(
        f"  curl {url}/chat/completions -H 'Content-Type: application/json' "
        """-d '{"model": "auto", "messages": [{"role": "user", "content": "Hello"}]}'""",
        highlight=False,
        markup=False,
        soft_wrap=True,
    )
    workbench = build_workbench(gateway, allow_any_model=ui_allow_any_model) if ui else None
    if workbench is not None:
        base = url.removesuffix("/v1")
        err_console.print(f"workbench on [bold]{base}{workbench.prefix}/[/]", highlight=False)
    run_gateway(gateway, drain_deadline_s=drain_s, workbench=workbench)


def _print_routes(gateway: Any) -> None:
    table_data = gateway.routes
    if table_data is None:
        console.print("no measured routes: 'auto' uses the served models in order:")
        console.print(", ".join(gateway.config.models))
        return
    table = Table(
        "category", "n", "model", "mean [95% CI]", "runner-up", "why", title=table_data.source
    )
    for found in explain_routes(table_data):
        row: dict[str, Any] = found
        ci = row["ci95"]
        mean = row["mean"]
        score = "—" if mean is None else f"{mean:.3f}"
        if ci:
            score += f" [{ci[0]:.3f}, {ci[1]:.3f}]"
        runner = str(row["runner_up"] or "—")
        if row["runner_up_mean"] is not None:
            runner += f" ({row['runner_up_mean']:.3f})"
        table.add_row(str(row["category"]), str(row["n"]), str(row["model"]), score, runner,
                      str(row["why"]))  # fmt: skip
    console.print(table)
    report = table_data.classifier
    if report is not None:
        cv = "—" if report.cv_accuracy is None else f"{report.cv_accuracy:.2f}"
        held = "—" if report.held_out_accuracy is None else f"{report.held_out_accuracy:.2f}"
        console.print(
            f"classifier: {report.method}; {report.n_prompts} prompts; "
            f"{report.cv_folds}-fold CV accuracy {cv}; held-out accuracy {held} "
            f"(n = {report.held_out_n}); below confidence {report.confidence_threshold:.2f} "
            "'auto' uses the overall winner"
        )


@serve_app.command("stats")
def stats_command(
    db: Annotated[Path, typer.Option("--db", help="SQLite store.")] = DEFAULT_DB,
    window: Annotated[
        float, typer.Option("--window", help="Seconds back from now (0 = everything).")
    ] = 3600.0,
    output_format: Annotated[
        Exportable, typer.Option("--format", help="table, json, csv or markdown.")
    ] = Exportable.table,
) -> None:
    """Latency percentiles, tokens/s and error rate per model, measured live by the gateway."""
    with open_store(db) as store:
        stats = serve_stats(store, window or None)
    rows = [s.model_dump() for s in stats]
    if output_format is Exportable.json:
        print_json({"schema_version": 1, "window_s": window or None, "models": rows})
        return
    if output_format is not Exportable.table:
        text = rows_to_csv(rows) if output_format is Exportable.csv else rows_to_markdown(rows)
        typer.echo(text, nl=False)
        return
    table = Table("model", "requests", "errors", "p50 s", "p95 s", "p99 s", "TTFT p50 s", "tok/s",
                  title="measured by the gateway")  # fmt: skip
    for s in stats:
        table.add_row(
            s.model, str(s.requests), f"{s.errors} ({s.error_rate:.1%})",
            *(f"{v:.3f}" if v is not None else "—" for v in (
                s.latency_p50_s, s.latency_p95_s, s.latency_p99_s, s.time_to_first_token_p50_s)),
            f"{s.output_tokens_per_second:.1f}" if s.output_tokens_per_second else "—",
        )  # fmt: skip
    console.print(table)
