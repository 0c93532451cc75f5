"""``llmpick tune``: a LoRA adapter trained on your rows, proven on held-out rows."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from llmpick.cli._common import TableOrJson, console, err_console, get_context, print_json
from llmpick.store import DEFAULT_DB
from llmpick.tune import LoraSettings, TrainSettings, TuneOptions, TuneReport, run_tune
from llmpick.tune.report import tune_json, write_tune_report


def register(app: typer.Typer) -> None:
    """Add ``tune`` to ``app``."""
    app.command("tune")(tune_command)


def tune_command(
    ctx: typer.Context,
    model: Annotated[str, typer.Argument(help="Base: bundled alias, llamacpp:PATH.gguf, hf:ID.")],
    data: Annotated[Path, typer.Option("--data", help="Rows as eval reads them, with answers.")],
    out: Annotated[Path, typer.Option("--out", help="Output folder (a model spec).")] = Path(
        "tuned"
    ),
    holdout: Annotated[
        float, typer.Option("--holdout", min=0.01, max=0.9, help="Fraction held out.")
    ] = 0.2,
    eval_data: Annotated[
        Path | None, typer.Option("--eval-data", help="Held-out rows from a file instead.")
    ] = None,
    scorer: Annotated[
        list[str] | None,
        typer.Option("--scorer", "-s", help="NAME[:ARG=VAL,…] for the proof; default from data."),
    ] = None,
    rank: Annotated[int, typer.Option("--rank", min=1, help="LoRA rank.")] = 16,
    alpha: Annotated[float, typer.Option("--alpha", help="LoRA alpha (scale alpha/rank).")] = 32.0,
    dropout: Annotated[float, typer.Option("--dropout", min=0.0, max=0.9)] = 0.05,
    target: Annotated[
        list[str] | None, typer.Option("--target", help="Module names to adapt (repeatable).")
    ] = None,
    lr: Annotated[float, typer.Option("--lr", help="Peak learning rate (AdamW).")] = 2e-4,
    epochs: Annotated[int, typer.Option("--epochs", min=1)] = 3,
    max_steps: Annotated[
        int | None, typer.Option("--max-steps", min=1, help="Stop after N steps.")
    ] = None,
    batch: Annotated[int, typer.Option("--batch", min=1, help="Rows per micro-batch.")] = 4,
    grad_accum: Annotated[int, typer.Option("--grad-accum", min=1)] = 1,
    max_seq_len: Annotated[int, typer.Option("--max-seq-len", min=8)] = 512,
    seed: Annotated[int, typer.Option("--seed")] = 0,
    checkpoint_every: Annotated[int, typer.Option("--checkpoint-every", min=1)] = 10,
    gradient_checkpointing: Annotated[bool, typer.Option("--gradient-checkpointing")] = False,
    qlora: Annotated[bool, typer.Option("--qlora", help="Base in NF4 (CUDA only).")] = False,
    max_tokens: Annotated[int, typer.Option("--max-tokens", min=1, help="Proof answers.")] = 64,
    restart: Annotated[bool, typer.Option("--restart", help="Discard a checkpoint in --out.")] = (
        False
    ),
    evaluate: Annotated[bool, typer.Option("--eval/--no-eval", help="Run the proof.")] = True,
    png: Annotated[bool, typer.Option("--png/--no-png", help="Render tune.png.")] = True,
    db: Annotated[Path, typer.Option("--db", help="SQLite store.")] = DEFAULT_DB,
    output_format: Annotated[TableOrJson, typer.Option("--format")] = TableOrJson.table,
) -> None:
    """Train a LoRA adapter on your rows, then test it against its base on held-out rows.

    Loss only on the answers; a checkpoint every --checkpoint-every steps (Ctrl-C or
    kill -9 keep the last one, the same command resumes). The proof runs base and
    tuned through eval on rows never trained on; --out is then a model spec for
    run, eval, bench, serve and the workbench.
    """
    options = TuneOptions(
        data=data,
        out=out,
        holdout=holdout,
        eval_data=eval_data,
        scorers=list(scorer or []),
        lora=LoraSettings(rank=rank, alpha=alpha, dropout=dropout, target_modules=target or None),
        train=TrainSettings(
            learning_rate=lr,
            epochs=epochs,
            max_steps=max_steps,
            batch_size=batch,
            grad_accumulation=grad_accum,
            max_seq_len=max_seq_len,
            seed=seed,
            gradient_checkpointing=gradient_checkpointing,
            qlora=qlora,
        ),
        checkpoint_every=checkpoint_every,
        max_tokens=max_tokens,
        db_path=db,
        restart=restart,
        evaluate=evaluate,
        png=png,
        progress=err_console.is_terminal,
        on_event=lambda text: err_console.print(f"[dim]{escape(text)}[/]", highlight=False),
    )
    report = run_tune(get_context(ctx), model, options)
    paths = write_tune_report(report, out, png=png)
    if output_format is TableOrJson.json:
        print_json({**tune_json(report), "files": {k: str(v) for k, v in paths.items()}})
        return
    _print(report)
    console.print(f"report: {', '.join(str(p) for p in paths.values())}", highlight=False)


def _print(report: TuneReport) -> None:
    t = report.training
    rate = "—" if t.tokens_per_second is None else f"{t.tokens_per_second:.1f}"
    console.print(
        f"trained {t.state.step} steps ({t.steps_run} now"
        + (f", resumed at step {t.state.resumed_at[-1]}" if t.state.resumed_at else "")
        + f"), {t.trainable_params:,} adapter parameters; {rate} training tokens/s (measured)",
        highlight=False,
    )
    measured = f"{t.peak_memory_bytes / 2**20:.0f} MiB" if t.peak_memory_bytes else "—"
    estimate = report.memory_estimate or {}
    est = f"{estimate['total_bytes'] / 2**20:.0f} MiB" if estimate.get("total_bytes") else "—"
    console.print(
        f"memory: {measured} measured ({t.peak_memory_kind}), {est} estimated"
        + (f" ({escape(estimate['basis'])})" if estimate.get("basis") else ""),
        highlight=False,
    )
    proof = report.proof
    if proof is not None:
        for score in (proof.base, proof.tuned):
            ci = f" [{score.ci95[0]:.2f}, {score.ci95[1]:.2f}]" if score.ci95 else ""
            mean = "—" if score.mean is None else f"{score.mean:.3f}"
            console.print(f"{escape(score.name)}: {mean}{ci} (n = {score.n})", highlight=False)
        console.print(f"[bold]{escape(proof.sentence)}[/]", highlight=False)
        if proof.warning:
            err_console.print(f"[bold red]warning:[/] {escape(proof.warning)}", highlight=False)
    for note in report.notes:
        console.print(f"[dim]note: {escape(note)}[/]", highlight=False)
    console.print(f"use it: -m {escape(report.spec)}", highlight=False)
