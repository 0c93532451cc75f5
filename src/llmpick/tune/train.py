"""LoRA training with peft on transformers, checkpointed and resumable.

A plain loop over torch's AdamW (the optimizer and the schedule are the
libraries', not hand-written): each optimizer step takes ``grad_accumulation``
micro-batches of ``batch_size`` rows, and its loss is the mean over every
answer token of the step (prompt tokens are labelled -100 and never count).
The row order of epoch ``e`` is a permutation seeded with ``seed + e``, so any
step's rows follow from its number: a resume needs no data-loader state.

Every ``checkpoint_every`` steps (and on Ctrl-C) the adapter, the optimizer,
the schedule and the RNG go to ``checkpoints/step-N/``; only when that folder
is complete does ``checkpoints/latest.json`` point at it (written to a
temporary name, then renamed), so ``kill -9`` at any moment leaves the previous
checkpoint usable, and the same command resumes from it.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import resource
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from llmpick.backends.spec import ModelSpec
from llmpick.errors import ConfigError, MissingDependencyError, ModelFileError, UsageError
from llmpick.tune.data import EncodedExample
from llmpick.tune.options import DEFAULT_TARGET_MODULES, TuneOptions

__all__ = [
    "BaseModelRef",
    "LoadedBase",
    "TrainResult",
    "TrainState",
    "load_base",
    "load_tokenizer",
    "train_lora",
]


class BaseModelRef(BaseModel):
    """Where the base weights are: ``llamacpp`` + a GGUF path, or ``hf`` + Hub id/dir/GGUF."""

    backend: str
    model: str


class TrainState(BaseModel):
    """What a checkpoint knows besides the tensors (``state.json``)."""

    fingerprint: str
    step: int
    total_steps: int
    tokens: int = 0
    train_seconds: float = 0.0
    #: (step, mean answer-token loss of that step)
    train_loss: list[tuple[int, float]] = Field(default_factory=list)
    #: (step, mean answer-token loss on the held-out rows)
    holdout_loss: list[tuple[int, float]] = Field(default_factory=list)
    #: steps at which an earlier invocation stopped and this one resumed
    resumed_at: list[int] = Field(default_factory=list)


class TrainResult(BaseModel):
    """A finished training: its curve and its measured speed and memory."""

    state: TrainState
    device: str
    dtype: str
    model_type: str
    trainable_params: int
    total_params: int
    target_modules: list[str]
    #: training tokens (prompt + answer, no padding) per second of training steps (measured)
    tokens_per_second: float | None
    #: peak resident memory of this process (CPU), or peak allocated CUDA memory (measured)
    peak_memory_bytes: int | None
    peak_memory_kind: str
    #: steps this invocation ran (the rest came from a checkpoint)
    steps_run: int


class LoadedBase:
    """The base model and tokenizer, loaded by transformers for training."""

    def __init__(self, model: Any, tokenizer: Any, device: str, dtype: Any, torch: Any) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.device = device
        self.dtype = dtype
        self.torch = torch


def _import_training() -> tuple[Any, Any, Any]:
    try:
        import peft
        import torch
        import transformers
    except ImportError as exc:
        raise MissingDependencyError(exc.name or "peft", "hf") from exc
    return torch, transformers, peft


def base_ref(spec: ModelSpec) -> BaseModelRef:
    """The weights behind ``spec`` that transformers can train on."""
    if spec.backend == "llamacpp":
        from llmpick.backends.gguf_files import resolve_gguf

        options = spec.options
        path = resolve_gguf(spec.model, options.get("hf_repo"), options.get("hf_revision"))
        return BaseModelRef(backend="llamacpp", model=str(Path(path).resolve()))
    if spec.backend == "hf":
        local = Path(spec.model).expanduser()
        model = str(local.resolve()) if local.exists() else spec.model
        return BaseModelRef(backend="hf", model=model)
    raise UsageError(
        f"cannot train on {spec.name}: its weights are behind the {spec.backend} backend",
        "give a local model: a bundled alias, llamacpp:PATH.gguf, or hf:HUB_ID / hf:DIR",
    )


def _source(ref: BaseModelRef) -> tuple[str, dict[str, Any]]:
    if ref.model.endswith(".gguf"):
        return str(Path(ref.model).parent), {"gguf_file": Path(ref.model).name}
    return ref.model, {}


def _load_error(ref: BaseModelRef, exc: BaseException) -> ModelFileError:
    return ModelFileError(
        f"transformers could not load '{ref.model}' for training: {str(exc).splitlines()[0]}",
        "check the path or Hub id; a GGUF must be an architecture transformers can read",
    )


def load_tokenizer(ref: BaseModelRef) -> Any:
    """The base's tokenizer (and chat template); a pad token if it has none."""
    _, transformers, _ = _import_training()
    source, kwargs = _source(ref)
    try:
        tokenizer = transformers.AutoTokenizer.from_pretrained(source, **kwargs)
    except (OSError, ValueError, RuntimeError, KeyError) as exc:
        raise _load_error(ref, exc) from exc
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_base(ref: BaseModelRef, tokenizer: Any, device: str, qlora: bool) -> LoadedBase:
    """Load the base in full precision (a GGUF is dequantized), or NF4 for QLoRA."""
    torch, transformers, _ = _import_training()
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if qlora and device != "cuda":
        raise ConfigError("QLoRA (bitsandbytes 4-bit) needs a CUDA GPU", "drop --qlora")
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    source, kwargs = _source(ref)
    if qlora:
        kwargs["quantization_config"] = transformers.BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=torch.bfloat16,
        )
    try:
        model = transformers.AutoModelForCausalLM.from_pretrained(source, dtype=dtype, **kwargs)
    except (OSError, ValueError, RuntimeError, KeyError) as exc:
        raise _load_error(ref, exc) from exc
    if not qlora:
        model.to(device)
    return LoadedBase(model, tokenizer, device, dtype, torch)


