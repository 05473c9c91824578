"""Tuning: candidate grids, search, scoring and recommendation, the run directory and the
pipeline that ties them together (the Python API under ``tuner tune``)."""

from tuner.tune.grid import (
    Grid,
)
from tuner.tune.pipeline import (
    Tuning,
    manifest,
    tune,
    unmodelled,
    versions,
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
    trial_folder,
    write_replay_profile,
    write_run,
)
from tuner.tune.search import (
    HOURS_PER_MONTH,
    Objective,
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
    "TIMELINES",
    "TRIALS",
    "Trial",
    "Tuning",
    "evaluate",
    "folder_name",
    "manifest",
    "nearest_alternatives",
    "pareto_mask",
    "recommend",
    "score",
    "simulate_candidates",
    "trial_folder",
    "tune",
    "unmodelled",
    "versions",
    "write_replay_profile",
    "write_run",
]
