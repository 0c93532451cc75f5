"""``llmpick models`` and ``llmpick run``."""

from __future__ import annotations

import asyncio
import sys
from typing import Annotated, Any

import typer
from rich.table import Table

from llmpick.backends.base import GenerationRequest
from llmpick.backends.bundled import BUNDLED_MODELS
from llmpick.backends.pool import ModelPool, PooledModel
from llmpick.cli._common import TableOrJson, console, get_context, print_json
from llmpick.context import Context
from llmpick.errors import LlmpickError


def register(app: typer.Typer) -> None:
    """Add ``models`` and ``run`` to ``app``."""
    app.command("models")(models_command)
    app.command("run")(run_command)


def models_command(
    ctx: typer.Context,
    output_format: Annotated[
        TableOrJson, typer.Option("--format", help="table or json.")
    ] = TableOrJson.table,
    identity: Annotated[
        bool,
        typer.Option(
            "--identity/--no-identity",
            help="Load each local model to show its identity (hash, quantization, template).",
        ),
    ] = True,
) -> None:
    """List the models that can run here: bundled and configured, with backend and identity."""
    context = get_context(ctx)
    names = list(BUNDLED_MODELS) + [
        n for n in context.settings.config.models if n not in BUNDLED_MODELS
    ]
    entries = asyncio.run(_entries(context, names, identity))
    if output_format is TableOrJson.json:
        print_json({"models": entries, "backends": context.backends.names()})
        return
    table = Table(title="Models that can run here")
    for col in ("name", "backend", "source", "quantization", "weights sha256", "status"):
        table.add_column(col)
    for e in entries:
        ident = e.get("identity", {})
        table.add_row(
            e["name"],
            e.get("backend", ""),
            e.get("source", ""),
            ident.get("quantization", ""),
            (ident.get("weights_sha256") or "")[:12],
            e["status"],
        )
    console.print(table)
    console.print(
        "Also: llamacpp:PATH.gguf, llamacpp:OWNER/REPO@FILE.gguf, hf:REPO_OR_PATH, "
        "openai:MODEL@BASE_URL, column:NAME. Backends: " + ", ".join(context.backends.names()),
        highlight=False,
    )


async def _entries(context: Context, names: list[str], identity: bool) -> list[dict[str, Any]]:
    """One entry per model; with ``identity``, each local model is loaded, then closed."""
    entries: list[dict[str, Any]] = []
    async with ModelPool(context) as pool:
        for name in names:
            entry: dict[str, Any] = {"name": name}
            try:
                spec = context.resolve(name)
                entry.update(
                    backend=spec.backend,
                    model=spec.model,
                    source=spec.source,
                    catalog_id=spec.catalog_id,
                )
                if identity and spec.backend in ("llamacpp", "column", "openai"):
                    model = await pool.open(spec)
                    entry["identity"] = model.identity().model_dump(exclude_none=True)
                    await pool.close(model.name)
                entry["status"] = "ok"
            except LlmpickError as exc:
                entry["status"] = f"unavailable: {exc.one_line()}"
            entries.append(entry)
    return entries


def run_command(
    ctx: typer.Context,
    prompt: Annotated[str, typer.Argument(help="The prompt; '-' reads it from stdin.")],
    model: Annotated[
        str, typer.Option("-m", "--model", help="Model spec (see 'llmpick models').")
    ] = "smollm2-135m-instruct",
    system: Annotated[str | None, typer.Option("--system", help="System message.")] = None,
    max_tokens: Annotated[int, typer.Option("--max-tokens", min=1)] = 256,
    temperature: Annotated[float, typer.Option("--temperature", min=0.0, max=2.0)] = 0.0,
    top_p: Annotated[float, typer.Option("--top-p", min=0.0, max=1.0)] = 1.0,
    seed: Annotated[int | None, typer.Option("--seed")] = None,
    output_format: Annotated[
        str, typer.Option("--format", help="text (streamed) or json.")
    ] = "text",
) -> None:
    """Run one prompt through a model and stream the answer."""
    if output_format not in ("text", "json"):
        raise typer.BadParameter("use text or json", param_hint="--format")
    if prompt == "-":
        prompt = sys.stdin.read()
    context = get_context(ctx)
    request = GenerationRequest.from_prompt(
        prompt,
        system=system,
        max_tokens=max_tokens,
        temperature=temperature,
        top_p=max(top_p, 1e-6),
        seed=seed,
    )
    result = asyncio.run(_run(context, model, request, echo=output_format == "text"))
    if output_format == "json":
        print_json(
            {
                "model": model,
                "identity": result["identity"],
                "output": result["output"],
                "usage": result["usage"],
                "timing": result["timing"],
                "finish_reason": result["finish_reason"],
            }
        )


async def _run(
    context: Context, spec: str, request: GenerationRequest, echo: bool
) -> dict[str, Any]:
    """Open the model, stream its answer, close it."""
    async with ModelPool(context) as pool:
        model = await pool.open(spec)
        result = await _stream(model, request, echo)
        result["identity"] = model.identity().model_dump(exclude_none=True)
        return result


async def _stream(model: PooledModel, request: GenerationRequest, echo: bool) -> dict[str, Any]:
    """Drain the stream, echoing text as it arrives; timings measured here."""
    import time

    start = time.perf_counter()
    first: float | None = None
    parts: list[str] = []
    usage = None
    finish = None
    end = start
    async for chunk in model.stream(request):
        end = chunk.time_s
        if chunk.text:
            if first is None:
                first = chunk.time_s
            parts.append(chunk.text)
            if echo:
                sys.stdout.write(chunk.text)
                sys.stdout.flush()
        if chunk.final:
            usage = chunk.usage
            finish = chunk.finish_reason
    if echo:
        sys.stdout.write("\n")
    n = usage.completion_tokens if usage else 0
    decode_s = end - first if first is not None else 0.0
    return {
        "output": "".join(parts),
        "usage": {
            "prompt_tokens": usage.prompt_tokens if usage else None,
            "completion_tokens": n,
            "source": usage.source if usage else "none",
        },
        "timing": {
            "time_to_first_token_s": (first - start) if first is not None else None,
            "total_s": end - start,
            "output_tokens_per_second": (n - 1) / decode_s if n > 1 and decode_s > 0 else None,
            "measured": True,
        },
        "finish_reason": finish,
    }
