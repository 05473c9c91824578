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
    SUPPORTED_METRICS,
    AlarmState,
    ModelChoices,
    ScalingCause,
    ScalingEvent,
    ScalingKind,
    ScheduledAction,
    StepResult,
    step_s_for,
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
    "Capacity",
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
    "StepResult",
    "TIMELINE_COLUMNS",
    "TargetTracking",
    "concurrency_per_instance",
    "serve_period",
    "simulate",
    "simulate_demand",
    "slow_share",
    "step_s_for",
]
