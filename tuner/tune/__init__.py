"""Tuning: candidate grids, search, scoring and recommendation, the run directory and the
pipeline that ties them together (the Python API under ``tuner tune``)."""

from tuner.tune.companion import (
    CompanionGrid,
    companion_candidates,
)
from tuner.tune.grid import (
    Grid,
)
from tuner.tune.llm import (
    FROM_ZERO,
    LLM_GRID,
    copy_policy,
    evaluate_llm,
    from_zero_step,
    idle_tradeoff,
    llm_candidates,
    llm_objective,
    simulate_llm_candidates,
    tune_llm,
)
from tuner.tune.pipeline import (
    Tuning,
    tune,
    unmodelled,
)
from tuner.tune.provenance import (
    manifest,
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
from tuner.tune.robustness import (
    robustness,
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
    write_run,
)
from tuner.tune.schedules import (
    Rhythm,
    detect_rhythm,
    keep_cheaper,
    schedule_candidates,
    search_schedules,
)
from tuner.tune.search import (
    HOURS_PER_MONTH,
    Objective,
    evaluate,
    simulate_candidates,
)

__all__ = [
    "CompanionGrid",
    "companion_candidates",
    "CANDIDATES",
    "FROM_ZERO",
    "Grid",
    "LLM_GRID",
    "copy_policy",
    "evaluate_llm",
    "from_zero_step",
    "idle_tradeoff",
    "llm_candidates",
    "llm_objective",
    "simulate_llm_candidates",
    "tune_llm",
    "HOURS_PER_MONTH",
    "MANIFEST",
    "Objective",
    "RECOMMENDATION",
    "RECOMMENDED_POLICY",
    "RESULTS",
    "ROLES",
    "Recommendation",
    "Rhythm",
    "Run",
    "TIMELINES",
    "TRIALS",
    "Trial",
    "Tuning",
    "detect_rhythm",
    "evaluate",
    "folder_name",
    "keep_cheaper",
    "manifest",
    "nearest_alternatives",
    "pareto_mask",
    "recommend",
    "robustness",
    "schedule_candidates",
    "score",
    "search_schedules",
    "simulate_candidates",
    "trial_folder",
    "tune",
    "unmodelled",
    "versions",
    "write_run",
]
