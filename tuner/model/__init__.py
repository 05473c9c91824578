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

__all__ = [
    "AlarmState",
    "CONCURRENCY_TYPES",
    "Capacity",
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
    "serve_period",
    "simulate",
    "simulate_demand",
    "slow_share",
    "step_s_for",
]
