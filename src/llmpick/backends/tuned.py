"""A tuned-model folder (``llmpick tune --out DIR``) as a model spec.

The folder holds ``tuned.json`` (:class:`TunedManifest`): the base model, the
LoRA adapter in peft's format (``adapter/``) and, where the base is a GGUF of an
architecture llama.cpp's adapter loader reads, the same adapter as a GGUF LoRA
file. :func:`tuned_spec` turns it into a backend and options: llama.cpp with
``lora_path`` when the GGUF adapter and the base GGUF are there (the base is
then run exactly as the untuned model is), else transformers with peft's
``adapter``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from llmpick.errors import ModelFileError

__all__ = ["MANIFEST", "TunedManifest", "is_tuned_dir", "read_manifest", "tuned_spec_parts"]

MANIFEST = "tuned.json"


class TunedManifest(BaseModel):
    """What a tuned folder holds; paths are relative to the folder."""

    model_config = ConfigDict(extra="ignore")

    schema_version: int = 1
    #: the model spec the adapter was trained on, as the user wrote it
    base_spec: str
    #: the base as a backend + model: ``llamacpp`` + GGUF path, or ``hf`` + Hub id/dir/GGUF
    base_backend: str
    base_model: str
    #: peft's adapter directory (adapter_config.json + adapter_model.safetensors)
    adapter_dir: str = "adapter"
    #: the adapter as a llama.cpp GGUF LoRA file, when it could be written
    gguf_adapter: str | None = None
    lora_scale: float = 1.0


def is_tuned_dir(path: Path) -> bool:
    """Whether ``path`` is a folder written by ``llmpick tune``."""
    return path.is_dir() and (path / MANIFEST).is_file()


def read_manifest(path: Path) -> TunedManifest:
    """Read ``tuned.json`` from ``path`` (raises :class:`ModelFileError` if unusable)."""
    file = path / MANIFEST
    try:
        return TunedManifest.model_validate(json.loads(file.read_text(encoding="utf-8")))
    except (OSError, ValueError, ValidationError) as exc:
        raise ModelFileError(
            f"{file} is not a readable tune manifest: {str(exc).splitlines()[0]}",
            "run llmpick tune again with the same --out to rewrite it",
        ) from exc


def tuned_spec_parts(path: Path, backend: str | None = None) -> tuple[str, str, dict[str, Any]]:
    """(backend, model, options) that run the tuned model in ``path``.

    ``backend`` forces ``hf`` or ``llamacpp``; by default llama.cpp when the
    GGUF adapter and base GGUF exist, else transformers with the peft adapter.
    """
    manifest = read_manifest(path)
    gguf = path / manifest.gguf_adapter if manifest.gguf_adapter else None
    base_is_gguf = manifest.base_model.endswith(".gguf") and Path(manifest.base_model).is_file()
    usable_gguf = gguf is not None and gguf.is_file() and base_is_gguf
    chosen = backend or ("llamacpp" if usable_gguf else "hf")
    if chosen == "llamacpp":
        if not usable_gguf or gguf is None:
            raise ModelFileError(
                f"{path} has no GGUF LoRA adapter for llama.cpp (or its base GGUF is gone)",
                f"use hf:{path} (transformers with the peft adapter)",
            )
        return "llamacpp", manifest.base_model, {
            "lora_path": str(gguf.resolve()),
            "lora_scale": manifest.lora_scale,
        }  # fmt: skip
    adapter = path / manifest.adapter_dir
    if not (adapter / "adapter_config.json").is_file():
        raise ModelFileError(
            f"{adapter} holds no peft adapter", "run llmpick tune again with the same --out"
        )
    return "hf", manifest.base_model, {"adapter": str(adapter.resolve())}
