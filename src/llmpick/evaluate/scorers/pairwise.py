"""Pairwise judging: the judge compares two models' answers, in both orders.

LLM judges prefer the answer in one position (Zheng et al. 2023, "Judging
LLM-as-a-Judge with MT-Bench and Chatbot Arena", arXiv:2306.05685, section
3.3). So each (pair, row) is asked twice, A/B then B/A: the same model winning
both times is a win; a flip (or a tie, or an unreadable verdict) is a tie.

Models are ranked by Bradley–Terry strengths, fitted by the MM algorithm
(Hunter 2004, "MM algorithms for generalized Bradley–Terry models", Annals of
Statistics 32(1)), a tie counting half a win each way and one virtual tie per
pair as a prior so that an unbeaten model keeps a finite strength. Strengths
are natural-log scale, centred on 0: ``exp(s_a - s_b)`` is the odds that a
beats b. 95% intervals come from a bootstrap over rows (:mod:`llmpick.bootstrap`).
"""

from __future__ import annotations

import asyncio
import itertools
import re
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel

from llmpick.backends.base import GenerationRequest
from llmpick.bootstrap import percentile_bootstrap
from llmpick.evaluate.scorers.base import JudgeFn

__all__ = [
    "PairOutcome",
    "PairwiseResult",
    "RowVerdict",
    "bradley_terry",
    "pairwise_compare",
    "parse_verdict",
    "rank_verdicts",
]

_SYSTEM = "You are an impartial judge comparing two AI assistant responses."

_TEMPLATE = """Compare the two responses to the user's question below. Judge correctness
first, then helpfulness, relevance and detail. The order of the responses must
not influence you, nor their length. {rubric}

[User question]
{question}

[The start of assistant A's response]
{first}
[The end of assistant A's response]

[The start of assistant B's response]
{second}
[The end of assistant B's response]

Explain your comparison briefly, then give your final verdict on the last line
exactly as "[[A]]" if A is better, "[[B]]" if B is better, or "[[C]]" for a tie."""

Verdict = Literal["A", "B", "tie"]


class RowVerdict(BaseModel):
    """The two verdicts for one row and pair, and what they add up to."""

    row_id: str
    a: str
    b: str
    first: Verdict | None  # a shown as A
    second: Verdict | None  # b shown as A (so "A" there means b)
    winner: str | None  # the model that won both orders; None: a tie


class PairOutcome(BaseModel):
    """Counts for one pair of models over the rows both answered."""

    a: str
    b: str
    n: int
    wins_a: int
    wins_b: int
    ties: int
    flips: int  # the verdict followed the position: counted as ties
    unparsed: int  # verdicts the judge gave in no readable form: counted as ties


class PairwiseResult(BaseModel):
    """Pairwise outcomes, Bradley–Terry strengths with 95% intervals, and the ranking."""

    models: list[str]
    pairs: list[PairOutcome]
    strengths: dict[str, float]
    ci95: dict[str, tuple[float, float]]
    ranking: list[str]
    n_rows: int
    judge_calls: int
    verdicts: list[RowVerdict]


def parse_verdict(text: str) -> Verdict | None:
    """Return the judge's verdict: the last ``[[A]]``/``[[B]]``/``[[C]]`` (or "Verdict: X")."""
    found = re.findall(r"\[\[\s*(A|B|C|tie)\s*\]\]", text, re.IGNORECASE)
    if not found:
        found = re.findall(r"(?i:verdict)\W*\s*(A|B|C|tie)\b", text)
    if not found:
        return None
    last = found[-1].upper()
    return "tie" if last in {"C", "TIE"} else ("A" if last == "A" else "B")


def _questions(rows: Mapping[str, str] | Sequence[Mapping[str, Any]]) -> dict[str, str]:
    if isinstance(rows, Mapping):
        return {str(k): str(v) for k, v in rows.items()}
    questions = {}
    for index, row in enumerate(rows):
        row_id = row.get("row_id", row.get("id", index))
        questions[str(row_id)] = str(row.get("prompt", ""))
    return questions


async def pairwise_compare(
    judge: JudgeFn,
    rows: Mapping[str, str] | Sequence[Mapping[str, Any]],
    outputs: Mapping[str, Mapping[str, str]],
    *,
    rubric: str | None = None,
    max_tokens: int = 512,
    concurrency: int = 4,
    n_boot: int = 1000,
    seed: int = 0,
) -> PairwiseResult:
    """Compare every two models on every row both answered, both orders, then rank.

    ``rows``: row id -> question (or dicts with ``row_id``/``id`` and
    ``prompt``); ``outputs``: model -> row id -> output.
    """
    questions = _questions(rows)
    models = list(outputs)
    slots = asyncio.Semaphore(max(1, concurrency))

    async def ask(question: str, first: str, second: str) -> Verdict | None:
        prompt = _TEMPLATE.format(
            rubric=rubric or "", question=question, first=first, second=second
        )
        request = GenerationRequest.from_prompt(
            prompt, system=_SYSTEM, max_tokens=max_tokens, temperature=0.0, seed=0
        )
        async with slots:
            generation = await judge(request)
        return parse_verdict(generation.output)

    async def compare(row_id: str, a: str, b: str) -> RowVerdict:
        out_a, out_b = outputs[a][row_id], outputs[b][row_id]
        first, second = await asyncio.gather(
            ask(questions[row_id], out_a, out_b), ask(questions[row_id], out_b, out_a)
        )
        winner = None
        if first == "A" and second == "B":
            winner = a
        elif first == "B" and second == "A":
            winner = b
        return RowVerdict(row_id=row_id, a=a, b=b, first=first, second=second, winner=winner)

    jobs = [
        compare(row_id, a, b)
        for a, b in itertools.combinations(models, 2)
        for row_id in questions
        if row_id in outputs[a] and row_id in outputs[b]
    ]
    verdicts = list(await asyncio.gather(*jobs))
    pairs = [_pair_outcome(a, b, verdicts) for a, b in itertools.combinations(models, 2)]
    strengths, ci95, ranking = rank_verdicts(models, verdicts, n_boot, seed)
    return PairwiseResult(
        models=models,
        pairs=pairs,
        strengths=strengths,
        ci95=ci95,
        ranking=ranking,
        n_rows=len({v.row_id for v in verdicts}),
        judge_calls=2 * len(verdicts),
        verdicts=verdicts,
    )


