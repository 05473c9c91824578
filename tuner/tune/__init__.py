"""Tuning: candidate grids, search, scoring and recommendation, the run directory and the
pipeline that ties them together (the Python API under ``tuner tune``)."""

from tuner.tune.grid import (
    Grid,
)
from tuner.tune.recommend import (
    ROLES,
    Recommendation,
    nearest_alternatives,
    pareto_mask,
    recommend,
    score,
)
from tuner.tune.run import (
    CANDIDATES,
    MANIFEST,
    RECOMMENDATION,
    RECOMMENDED_POLICY,
    RESULTS,
    TIMELINES,
    TRIALS,
    Run,
    Trial,
    folder_name,
)
from tuner.tune.search import (
    HOURS_PER_MONTH,
    Objective,
    Settings,
    evaluate,
    simulate_candidates,
)

__all__ = [
    "CANDIDATES",
    "Grid",
    "HOURS_PER_MONTH",
    "MANIFEST",
    "Objective",
    "RECOMMENDATION",
    "RECOMMENDED_POLICY",
    "RESULTS",
    "ROLES",
    "Recommendation",
    "Run",
    "Settings",
    "TIMELINES",
    "TRIALS",
    "Trial",
    "evaluate",
    "folder_name",
    "nearest_alternatives",
    "pareto_mask",
    "recommend",
    "score",
    "simulate_candidates",
]
