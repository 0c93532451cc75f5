"""What ``llmpick tune`` trains and how: LoRA settings, the optimizer, the split, the proof.

Defaults and why (docs/tune.md has the long form):

- rank 16, alpha 32 (scale alpha/rank = 2), dropout 0.05: common LoRA settings
  for instruction data; the rank is small next to the hidden sizes of the models
  llmpick runs, which is the point of LoRA (Hu et al. 2021, arXiv:2106.09685).
- every linear layer of the attention and MLP blocks: the QLoRA paper found
  LoRA on all linear layers needed to match full fine-tuning, where attention
  alone fell short (Dettmers et al. 2023, arXiv:2305.14314).
- learning rate 2e-4, AdamW, linear decay after a 10% warmup: the QLoRA
  paper's rate for small models.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["DEFAULT_TARGET_MODULES", "LoraSettings", "TrainSettings", "TuneOptions"]

_ATTN_MLP = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]

#: LoRA targets per transformers ``model_type``: each block's attention and MLP linears.
#: Anything else gets peft's ``all-linear`` (every linear layer but the output head).
DEFAULT_TARGET_MODULES: dict[str, list[str]] = {
    "llama": _ATTN_MLP,
    "mistral": _ATTN_MLP,
    "qwen2": _ATTN_MLP,
    "qwen3": _ATTN_MLP,
    "gemma": _ATTN_MLP,
    "gemma2": _ATTN_MLP,
    "gemma3_text": _ATTN_MLP,
    "phi3": ["qkv_proj", "o_proj", "gate_up_proj", "down_proj"],
}


class LoraSettings(BaseModel):
    """The adapter: rank, alpha, dropout and which layers it wraps."""

    model_config = ConfigDict(extra="forbid")

    rank: int = Field(16, ge=1, le=1024)
    alpha: float = Field(32.0, gt=0)
    dropout: float = Field(0.05, ge=0.0, lt=1.0)
    #: None: :data:`DEFAULT_TARGET_MODULES` for the architecture
    target_modules: list[str] | None = None


class TrainSettings(BaseModel):
    """The optimization: what decides the adapter's weights (and so the resume fingerprint)."""

    model_config = ConfigDict(extra="forbid")

    learning_rate: float = Field(2e-4, gt=0)
    epochs: int = Field(3, ge=1)
    #: stop after this many optimizer steps (None: ``epochs`` over the training rows)
    max_steps: int | None = Field(None, ge=1)
    batch_size: int = Field(4, ge=1)
    grad_accumulation: int = Field(1, ge=1)
    warmup_ratio: float = Field(0.1, ge=0.0, lt=1.0)
    weight_decay: float = Field(0.0, ge=0.0)
    max_seq_len: int = Field(512, ge=8)
    gradient_checkpointing: bool = False
    #: QLoRA: the base in bitsandbytes NF4 (CUDA only)
    qlora: bool = False
    seed: int = 0


class TuneOptions(BaseModel):
    """Everything ``llmpick tune`` needs besides the base model."""

    model_config = ConfigDict(extra="forbid", arbitrary_types_allowed=True)

    data: Path
    out: Path
    #: rows kept out of training for the proof (ignored with ``eval_data``)
    holdout: float = Field(0.2, gt=0.0, lt=1.0)
    eval_data: Path | None = None
    scorers: list[str] = Field(default_factory=list)
    lora: LoraSettings = LoraSettings()
    train: TrainSettings = TrainSettings()
    #: optimizer steps between checkpoints (and held-out loss points)
    checkpoint_every: int = Field(10, ge=1)
    #: proof: longest answer generated per held-out row
    max_tokens: int = Field(64, ge=1)
    device: str = "auto"
    db_path: Path = Path("llmpick.db")
    #: throw away a checkpoint of a different run in ``out`` instead of refusing
    restart: bool = False
    evaluate: bool = True
    png: bool = True
    progress: bool = False
    on_event: Callable[[str], None] | None = None

    def event(self, text: str) -> None:
        """Pass a line of progress to the caller (the CLI prints it)."""
        if self.on_event is not None:
            self.on_event(text)

    def fingerprint_parts(self) -> dict[str, Any]:
        """The settings that decide the trained adapter (a checkpoint resumes only if equal)."""
        return {"lora": self.lora.model_dump(), "train": self.train.model_dump()}