def target_modules(model: Any, wanted: list[str] | None) -> list[str] | str:
    """The LoRA targets: as asked, else the default of the architecture."""
    if wanted:
        return wanted
    return DEFAULT_TARGET_MODULES.get(getattr(model.config, "model_type", ""), "all-linear")


def train_lora(
    base: LoadedBase,
    train: list[EncodedExample],
    holdout: list[EncodedExample],
    options: TuneOptions,
    fingerprint: str,
) -> tuple[Any, TrainResult]:
    """Train (or resume) the adapter; returns the peft model and the result."""
    torch, transformers, peft = _import_training()
    settings = options.train
    torch.manual_seed(settings.seed)
    if settings.qlora:
        base.model = peft.prepare_model_for_kbit_training(
            base.model, use_gradient_checkpointing=settings.gradient_checkpointing
        )
    elif settings.gradient_checkpointing:
        base.model.gradient_checkpointing_enable()
        base.model.enable_input_require_grads()
    targets = target_modules(base.model, options.lora.target_modules)
    config = peft.LoraConfig(
        r=options.lora.rank,
        lora_alpha=options.lora.alpha,
        lora_dropout=options.lora.dropout,
        target_modules=targets,
        bias="none",
        task_type="CAUSAL_LM",
    )
    model = peft.get_peft_model(base.model, config)
    per_step = settings.batch_size * settings.grad_accumulation
    steps_per_epoch = math.ceil(len(train) / per_step)
    total = settings.max_steps or settings.epochs * steps_per_epoch
    optimizer = torch.optim.AdamW(
        [p for p in model.parameters() if p.requires_grad],
        lr=settings.learning_rate,
        weight_decay=settings.weight_decay,
    )
    schedule = transformers.get_linear_schedule_with_warmup(
        optimizer, int(settings.warmup_ratio * total), total
    )
    checkpoints = Checkpoints(options.out / "checkpoints", torch, peft)
    state = checkpoints.resume(model, optimizer, schedule, fingerprint, options.restart)
    if state is None:
        state = TrainState(fingerprint=fingerprint, step=0, total_steps=total)
    elif state.step < total:
        state.resumed_at.append(state.step)
        options.event(f"resuming from the checkpoint at step {state.step} of {total}")
    state.total_steps = total
    loop = _Loop(base, model, optimizer, schedule, train, holdout, options, checkpoints)
    start_step = state.step
    loop.run(state)
    trainable, everything = model.get_nb_trainable_parameters()
    peak, kind = _peak_memory(torch, base.device)
    return model, TrainResult(
        state=state,
        device=base.device,
        dtype=str(base.dtype).removeprefix("torch."),
        model_type=str(getattr(base.model.config, "model_type", "")),
        trainable_params=int(trainable),
        total_params=int(everything),
        target_modules=sorted(config.target_modules)
        if not isinstance(config.target_modules, str)
        else [config.target_modules],
        tokens_per_second=loop.tokens / loop.seconds if loop.seconds > 0 else None,
        peak_memory_bytes=peak,
        peak_memory_kind=kind,
        steps_run=state.step - start_step,
    )


