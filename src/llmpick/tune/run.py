"""``llmpick tune`` end to end: data, split, train (resumable), export, proof, report.

The output folder is the unit of work and the model spec: ``split.json``,
``holdout.jsonl``, ``checkpoints/``, ``train.json`` (the finished training),
``adapter/`` (peft), ``adapter.gguf`` (llama.cpp), ``tuned.json`` (what
``-m DIR`` runs) and the report (``tune.json``, ``tune.html``, ``tune.png``).
Running the same command again resumes an interrupted training, skips a
finished one, and re-runs the proof from the eval cache.
"""

from __future__ import annotations

import contextlib
import gc
import json
import os
import shutil
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from llmpick.backends.base import sha256_text
from llmpick.backends.tuned import MANIFEST, TunedManifest
from llmpick.context import Context
from llmpick.errors import DataError
from llmpick.tune.data import (
    Example,
    Split,
    encode_examples,
    load_examples,
    load_or_make_split,
    write_heldout,
)
from llmpick.tune.gguf_export import write_gguf_lora
from llmpick.tune.options import LoraSettings, TrainSettings, TuneOptions
from llmpick.tune.proof import Proof, prove
from llmpick.tune.train import BaseModelRef, TrainResult, base_ref

__all__ = ["TuneReport", "run_tune"]

SCHEMA_VERSION = 1


class TuneReport(BaseModel):
    """What ``llmpick tune`` produced: ``tune.json``."""

    schema_version: int = SCHEMA_VERSION
    #: the base model spec as given, and the spec that runs the tuned model
    model: str
    spec: str
    base: BaseModelRef
    adapter_dir: str
    gguf_adapter: str | None
    lora: LoraSettings
    train: TrainSettings
    data: dict[str, Any]
    training: TrainResult
    #: the training memory estimate (llmpick.fit.training) beside the measured peak
    memory_estimate: dict[str, Any] | None = None
    proof: Proof | None = None
    notes: list[str] = Field(default_factory=list)


def run_tune(context: Context, model: str, options: TuneOptions) -> TuneReport:
    """Train a LoRA adapter on ``options.data`` and prove it on the held-out rows."""
    spec = context.resolve(model)
    ref = base_ref(spec)
    out = options.out
    if options.restart:
        for name in ("checkpoints", "split.json", "train.json", MANIFEST):
            path = out / name
            shutil.rmtree(path) if path.is_dir() else path.unlink(missing_ok=True)
    examples, digest = load_examples(options.data)
    heldout_given, heldout_digest = (
        load_examples(options.eval_data) if options.eval_data else (None, None)
    )
    split = load_or_make_split(
        out, examples, sha256_text(f"{digest}|{heldout_digest}"), str(options.data),
        options.holdout, options.train.seed, heldout_given,
        str(options.eval_data) if options.eval_data else None,
    )  # fmt: skip
    train_rows, heldout = _split_rows(examples, heldout_given, split)
    fingerprint = sha256_text(
        json.dumps(
            {"base": ref.model_dump(), "data": split.data_sha256, "train": split.train_ids,
             "holdout": split.holdout_ids, **options.fingerprint_parts()},
            sort_keys=True,
        )
    )  # fmt: skip
    notes: list[str] = []
    training, estimate, gguf_name = _trained(ref, train_rows, heldout, options, fingerprint, notes)
    manifest = TunedManifest(
        base_spec=model, base_backend=ref.backend, base_model=ref.model, gguf_adapter=gguf_name
    )
    _write_json(out / MANIFEST, manifest.model_dump(mode="json"))
    write_heldout(out / "holdout.jsonl", heldout)
    report = TuneReport(
        model=model, spec=str(out), base=ref, adapter_dir=str(out / "adapter"),
        gguf_adapter=str(out / gguf_name) if gguf_name else None, lora=options.lora,
        train=options.train, training=training, memory_estimate=estimate, notes=notes,
        data={"source": str(options.data), "holdout_source": split.holdout_source,
              "train_rows": len(train_rows), "holdout_rows": len(heldout),
              "seed": split.seed, "split": str(out / "split.json")},
    )  # fmt: skip
    if options.evaluate:
        options.event(f"proof: {model} and {out} on {len(heldout)} held-out rows")
        report.proof = prove(
            context, out / "holdout.jsonl", model, str(out), options.scorers,
            options.max_tokens, options.train.seed, options.db_path, options.progress,
        )  # fmt: skip
    return report


