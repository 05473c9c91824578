"""The model of the endpoint: capacity (serving), the scaling vocabulary, the Application Auto
Scaling controller and the vectorised simulator that runs candidates against a profile."""

from tuner.model.capacity import (
    Capacity,
    LatencyPoint,
    PeriodServing,
    concurrency_per_instance,
    serve_period,
    slow_share,
)
from tuner.model.controller import (
    TargetTracking,
)
from tuner.model.copies import (
    LLM_SUMMARY_COLUMNS,
    LLM_TIMELINE_COLUMNS,
    CopiesResult,
    simulate_copies,
    simulate_copies_demand,
    steady_copies,
)
from tuner.model.copy_serving import StepServing, serve_step
from tuner.model.llm_capacity import (
    CurvePoint,
    LlmCapacity,
    is_llm_capacity,
)
from tuner.model.scaling import (
    CONCURRENCY_TYPES,
    INVOCATION_TYPES,
    SUPPORTED_METRICS,
    AlarmState,
    ModelChoices,
    ScalingCause,
    ScalingEvent,
    ScalingKind,
    ScheduledAction,
    StepResult,
    normalise_candidates,
    step_s_for,
)
from tuner.model.settings import (
    EXACT,
    SimulationSettings,
)
from tuner.model.simulator import (
    SUMMARY_COLUMNS,
    TIMELINE_COLUMNS,
    SimulationResult,
    simulate,
    simulate_demand,
)
from tuner.model.timetable import (
    DEFAULT_START,
    candidate_actions,
    profile_start,
    timeline_actions,
)

__all__ = [
    "CopiesResult",
    "CurvePoint",
    "LLM_SUMMARY_COLUMNS",
    "LLM_TIMELINE_COLUMNS",
    "LlmCapacity",
    "StepServing",
    "is_llm_capacity",
    "serve_step",
    "simulate_copies",
    "simulate_copies_demand",
    "steady_copies",
    "candidate_actions",
    "AlarmState",
    "CONCURRENCY_TYPES",
    "Capacity",
    "DEFAULT_START",
    "EXACT",
    "INVOCATION_TYPES",
    "LatencyPoint",
    "ModelChoices",
    "PeriodServing",
    "SUMMARY_COLUMNS",
    "SUPPORTED_METRICS",
    "ScalingCause",
    "ScalingEvent",
    "ScalingKind",
    "ScheduledAction",
    "SimulationResult",
    "SimulationSettings",
    "StepResult",
    "TIMELINE_COLUMNS",
    "TargetTracking",
    "concurrency_per_instance",
    "normalise_candidates",
    "profile_start",
    "serve_period",
    "simulate",
    "simulate_demand",
    "slow_share",
    "step_s_for",
    "timeline_actions",
]
