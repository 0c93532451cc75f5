"""The typed inputs and results of ``llmpick choose`` (options, candidates, ranking, verdict)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from llmpick.cost import CostRow
from llmpick.recommend import Recommendation, Weights

#: speed score = tokens/s / (tokens/s + this): 30 tokens/s scores 0.5 (as in recommend)
SPEED_HALF_POINT_TPS = 30.0


class ChooseOptions(BaseModel):
    """What ``choose`` runs: constraints, data, models, and how hard to measure."""

    model_config = ConfigDict(extra="forbid", arbitrary_types_allowed=True)

    data: Path | None = None
    task: str = "general"
    device: str | None = None
    languages: list[str] = Field(default_factory=list)
    license: Literal["any", "commercial", "permissive"] = "any"
    min_context: int | None = Field(default=None, gt=0)
    max_price: float | None = Field(default=None, ge=0)
    weights: Weights = Field(default_factory=Weights)
    top: int = Field(default=5, ge=1)
    models: list[str] = Field(default_factory=list)
    judge: str | None = None
    scorers: list[str] = Field(default_factory=list)
    db_path: Path = Path("llmpick.db")
    gpu_hourly_usd: float | None = Field(default=None, gt=0)
    concurrency: int = Field(default=1, ge=1)
    max_tokens: int = Field(default=128, ge=1)
    limit: int | None = Field(default=None, ge=1)
    seed: int = 0
    bench_requests: int = Field(default=3, ge=1)
    bench_prompt_tokens: int = Field(default=64, ge=1)
    bench_max_tokens: int = Field(default=32, ge=1)
    #: llama.cpp types to add as candidates for each local GGUF candidate (llmpick.quant)
    quant_sweep: list[str] = Field(default_factory=list)
    progress: bool = False
    #: called with (stage, message): stages shortlist, probe, evaluate, bench, rank
    on_event: Callable[[str, str], None] | None = None


class CandidateStatus(BaseModel):
    """One candidate: where it came from, whether it ran here, and how to run it if not."""

    name: str
    catalog_id: str | None = None
    origin: Literal["shortlist", "bundled", "config", "user", "quant-sweep"]
    in_shortlist: bool = False
    status: Literal["evaluated", "failed", "not-runnable"]
    error: str | None = None
    how_to_run: list[str] = Field(default_factory=list)
    identity: dict[str, Any] | None = None


class RankedModel(BaseModel):
    """An evaluated model's place under the user's weights (each part in [0, 1])."""

    model: str
    rank: int
    quality: float | None
    quality_ci95: tuple[float, float] | None
    n: int
    output_tokens_per_second: float | None
    speed_kind: Literal["measured", "estimated"] | None
    latency_p50_s: float | None
    usd_per_mtok: float | None
    quality_score: float
    speed_score: float
    cost_score: float
    weighted_score: float


class Verdict(BaseModel):
    """The decision, and how strong the evidence for it is."""

    status: Literal["winner", "tied", "trade-off", "single", "none"]
    winner: str | None = None
    leader: str | None = None
    sentence: str
    tied: list[str] = Field(default_factory=list)
    #: other model -> roughly how many more prompts would separate it from the leader
    prompts_needed: dict[str, int | None] = Field(default_factory=dict)
    comparisons: list[str] = Field(default_factory=list)


class ChooseResult(BaseModel):
    """Everything ``choose`` found; ``to_json()`` is ``result.json``."""

    constraints: dict[str, Any]
    data: dict[str, Any]
    shortlist: Recommendation
    candidates: list[CandidateStatus]
    evaluation: dict[str, Any] | None = None
    samples: list[dict[str, Any]] = Field(default_factory=list)
    failures: list[dict[str, Any]] = Field(default_factory=list)
    performance: dict[str, dict[str, Any]] = Field(default_factory=dict)
    cost: list[CostRow] = Field(default_factory=list)
    ranking: list[RankedModel] = Field(default_factory=list)
    verdict: Verdict
    pareto: dict[str, list[str]] = Field(default_factory=dict)
    timing_s: dict[str, float] = Field(default_factory=dict)
    warnings: list[str] = Field(default_factory=list)

    @property
    def winner(self) -> str | None:
        """The model the evidence separates, or None."""
        return self.verdict.winner

    def to_json(self) -> dict[str, Any]:
        """Return the ``result.json`` document (with ``winner`` at the top level)."""
        doc = self.model_dump(mode="json")
        return {"winner": self.verdict.winner, **doc}


def _tell(options: ChooseOptions, stage: str, message: str) -> None:
    if options.on_event is not None:
        options.on_event(stage, message)
