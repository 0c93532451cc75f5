"""Typed results the workbench pages and its JSON API are built from.

Templates and the page's JavaScript only read these models (never dicts put
together in a template); every JSON answer carries :data:`SCHEMA_VERSION`.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from llmpick.evaluate.results import EvalResult

__all__ = [
    "SCHEMA_VERSION",
    "AddColumn",
    "ColumnInfo",
    "ColumnSettings",
    "GridCell",
    "GridPage",
    "GridRow",
    "HumanRanking",
    "JudgeAgreement",
    "Progress",
    "ShareSheet",
    "SheetInfo",
    "SheetSettings",
    "SummaryView",
    "UsedDataset",
    "VoteCast",
    "VoteResult",
    "VoteTask",
]

#: version of the workbench's JSON API and exports; bump on incompatible change
SCHEMA_VERSION = 1

ColumnKind = Literal["model", "scorer", "pairwise"]
Verdict = Literal["left", "right", "tie", "both_bad"]


class _Api(BaseModel):
    schema_version: int = SCHEMA_VERSION


class ColumnSettings(BaseModel):
    """A model column's own prompt template and sampling, over the sheet's (None: the sheet's)."""

    model_config = ConfigDict(extra="forbid")

    #: ``{column}`` placeholders or Jinja2, rendered per row into the user message
    template: str | None = Field(default=None, max_length=20_000)
    max_tokens: int | None = Field(default=None, ge=1, le=8192)
    temperature: float | None = Field(default=None, ge=0.0, le=2.0)

    def is_empty(self) -> bool:
        """Whether the column is asked like the sheet's other columns."""
        return self.template is None and self.max_tokens is None and self.temperature is None


class SheetSettings(BaseModel):
    """What a sheet reads from its data and how every model column is asked."""

    model_config = ConfigDict(extra="forbid")

    prompt: str | None = None
    expected: str | None = None
    category: str | None = None
    #: a Jinja2 template with the row's columns, e.g. ``Translate: {{ text }}``
    template: str | None = None
    max_tokens: int = Field(default=64, ge=1, le=8192)
    temperature: float = Field(default=0.0, ge=0.0, le=2.0)
    seed: int | None = 0
    #: the model that grades ``judge`` scorer columns (pairwise columns name their own)
    judge_model: str | None = None
    #: model columns asked with their own template or sampling, by model name
    columns: dict[str, ColumnSettings] = Field(default_factory=dict)


class ColumnInfo(BaseModel):
    """A column added in the page: a model, a scorer or a pairwise judge."""

    position: int
    kind: ColumnKind
    spec: str
    #: a model column's own template and sampling (None: the sheet's)
    settings: ColumnSettings | None = None


class AddColumn(BaseModel):
    """The body of ``POST /api/sheets/{id}/columns``."""

    model_config = ConfigDict(extra="forbid")

    kind: ColumnKind
    spec: str = Field(min_length=1, max_length=2000)
    #: model columns only: its own prompt template and sampling
    settings: ColumnSettings | None = None
    #: a ``judge`` scorer column: the model that grades (becomes the sheet's judge model)
    judge_model: str | None = Field(default=None, max_length=2000)


class ShareSheet(BaseModel):
    """The body of ``POST /api/sheets/{id}/share``: key names (``*``: every key)."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    with_: list[str] = Field(alias="with", max_length=100)


class SheetInfo(_Api):
    """A sheet: its data, its columns and the run that holds its cells."""

    id: str
    name: str
    created_at: str
    n_rows: int
    data_columns: list[str]
    settings: SheetSettings
    columns: list[ColumnInfo]
    run_id: str | None

    @property
    def models(self) -> list[str]:
        """Names of the model columns, in order."""
        return [c.spec for c in self.columns if c.kind == "model"]

    @property
    def scorers(self) -> list[str]:
        """Scorer specs of the scorer columns, in order."""
        return [c.spec for c in self.columns if c.kind == "scorer"]


class UsedDataset(BaseModel):
    """A dataset an earlier evaluation run used (its newest run): a sheet can start from it."""

    run_id: str
    dataset: str
    created_at: str
    n_rows: int
    models: list[str]


class Progress(_Api):
    """How far the sheet's run is: drives the progress bar."""

    state: Literal["idle", "running", "stopped", "finished", "failed"]
    run_id: str | None
    done: int
    total: int
    errors: int
    message: str | None = None


class GridCell(BaseModel):
    """One model's answer to one row (absent until it is generated)."""

    model: str
    output: str | None = None
    error: str | None = None
    score: float | None = None
    scores: dict[str, str] = Field(default_factory=dict)
    latency_s: float | None = None


class GridRow(BaseModel):
    """A row of the grid: the data it shows and a cell per model column."""

    row_id: str
    index: int
    category: str | None
    prompt: str
    expected: str | None
    cells: list[GridCell]


class GridPage(_Api):
    """One page of rows (the grid never loads a whole large run)."""

    sheet_id: str
    run_id: str | None
    models: list[str]
    offset: int
    limit: int
    total_rows: int
    rows: list[GridRow]


class SummaryView(_Api):
    """The summary strip: the run's :class:`EvalResult` (means, intervals, sentences)."""

    sheet_id: str
    result: EvalResult | None


class VoteTask(_Api):
    """A blind pair to vote on: no model name is in it until the vote is cast."""

    vote_id: str
    prompt: str
    left: str
    right: str


class VoteCast(BaseModel):
    """The body of ``POST /api/votes/{id}``."""

    model_config = ConfigDict(extra="forbid")

    verdict: Verdict


class VoteResult(_Api):
    """What a vote was about, revealed once it is cast."""

    vote_id: str
    verdict: Verdict
    left_model: str
    right_model: str


class JudgeAgreement(BaseModel):
    """Agreement between the human votes and the LLM judge on the same (row, pair)."""

    n: int
    kappa: float | None
    agreement: float | None


class HumanRanking(_Api):
    """Bradley–Terry strengths of the models from the votes, with 95% bootstrap intervals."""

    sheet_id: str
    votes: int
    ranking: list[str]
    strengths: dict[str, float]
    ci95: dict[str, tuple[float, float] | None]
    judge_agreement: JudgeAgreement | None = None
    extra: dict[str, Any] = Field(default_factory=dict)
