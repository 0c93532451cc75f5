"""Scorers: small factories that turn a finished cell into a Score.

Built-ins (registered as entry points in group ``llmpick.scorers``, the same
way a plugin registers): ``exact``, ``contains``, ``regex``, ``choice``,
``numeric``, ``json``, ``tool_call``, ``length``, ``latency``, ``code_exec`` and ``judge``.
``pairwise`` is not a per-cell scorer: see :func:`pairwise_compare`.
"""

from llmpick.evaluate.scorers.base import Cell, JudgeFn, Score, Scorer, ScorerSpec
from llmpick.evaluate.scorers.judge import self_judging
from llmpick.evaluate.scorers.pairwise import PairwiseResult, pairwise_compare
from llmpick.evaluate.scorers.registry import build_scorer, default_scorers, parse_scorer_spec

__all__ = [
    "Cell",
    "JudgeFn",
    "PairwiseResult",
    "Score",
    "Scorer",
    "ScorerSpec",
    "build_scorer",
    "default_scorers",
    "pairwise_compare",
    "parse_scorer_spec",
    "self_judging",
]
