"""The proof: base and tuned on the held-out rows, through llmpick's own eval.

Both models are run by :func:`llmpick.evaluate.run_eval` on ``holdout.jsonl``
(rows never trained on) with the user's scorers: the same store, cache and
statistics as ``llmpick eval``, so ``llmpick eval DIR/holdout.jsonl -m BASE
-m DIR`` later reuses every cell. Greedy decoding with a fixed seed, so the
comparison is of the weights, not of sampling luck.
"""

from __future__ import annotations

import math
from pathlib import Path

from pydantic import BaseModel

from llmpick.backends.base import SamplingParams
from llmpick.context import Context
from llmpick.evaluate import RunOptions, load_dataset, run_eval
from llmpick.evaluate.stats import format_p

__all__ = ["ModelScore", "Proof", "prove"]


class ModelScore(BaseModel):
    """A model's mean on the held-out rows with its 95% bootstrap interval (measured)."""

    name: str
    mean: float | None
    ci95: tuple[float, float] | None
    n: int


class Proof(BaseModel):
    """Tuned against base on the held-out rows."""

    run_id: str
    scorer: str | None
    base: ModelScore
    tuned: ModelScore
    wins_tuned: int
    wins_base: int
    ties: int
    p_value: float | None
    test: str
    sentence: str
    #: set when the tuned model scored lower than its base
    warning: str | None = None
    cells_cached: int = 0


def prove(
    context: Context,
    holdout: Path,
    base: str,
    tuned: str,
    scorers: list[str],
    max_tokens: int,
    seed: int,
    db_path: Path,
    progress: bool = False,
) -> Proof:
    """Evaluate ``base`` and ``tuned`` on ``holdout`` and compare them row by row."""
    result = run_eval(
        context,
        load_dataset(holdout),
        [base, tuned],
        scorers=scorers or None,
        params=SamplingParams(temperature=0.0, max_tokens=max_tokens, seed=seed),
        db_path=db_path,
        options=RunOptions(progress=progress),
    )
    b_name, t_name = list(result.models)
    scores = {
        key: ModelScore(name=name, mean=m.mean, ci95=m.ci95, n=m.n)
        for key, name, m in (("base", b_name, result.models[b_name]),
                             ("tuned", t_name, result.models[t_name]))
    }  # fmt: skip
    comparison = next(iter(result.comparisons), None)
    if comparison is None:
        return Proof(
            run_id=result.run_id, scorer=result.scorer, base=scores["base"],
            tuned=scores["tuned"], wins_tuned=0, wins_base=0, ties=0, p_value=None,
            test="none", sentence="no scores to compare (no scorer applies to the held-out rows)",
            cells_cached=result.cells_cached,
        )  # fmt: skip
    flip = comparison.a != t_name
    wins_t, wins_b = (
        (comparison.wins_b, comparison.wins_a) if flip else (comparison.wins_a, comparison.wins_b)
    )
    p = comparison.p_value
    sentence = _sentence(t_name, b_name, wins_t, wins_b, comparison.n, p, comparison.significant)
    warning = None
    t_mean, b_mean = scores["tuned"].mean, scores["base"].mean
    if t_mean is not None and b_mean is not None and t_mean < b_mean:
        warning = (
            f"the tuned model scores lower than its base on the held-out rows "
            f"({t_mean:.3f} vs {b_mean:.3f}"
            + (", a significant difference)" if comparison.significant else ")")
            + ": do not use this adapter as it is"
        )
    return Proof(
        run_id=result.run_id, scorer=result.scorer, base=scores["base"], tuned=scores["tuned"],
        wins_tuned=wins_t, wins_base=wins_b, ties=comparison.ties, p_value=p,
        test=comparison.test, sentence=sentence, warning=warning,
        cells_cached=result.cells_cached,
    )  # fmt: skip


def _sentence(
    tuned: str, base: str, wins_t: int, wins_b: int, n: int, p: float | None, significant: bool
) -> str:
    p_text = format_p(p) if p is not None and not math.isnan(p) else "no test"
    if significant and wins_t > wins_b:
        return f"{tuned} beats {base} on {wins_t} of {n} held-out rows, {p_text}"
    if significant:
        return f"{tuned} is worse than {base}: it loses on {wins_b} of {n} held-out rows, {p_text}"
    return (
        f"{tuned} and {base} are not distinguishable on {n} held-out rows ({p_text}; "
        f"tuned better on {wins_t}, base on {wins_b})"
    )