def _peak_memory(torch: Any, device: str) -> tuple[int | None, str]:
    if device == "cuda":
        return int(torch.cuda.max_memory_allocated()), "peak CUDA memory allocated by torch"
    # ru_maxrss is in KiB on Linux
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024, "peak RSS of this process"


class _Loop:
    """The optimizer steps from the state's step to its total."""

    def __init__(
        self,
        base: LoadedBase,
        model: Any,
        optimizer: Any,
        schedule: Any,
        train: list[EncodedExample],
        holdout: list[EncodedExample],
        options: TuneOptions,
        checkpoints: Checkpoints,
    ) -> None:
        self.torch = base.torch
        self.device = base.device
        self.pad_id = int(base.tokenizer.pad_token_id)
        self.model, self.optimizer, self.schedule = model, optimizer, schedule
        self.train, self.holdout = train, holdout
        self.options = options
        self.settings = options.train
        self.checkpoints = checkpoints
        self.tokens = 0
        self.seconds = 0.0

    def micro_batches(self, step: int) -> list[list[EncodedExample]]:
        """The rows of optimizer step ``step`` (0-based), in micro-batches."""
        s = self.settings
        per_step = s.batch_size * s.grad_accumulation
        steps_per_epoch = math.ceil(len(self.train) / per_step)
        epoch, within = divmod(step, steps_per_epoch)
        generator = self.torch.Generator().manual_seed(s.seed + epoch)
        order = self.torch.randperm(len(self.train), generator=generator).tolist()
        picked = order[within * per_step : (within + 1) * per_step]
        rows = [self.train[i] for i in picked]
        return [rows[i : i + s.batch_size] for i in range(0, len(rows), s.batch_size)]

    def batch(self, rows: list[EncodedExample]) -> dict[str, Any]:
        width = max(len(r.input_ids) for r in rows)
        ids = [r.input_ids + [self.pad_id] * (width - len(r.input_ids)) for r in rows]
        labels = [r.labels + [-100] * (width - len(r.labels)) for r in rows]
        mask = [[1] * len(r.input_ids) + [0] * (width - len(r.input_ids)) for r in rows]
        t = self.torch
        return {
            "input_ids": t.tensor(ids, device=self.device),
            "labels": t.tensor(labels, device=self.device),
            "attention_mask": t.tensor(mask, device=self.device),
        }

    def loss_sum(self, rows: list[EncodedExample]) -> tuple[Any, int]:
        """Summed loss over the answer tokens of ``rows`` and how many there are."""
        batch = self.batch(rows)
        # transformers shifts the labels by one: the first label never counts
        n = int((batch["labels"][:, 1:] != -100).sum())
        loss = self.model(**batch).loss
        return loss * n, n

    def step(self, step: int) -> tuple[float, int]:
        """One optimizer step; its mean answer-token loss and the tokens it read."""
        self.model.train()
        micro = self.micro_batches(step)
        # transformers shifts labels by one: a label at position 0 never counts
        counted = sum(sum(1 for t in r.labels[1:] if t != -100) for b in micro for r in b)
        loss_value, tokens = 0.0, 0
        for rows in micro:
            summed, _ = self.loss_sum(rows)
            (summed / max(1, counted)).backward()
            loss_value += float(summed.detach())
            tokens += sum(len(r.input_ids) for r in rows)
        self.optimizer.step()
        self.schedule.step()
        self.optimizer.zero_grad(set_to_none=True)
        return loss_value / max(1, counted), tokens

    def holdout_loss(self) -> float | None:
        if not self.holdout:
            return None
        self.model.eval()
        total, count = 0.0, 0
        with self.torch.no_grad():
            size = self.settings.batch_size
            for i in range(0, len(self.holdout), size):
                summed, n = self.loss_sum(self.holdout[i : i + size])
                total, count = total + float(summed), count + n
        return total / max(1, count)

    def run(self, state: TrainState) -> None:
        if state.step == 0 and not state.holdout_loss:
            first = self.holdout_loss()
            if first is not None:
                state.holdout_loss.append((0, first))
        saved = state.step
        with _progress(self.options, state) as progress:
            try:
                while state.step < state.total_steps:
                    started = time.perf_counter()
                    loss, tokens = self.step(state.step)
                    spent = time.perf_counter() - started
                    self.seconds += spent
                    self.tokens += tokens
                    state.step += 1
                    state.tokens += tokens
                    state.train_seconds += spent
                    state.train_loss.append((state.step, loss))
                    progress(state, loss, self.tokens / self.seconds if self.seconds else 0.0)
                    every = self.options.checkpoint_every
                    if state.step % every == 0 or state.step == state.total_steps:
                        held = self.holdout_loss()
                        if held is not None:
                            state.holdout_loss.append((state.step, held))
                        self.checkpoints.save(self.model, self.optimizer, self.schedule, state)
                        saved = state.step
            except KeyboardInterrupt:
                if state.step > saved:
                    self.checkpoints.save(self.model, self.optimizer, self.schedule, state)
                raise


