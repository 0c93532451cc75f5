"""The recommender's inputs and outputs (pydantic models)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from llmpick.errors import UsageError
from llmpick.fit.runtimes import RUNTIMES

__all__ = [
    "Candidate",
    "Constraints",
    "Evidence",
    "Exclusion",
    "Recommendation",
    "Weights",
    "parse_weights",
]


class Weights(BaseModel):
    """How much quality, speed and cost count in the score."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    quality: float = Field(0.92, ge=0)
    speed: float = Field(0.05, ge=0)
    cost: float = Field(0.03, ge=0)

    def normalised(self) -> Weights:
        """Return the weights scaled to sum to 1."""
        total = self.quality + self.speed + self.cost
        if total <= 0:
            raise UsageError("the weights must not all be zero", "e.g. quality=0.6,speed=0.2")
        return Weights(
            quality=self.quality / total, speed=self.speed / total, cost=self.cost / total
        )


def parse_weights(text: str) -> Weights:
    """Parse ``quality=0.92,speed=0.05,cost=0.03`` (missing keys keep their default)."""
    values: dict[str, float] = {}
    for part in text.split(","):
        if not part.strip():
            continue
        key, sep, raw = part.partition("=")
        key = key.strip().lower()
        if not sep or key not in ("quality", "speed", "cost"):
            raise UsageError(
                f"bad weight {part.strip()!r}", "use quality=N,speed=N,cost=N (e.g. quality=0.6)"
            )
        try:
            values[key] = float(raw)
        except ValueError as exc:
            raise UsageError(f"weight {key} must be a number, got {raw!r}") from exc
        if values[key] < 0:
            raise UsageError(f"weight {key} must not be negative")
    return Weights(**values)


class Constraints(BaseModel):
    """What the user needs: task, hardware, license, languages, limits, weights."""

    model_config = ConfigDict(extra="forbid")

    task: str = "chat"
    languages: list[str] = Field(default_factory=list)
    device: str | None = None
    quant: str | None = None
    runtime: str = Field("llamacpp", json_schema_extra={"enum": list(RUNTIMES)})
    license: Literal["any", "commercial", "permissive"] = "any"
    min_context: int | None = Field(default=None, gt=0)
    context: int | None = Field(default=None, gt=0)
    max_params_b: float | None = Field(default=None, gt=0)
    max_price: float | None = Field(default=None, ge=0)
    weights: Weights = Field(default_factory=Weights)
    top: int = Field(5, ge=1)
    include_base: bool = False
    #: input modalities every candidate must accept (``vision`` implies image)
    modalities: list[str] = Field(default_factory=list)
    #: interactive | code-completion | batch (sets the decode floor); default per task
    use_case: Literal["interactive", "code-completion", "batch"] | None = None
    #: sequences served at once: the KV cache is sized for context x concurrency
    concurrency: int = Field(1, ge=1)

    @field_validator("runtime")
    @classmethod
    def _known_runtime(cls, value: str) -> str:
        if value not in RUNTIMES:
            raise ValueError(f"unknown runtime {value!r}; use one of: {', '.join(RUNTIMES)}")
        return value


class Evidence(BaseModel):
    """One benchmark score behind a candidate's quality."""

    benchmark: str
    value: float
    protocol: str
    source: str
    origin: str
    #: "" for a figure that ranks; "base model's figure (shown, not ranked)" otherwise
    label: str = ""
    #: checked at its source (see the catalog's ``verified``); shown as "unverified" otherwise
    verified: bool = False


class Candidate(BaseModel):
    """A recommended model with the quantization that fits and why it ranks where it does."""

    id: str
    score: float
    quant: str
    fits: bool
    params_total: int
    params_active: int
    context_max: int
    estimated_memory_bytes: int
    decode_tokens_per_second: float | None
    #: "estimated" or "estimated (calibrated)" (this machine's calibration applied)
    decode_label: str = "estimated"
    quality: float
    speed_score: float
    cost_score: float
    confidence: Literal["high", "medium", "low"]
    #: "3 of 7 general benchmarks reported"
    coverage: str = ""
    #: evidence score if every missing benchmark were at the bottom / top of its range
    quality_range: tuple[float, float] | None = None
    #: fraction of quality the chosen quantization loses (fit.quant_loss)
    quant_quality_loss: float = 0.0
    evidence: list[Evidence]
    missing_benchmarks: list[str]
    reasons: list[str]
    #: what decided this pick's format or place: "memory", "speed", "none"...
    binding_constraint: str = "none"
    #: why this quantization (see recommend.quant_choice)
    quant_reason: str = ""
    #: shortlisted models whose quality is within the tie margin of this one
    tied_with: list[str] = Field(default_factory=list)
    #: True when below the use case's decode floor (demoted below those above it)
    below_speed_floor: bool = False


class Exclusion(BaseModel):
    """A model left out, with the first hard constraint it failed."""

    id: str
    reason: str


class Recommendation(BaseModel):
    """The ranked shortlist and the exclusions."""

    task: str
    device: dict[str, Any]
    context: int
    weights: Weights
    candidates: list[Candidate]
    excluded: list[Exclusion]
    #: the calibration line when speeds on this machine were calibrated, else None
    calibration: str | None = None

    def to_json_dict(self) -> dict[str, Any]:
        """Return the JSON shape ``llmpick recommend --format json`` prints."""
        return self.model_dump(mode="json")