def _split_rows(
    examples: list[Example], heldout_given: list[Example] | None, split: Split
) -> tuple[list[Example], list[Example]]:
    by_id = {e.id: e for e in examples}
    train = [by_id[i] for i in split.train_ids]
    if heldout_given is not None:
        return train, heldout_given
    return train, [by_id[i] for i in split.holdout_ids]


def _trained(
    ref: BaseModelRef,
    train_rows: list[Example],
    heldout: list[Example],
    options: TuneOptions,
    fingerprint: str,
    notes: list[str],
) -> tuple[TrainResult, dict[str, Any] | None, str | None]:
    """The finished training in ``out`` with this fingerprint, or a new (resumed) one."""
    out = options.out
    done = out / "train.json"
    if done.exists():
        with contextlib.suppress(ValueError, KeyError):
            saved = json.loads(done.read_text(encoding="utf-8"))
            if saved["fingerprint"] == fingerprint and (out / "adapter").is_dir():
                options.event(f"{out} already holds this training: skipping to the proof")
                notes.extend(saved.get("notes", []))
                result = TrainResult.model_validate(saved["result"])
                return result, saved.get("estimate"), saved.get("gguf_adapter")
    from llmpick.tune.train import load_base, load_tokenizer, train_lora

    tokenizer = load_tokenizer(ref)
    max_len = options.train.max_seq_len
    encoded = encode_examples(train_rows, tokenizer, max_len, str(options.data))
    encoded_heldout = encode_examples(heldout, tokenizer, max_len, "the held-out rows")
    if not encoded:
        raise DataError(f"{options.data}: no rows left to train on")
    options.event(f"loading {ref.model} for training")
    base = load_base(ref, tokenizer, options.device, options.train.qlora)
    estimate = _estimate(base, options, encoded)
    peft_model, result = train_lora(base, encoded, encoded_heldout, options, fingerprint)
    _save_adapter(peft_model, out / "adapter")
    gguf_name: str | None = None
    if ref.backend == "llamacpp" or ref.model.endswith(".gguf"):
        import peft

        state = peft.get_peft_model_state_dict(peft_model, save_embedding_layers=False)
        why = write_gguf_lora(
            out / "adapter.gguf", state, Path(ref.model), base.model.config, options.lora.alpha
        )
        gguf_name = "adapter.gguf" if why is None else None
        if why:
            notes.append(why)
    del peft_model, base
    gc.collect()
    _write_json(
        done,
        {"fingerprint": fingerprint, "result": result.model_dump(mode="json"),
         "estimate": estimate, "gguf_adapter": gguf_name, "notes": notes},
    )  # fmt: skip
    return result, estimate, gguf_name


def _estimate(base: Any, options: TuneOptions, encoded: list[Any]) -> dict[str, Any] | None:
    """The training-memory estimate for this model and these settings."""
    try:
        from llmpick.fit.training import estimate_for_loaded
    except ImportError:
        return None
    longest = max(len(e.input_ids) for e in encoded)
    return estimate_for_loaded(base.model, options, longest).model_dump(mode="json")


def _save_adapter(model: Any, target: Path) -> None:
    """Save with peft's save_pretrained into a temporary folder, then swapped in."""
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(str(tmp), save_embedding_layers=False)
    old = target.with_name(f".{target.name}.old")
    shutil.rmtree(old, ignore_errors=True)
    if target.exists():
        os.replace(target, old)
    os.replace(tmp, target)
    shutil.rmtree(old, ignore_errors=True)


def _write_json(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, indent=2, ensure_ascii=False, default=str), encoding="utf-8")
    os.replace(tmp, path)