def rank_verdicts(
    models: list[str], verdicts: list[RowVerdict], n_boot: int = 1000, seed: int = 0
) -> tuple[dict[str, float], dict[str, tuple[float, float]], list[str]]:
    """Bradley–Terry strengths, 95% bootstrap intervals (over rows) and the ranking.

    Used for the judge's verdicts and for people's blind votes in the workbench
    (there each vote is its own row). An interval is NaN with fewer than 2 rows.
    """
    row_ids = sorted({v.row_id for v in verdicts})
    per_row = _row_matrices(models, row_ids, verdicts)
    strengths = bradley_terry(per_row.sum(axis=0)) if models else np.zeros(0)
    low, high = _bootstrap(per_row, n_boot, seed)
    return (
        {m: float(s) for m, s in zip(models, strengths, strict=True)},
        {m: (float(lo), float(hi)) for m, lo, hi in zip(models, low, high, strict=True)},
        [models[i] for i in np.argsort(-strengths, kind="stable")],
    )


def _pair_outcome(a: str, b: str, verdicts: list[RowVerdict]) -> PairOutcome:
    mine = [v for v in verdicts if v.a == a and v.b == b]
    unparsed = sum(1 for v in mine if v.first is None or v.second is None)
    flips = sum(
        1
        for v in mine
        if v.winner is None and {v.first, v.second} <= {"A", "B"} and v.first == v.second
    )
    wins_a = sum(1 for v in mine if v.winner == a)
    wins_b = sum(1 for v in mine if v.winner == b)
    return PairOutcome(
        a=a,
        b=b,
        n=len(mine),
        wins_a=wins_a,
        wins_b=wins_b,
        ties=len(mine) - wins_a - wins_b,
        flips=flips,
        unparsed=unparsed,
    )


def _row_matrices(models: list[str], row_ids: list[str], verdicts: list[RowVerdict]) -> Any:
    """Per row, wins[i, j]: how often model i beat model j (a tie is half each way)."""
    index = {m: i for i, m in enumerate(models)}
    rows = {r: k for k, r in enumerate(row_ids)}
    wins = np.zeros((len(row_ids), len(models), len(models)))
    for v in verdicts:
        k, i, j = rows[v.row_id], index[v.a], index[v.b]
        if v.winner == v.a:
            wins[k, i, j] += 1.0
        elif v.winner == v.b:
            wins[k, j, i] += 1.0
        else:
            wins[k, i, j] += 0.5
            wins[k, j, i] += 0.5
    return wins


def bradley_terry(wins: Any, prior: float = 0.5, tol: float = 1e-10, max_iter: int = 10_000) -> Any:
    """Log-strengths (mean 0) from a wins matrix, by Hunter's MM iteration.

    ``wins[i, j]`` is how often i beat j; ``prior`` adds that many wins each way
    to every pair (0.5: one virtual tie).
    """
    w = np.asarray(wins, dtype=float)
    m = w.shape[0]
    if m == 0:
        return np.zeros(0)
    w = w + prior * (1.0 - np.eye(m))
    games = w + w.T
    total_wins = w.sum(axis=1)
    p = np.ones(m)
    for _ in range(max_iter):
        denominator = (games / (p[:, None] + p[None, :])).sum(axis=1)
        updated = np.divide(total_wins, denominator, out=np.ones(m), where=denominator > 0)
        updated /= np.exp(np.mean(np.log(updated)))
        done = np.max(np.abs(updated - p)) < tol
        p = updated
        if done:
            break
    return np.log(p)


def _bootstrap(per_row: Any, n_boot: int, seed: int) -> tuple[Any, Any]:
    n_rows, m = per_row.shape[0], per_row.shape[1]
    if n_rows < 2 or m == 0 or n_boot < 1:
        return np.full(m, np.nan), np.full(m, np.nan)
    low, high, _ = percentile_bootstrap(per_row, _resampled_strengths, n_boot=n_boot, seed=seed)
    return low, high


def _resampled_strengths(resamples: Any, axis: int = -1) -> Any:
    """Bradley–Terry strengths of each resample: rows on ``axis``, resamples just before it."""
    wins = np.sum(resamples, axis=axis)  # (m, m, n_resamples)
    if wins.ndim == 2:
        return bradley_terry(wins, tol=1e-8)
    return np.stack([bradley_terry(wins[..., b], tol=1e-8) for b in range(wins.shape[-1])], -1)
