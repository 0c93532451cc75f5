"""Which benchmark figures count as evidence for ranking.

The maker's figure wins wherever one exists for a benchmark; a third-party
figure counts only where the maker reports none for that benchmark, and only
when it was checked at its source (``verified``). A third-party figure that a
maker's figure for the same benchmark and protocol contradicts never counts;
the comparison is the catalog's own (:meth:`ModelCard.contradicting`), the one
``compare`` flags.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from llmpick.catalog.schema import CONTRADICTION_POINTS

if TYPE_CHECKING:
    from llmpick.catalog import ModelCard
    from llmpick.catalog.schema import Benchmark

__all__ = ["CONTRADICTION_POINTS", "contradicted", "ranking_scores"]


def contradicted(score: Benchmark, card: ModelCard) -> bool:
    """True for a third-party figure that the maker's figure for its benchmark contradicts."""
    return bool(card.contradicting(score))


def ranking_scores(card: ModelCard, benchmark: str) -> list[Benchmark]:
    """The figures for ``benchmark`` that ranking may use (maker's first; never contradicted)."""
    scores = card.scores(benchmark)
    makers = [s for s in scores if s.origin == "maker"]
    if makers:
        return makers
    return [s for s in scores if s.verified and not contradicted(s, card)]
