"""``llmpick fit`` (memory and speed estimates) and ``llmpick hardware`` (devices)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from llmpick.cli._common import TableOrJson, console, get_context, print_json
from llmpick.errors import UsageError
from llmpick.fit import RUNTIMES, FitResult, fit_model, list_quantizations, resolve_shape
from llmpick.fit.measured_loss import lookup_measured_loss
from llmpick.fit.quant import KV_CACHE_DTYPES
from llmpick.hardware import detect_cpu, detect_gpus, detect_host, list_devices
from llmpick.store import DEFAULT_DB

GIB = 1024**3


def register(app: typer.Typer) -> None:
    """Add ``fit`` and ``hardware`` to ``app``."""
    app.command("fit")(fit_command)
    app.command("hardware")(hardware_command)


def _gib(value: int | None) -> str:
    return "" if value is None else f"{value / GIB:.2f} GiB"


def fit_command(
    ctx: typer.Context,
    model: Annotated[
        str,
        typer.Argument(help="Catalog id, bundled alias, GGUF file or config.json."),
    ],
    quant: Annotated[
        str | None,
        typer.Option(
            "--quant",
            "-q",
            help="fp32, bf16, fp16, fp8, int8, nf4, gptq, awq, or a GGUF type (Q8_0, Q6_K, "
            "Q5_K_M, Q4_K_M, Q4_0, Q3_K_M, Q2_K, IQ4_XS...). Default: the file as it is, "
            "else the model's native dtype.",
        ),
    ] = None,
    context_tokens: Annotated[
        int, typer.Option("--context", "-c", min=1, help="Context per sequence, tokens.")
    ] = 4096,
    batch: Annotated[
        int,
        typer.Option(
            "--batch",
            "-b",
            min=1,
            help="Concurrent sequences (llamacpp: its parallel slots, KV per slot).",
        ),
    ] = 1,
    kv_dtype: Annotated[
        str, typer.Option("--kv-dtype", help="KV cache type: " + "|".join(KV_CACHE_DTYPES))
    ] = "f16",
    runtime: Annotated[str, typer.Option("--runtime", help="|".join(RUNTIMES))] = "llamacpp",
    device: Annotated[
        str | None,
        typer.Option(
            "--device",
            "-d",
            help="A device (rtx4090, a100-80gb, m2-max, 16gb...), 'cpu', or omit for this "
            "machine. 'llmpick hardware --list' shows them.",
        ),
    ] = None,
    prompt_tokens: Annotated[
        int | None,
        typer.Option("--prompt-tokens", min=1, help="Prompt length for TTFT (default: context)."),
    ] = None,
    db: Annotated[
        Path, typer.Option("--db", help="Store holding measured losses from llmpick quant.")
    ] = DEFAULT_DB,
    output_format: Annotated[
        TableOrJson, typer.Option("--format", help="table or json.")
    ] = TableOrJson.table,
    train: Annotated[
        str | None,
        typer.Option("--train", help="lora|qlora: estimate a training step instead of serving."),
    ] = None,
    seq_len: Annotated[int, typer.Option("--seq-len", min=1, help="With --train.")] = 512,
    rank: Annotated[int, typer.Option("--rank", min=1, help="With --train: LoRA rank.")] = 16,
    gradient_checkpointing: Annotated[
        bool, typer.Option("--gradient-checkpointing", help="With --train.")
    ] = False,
) -> None:
    """Estimate memory (weights, KV cache, overhead) and speed of MODEL on a device.

    With --train lora|qlora: the memory of a LoRA/QLoRA training step (weights,
    adapter, optimizer states, gradients, activations with and without gradient
    checkpointing) and its time, with the basis.
    """
    if train is not None:
        options = (seq_len, batch, rank, gradient_checkpointing)
        _fit_training(ctx, model, train, *options, device, output_format)
        return
    if runtime not in RUNTIMES:
        raise UsageError(f"unknown runtime {runtime!r}", "use one of: " + ", ".join(RUNTIMES))
    context = get_context(ctx)
    shape = resolve_shape(model, context.settings.cache_dir)
    result = fit_model(
        shape,
        quant=quant,
        context=context_tokens,
        batch=batch,
        kv_dtype=kv_dtype,
        runtime=runtime,
        device=device,
        prompt_tokens=prompt_tokens,
    )
    loss = lookup_measured_loss(db, model, quant) if quant else None
    if output_format is TableOrJson.json:
        doc = result.to_json_dict()
        doc["measured_quant_loss"] = loss.model_dump() if loss else None
        print_json(doc)
        return
    _print_fit(result)
    if loss is not None:
        console.print(
            f"quality loss of {loss.quant} on this model: {100 * loss.quality_loss:.1f}% of the "
            f"reference's score (measured: {loss.source}; data {loss.data})",
            highlight=False,
        )


def _fit_training(
    ctx: typer.Context,
    model: str,
    method: str,
    seq_len: int,
    batch: int,
    rank: int,
    checkpointing: bool,
    device: str | None,
    output_format: TableOrJson,
) -> None:
    from llmpick.fit.training import estimate_training
    from llmpick.hardware import detect_local, get_device

    if method not in ("lora", "qlora"):
        raise UsageError(f"unknown --train {method!r}", "use lora or qlora")
    shape = resolve_shape(model, get_context(ctx).settings.cache_dir)
    dev = detect_local() if device is None else get_device(device)
    gpu = dev.kind not in ("cpu", "generic")
    est = estimate_training(
        shape, "qlora" if method == "qlora" else "lora", seq_len, batch, rank, gpu,
        checkpointing, peak_flops=dev.bf16_flops,
    )  # fmt: skip
    if output_format is TableOrJson.json:
        print_json({"device": dev.name, **est.model_dump(mode="json")})
        return
    mib = 2**20
    console.print(
        f"{shape.name} {method} training on {dev.name}, seq {seq_len} x batch {batch}, rank {rank}"
        f" (estimated)\n  weights {est.weights_bytes / mib:.0f} MiB, adapter + grads + AdamW "
        f"{est.adapter_state_bytes / mib:.0f} MiB ({est.adapter_params:,} params), activations "
        f"{est.activation_bytes / mib:.0f} MiB ({est.activation_bytes_checkpointed / mib:.0f} with "
        f"checkpointing), logits {est.logits_bytes / mib:.0f} MiB\n  total "
        f"{est.total_bytes / mib:.0f} MiB"
        + (f", {est.step_seconds:.2f} s per step" if est.step_seconds else ""),
        highlight=False,
    )
    console.print(f"[dim]{escape(est.basis)}[/]", highlight=False)


def _print_fit(r: FitResult) -> None:
    dev = r.device
    title = f"{r.model} · {r.quant} · {r.context} tokens x {r.batch} · {r.runtime} on {dev['name']}"
    table = Table(title=title, show_lines=False)
    table.add_column("figure")
    table.add_column("value", justify="right")
    table.add_column("kind")
    table.add_column("basis", overflow="fold")
    rows: list[tuple[str, str, str, str]] = [
        ("weights", _gib(r.weights_bytes), r.labels["weights_bytes"], r.basis["weights_bytes"]),
        ("KV cache", _gib(r.kv_cache_bytes), r.labels["kv_cache_bytes"], r.basis["kv_cache_bytes"]),
        (
            "runtime overhead",
            _gib(r.overhead_bytes),
            "estimated",
            ", ".join(f"{k} {_gib(v)}" for k, v in r.overhead_breakdown.items() if v),
        ),
        ("total", _gib(r.total_bytes), "estimated", "weights + KV cache + overhead"),
        (
            "fits",
            {True: "yes", False: "NO", None: "unknown"}[r.fits],
            "estimated",
            r.basis["fits"],
        ),
        (
            "max context",
            f"{r.max_context:,}" if r.max_context is not None else "",
            "estimated",
            r.basis["max_context"],
        ),
        (
            "max concurrent sequences",
            str(r.max_concurrent_sequences) if r.max_concurrent_sequences is not None else "",
            "estimated",
            r.basis["max_concurrent_sequences"],
        ),
        (
            "decode tokens/s",
            f"{r.decode_tokens_per_second:,.1f}" if r.decode_tokens_per_second else "n/a",
            "estimated",
            r.basis["decode_tokens_per_second"],
        ),
        (
            "time to first token",
            f"{r.time_to_first_token_s:,.3f} s" if r.time_to_first_token_s is not None else "n/a",
            "estimated",
            r.basis["time_to_first_token_s"],
        ),
    ]
    for row in rows:
        table.add_row(*row)
    console.print(table)
    measured = dev.get("measured") or []
    console.print(
        f"device: {dev['name']}: {_gib(dev['memory_bytes'])}"
        f" ({'measured' if 'memory_bytes' in measured else 'spec'}), "
        f"{dev['memory_bandwidth_gb_s'] or 'unknown'} GB/s "
        f"({'measured' if 'memory_bandwidth_gb_s' in measured else 'spec'}), "
        f"{dev['bf16_tflops'] or 'unknown'} BF16 TFLOPS; source: {r.basis['device']}",
        highlight=False,
    )
    for warning in r.warnings:
        console.print(f"[yellow]warning:[/] {warning}", highlight=False)


def hardware_command(
    list_all: Annotated[
        bool, typer.Option("--list", help="Also list the device table llmpick knows.")
    ] = False,
    quants: Annotated[
        bool, typer.Option("--quants", help="Also list quantizations and their bits per weight.")
    ] = False,
    output_format: Annotated[
        TableOrJson, typer.Option("--format", help="table or json.")
    ] = TableOrJson.table,
) -> None:
    """Show this machine (CPU, RAM, GPUs) and, with --list, the known devices."""
    host = detect_host()
    cpu = detect_cpu()
    gpus = detect_gpus()
    data: dict[str, Any] = {
        "host": host.model_dump(),
        "cpu_device": cpu.model_dump(exclude={"host"}),
        "gpus": [g.model_dump(exclude={"host"}) for g in gpus],
    }
    if list_all:
        data["devices"] = [d.model_dump() for d in list_devices()]
    if quants:
        data["quantizations"] = [q.model_dump() for q in list_quantizations()]
    if output_format is TableOrJson.json:
        print_json(data)
        return
    console.print(f"[bold]This machine[/]: {host.platform}, {host.cpu_model}", highlight=False)
    console.print(
        f"  cores: {host.physical_cores} physical, {host.logical_cores} logical, "
        f"{host.usable_cores} usable; RAM {_gib(host.ram_bytes)} "
        f"({_gib(host.available_ram_bytes)} available) (measured)",
        highlight=False,
    )
    console.print(
        f"  memory bandwidth {cpu.memory_bandwidth_gb_s} GB/s "
        f"({'measured' if 'memory_bandwidth_gb_s' in cpu.measured else 'spec'}: "
        f"{cpu.bandwidth_basis or cpu.source}); compute {cpu.bf16_tflops} TFLOPS "
        f"({cpu.flops_basis or cpu.source})",
        highlight=False,
    )
    if gpus:
        for gpu in gpus:
            console.print(
                f"  GPU {gpu.id}: {gpu.name}, {_gib(gpu.memory_bytes)} (measured), "
                f"{gpu.memory_bandwidth_gb_s or 'unknown'} GB/s, "
                f"{gpu.bf16_tflops or 'unknown'} BF16 TFLOPS (spec: {gpu.source or 'unknown'})",
                highlight=False,
            )
    else:
        console.print("  GPU: none detected (NVML unavailable or no NVIDIA driver)")
    if list_all:
        table = Table(title="Known devices (vendor specs)")
        for col in ("id", "name", "memory", "GB/s", "BF16 TFLOPS", "source"):
            table.add_column(col, overflow="fold")
        for d in list_devices():
            table.add_row(
                d.id,
                d.name,
                _gib(d.memory_bytes),
                f"{d.memory_bandwidth_gb_s:g}" if d.memory_bandwidth_gb_s else "",
                (f"{d.bf16_tflops:g}" + (" (derived)" if d.flops_basis else ""))
                if d.bf16_tflops
                else "",
                d.source or "",
            )
        console.print(table)
        console.print("Also: any size such as 16gb (memory only), 'cpu', or m2-max-32gb.")
    if quants:
        table = Table(title="Quantizations")
        for col in ("name", "family", "bits/weight", "runtimes", "source"):
            table.add_column(col, overflow="fold")
        for q in list_quantizations():
            table.add_row(
                q.name, q.family, f"{q.bits_per_weight:.4g}", ", ".join(q.runtimes), q.source
            )
        console.print(table)