@contextlib.contextmanager
def _progress(options: TuneOptions, state: TrainState) -> Iterator[Any]:
    """A rich bar with loss, training tokens/s and time left; a no-op callback when off."""
    if not options.progress:
        yield lambda *_: None
        return
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    bar = Progress(
        TextColumn("training"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("loss {task.fields[loss]}"),
        TextColumn("{task.fields[rate]} tok/s"),
        TimeElapsedColumn(),
        TextColumn("left"),
        TimeRemainingColumn(),
        console=Console(stderr=True),
        transient=True,
    )
    task = bar.add_task("train", total=state.total_steps, completed=state.step, loss="—", rate="—")

    def update(s: TrainState, loss: float, rate: float) -> None:
        bar.update(task, completed=s.step, loss=f"{loss:.3f}", rate=f"{rate:.0f}")

    with bar:
        yield update


class Checkpoints:
    """``checkpoints/step-N/`` folders and the ``latest.json`` pointer to the last complete one."""

    def __init__(self, root: Path, torch: Any, peft: Any) -> None:
        self.root = root
        self.torch = torch
        self.peft = peft

    def latest(self) -> tuple[Path, TrainState] | None:
        """The last complete checkpoint, if any."""
        pointer = self.root / "latest.json"
        if not pointer.exists():
            return None
        name = json.loads(pointer.read_text(encoding="utf-8"))["dir"]
        folder = self.root / name
        state = TrainState.model_validate_json((folder / "state.json").read_text("utf-8"))
        return folder, state

    def resume(
        self, model: Any, optimizer: Any, schedule: Any, fingerprint: str, restart: bool
    ) -> TrainState | None:
        found = self.latest()
        if found is None:
            return None
        folder, state = found
        if state.fingerprint != fingerprint:
            if not restart:
                raise UsageError(
                    f"{self.root.parent} holds a checkpoint of a different training "
                    "(other data, model or settings)",
                    "pass --restart to discard it, or use another --out",
                )
            shutil.rmtree(self.root)
            return None
        from safetensors.torch import load_file

        self.peft.set_peft_model_state_dict(model, load_file(folder / "adapter.safetensors"))
        extra = self.torch.load(folder / "optimizer.pt", weights_only=True)
        optimizer.load_state_dict(extra["optimizer"])
        schedule.load_state_dict(extra["schedule"])
        self.torch.set_rng_state(extra["rng"])
        return state

    def save(self, model: Any, optimizer: Any, schedule: Any, state: TrainState) -> None:
        from safetensors.torch import save_file

        folder = self.root / f"step-{state.step:06d}"
        tmp = self.root / f".step-{state.step:06d}.{os.getpid()}.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        weights = {
            k: v.detach().cpu().contiguous()
            for k, v in self.peft.get_peft_model_state_dict(
                model, save_embedding_layers=False
            ).items()
        }
        save_file(weights, tmp / "adapter.safetensors")
        extra = {
            "optimizer": optimizer.state_dict(),
            "schedule": schedule.state_dict(),
            "rng": self.torch.get_rng_state(),
        }
        self.torch.save(extra, tmp / "optimizer.pt")
        (tmp / "state.json").write_text(state.model_dump_json(), encoding="utf-8")
        for file in tmp.iterdir():
            with file.open("rb") as fh:
                os.fsync(fh.fileno())
        shutil.rmtree(folder, ignore_errors=True)
        os.replace(tmp, folder)
        pointer_tmp = self.root / f".latest.{os.getpid()}.tmp"
        pointer_tmp.write_text(json.dumps({"dir": folder.name, "step": state.step}), "utf-8")
        with pointer_tmp.open("rb") as fh:
            os.fsync(fh.fileno())
        os.replace(pointer_tmp, self.root / "latest.json")
        for old in self.root.glob("step-*"):
            if old != folder:
                shutil.rmtree(old, ignore_errors=True)
