"""Which benchmark figures count as evidence for ranking.

The maker's figure wins wherever one exists for a benchmark; a third-party
figure counts only where the maker reports none for that benchmark. A
third-party figure that a maker's figure for the same benchmark and protocol
contradicts never counts. The comparison is :func:`contradicted` alone, so that
the catalog's own conflict flag can replace it in one line.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from llmpick.catalog import ModelCard
    from llmpick.catalog.schema import Benchmark

__all__ = ["contradicted", "ranking_scores"]

#: points (percent) beyond which two figures for one benchmark and protocol disagree
CONTRADICTION_POINTS = 0.5


def contradicted(score: Benchmark, card: ModelCard) -> bool:
    """True for a third-party figure that the maker's figure for its benchmark contradicts."""
    if score.origin == "maker":
        return False
    makers = [b for b in card.scores(score.name) if b.origin == "maker"]
    same = [b for b in makers if b.protocol.describe() == score.protocol.describe()] or makers
    return any(abs(b.value - score.value) > CONTRADICTION_POINTS for b in same)


def ranking_scores(card: ModelCard, benchmark: str) -> list[Benchmark]:
    """The figures for ``benchmark`` that ranking may use (maker's first; never contradicted)."""
    scores = card.scores(benchmark)
    makers = [s for s in scores if s.origin == "maker"]
    if makers:
        return makers
    return [s for s in scores if not contradicted(s, card)]
