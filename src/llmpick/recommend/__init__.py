"""Recommend: constraints -> hard filters -> ranking -> an explained shortlist.

from llmpick.recommend import Constraints, recommend
rec = recommend(Constraints(task="coding", device="rtx4090"))
rec.candidates[0].id, rec.candidates[0].quant, rec.candidates[0].reasons
"""

from llmpick.recommend.engine import recommend
from llmpick.recommend.models import (
    Candidate,
    Constraints,
    Evidence,
    Exclusion,
    Recommendation,
    Weights,
    parse_weights,
)
from llmpick.recommend.tasks import TASK_BENCHMARKS, TASK_SPECIALIZATION, TASKS, USE_CASE_FLOORS

__all__ = [
    "TASKS",
    "TASK_BENCHMARKS",
    "TASK_SPECIALIZATION",
    "USE_CASE_FLOORS",
    "Candidate",
    "Constraints",
    "Evidence",
    "Exclusion",
    "Recommendation",
    "Weights",
    "parse_weights",
    "recommend",
]
