"""The target-tracking model's vocabulary, and every [MODEL] choice named in one place.

:class:`ModelChoices` holds each choice ``reference/target-tracking.md`` leaves to the model: its
fields, and the rounding and multi-policy rules written down in its body. The rest are the words
:class:`tuner.model.controller.TargetTracking` speaks: alarm states, scaling activities and
their causes,
scheduled actions, the result of a step, and the policy checks and step length shared by the
simulator and the emulator.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from tuner.errors import PolicyError, ValidationError
from tuner.model.stepping import stream_of
from tuner.policy.policy import ScalingPolicy
from tuner.policy.tracking import MetricType

CONCURRENCY_TYPES = {
    MetricType.CONCURRENT_REQUESTS_PER_MODEL,
    MetricType.CONCURRENT_REQUESTS_PER_COPY,
}
INVOCATION_TYPES = {MetricType.INVOCATIONS_PER_INSTANCE, MetricType.INVOCATIONS_PER_COPY}
SUPPORTED_METRICS = tuple(sorted(m.value for m in CONCURRENCY_TYPES | INVOCATION_TYPES))


@dataclass(frozen=True)
class ModelChoices:
    """Every [MODEL] choice of target-tracking.md, named in one place so evidence can revise it."""

    metric_lag_s: float = 60.0
    """Delay from a datapoint's period end to its visibility (§4.1; 0 makes scenarios exact)."""
    boot_s: float = 300.0
    """Scale-out decision to instances in service (§4.4), unless the caller gives per-candidate."""
    high_datapoints: int = 3
    """AlarmHigh: metric > target for this many of as many datapoints (§3)."""
    low_datapoints: int = 15
    """AlarmLow on a 60-s metric: metric < low_ratio x target for this many datapoints (§3)."""
    low_datapoints_high_resolution: int = 90
    """AlarmLow on a 10-s metric: 90 of 90, so scale-in is no faster (§3)."""
    low_ratio: float = 0.9
    reinvoke_s: float = 60.0
    """While an alarm stays in ALARM, scaling is invoked again this often (§3)."""
    ceil_epsilon: float = 1e-9
    """R = ceil(B x M / T - epsilon): an exact multiple of the target is not rounded up (§4.3)."""
    # Rounding to the step grid (a simulation at period resolution needs one rule, used everywhere):
    # a datapoint becomes visible at the first boundary >= period end + metric_lag_s; a boot
    # completes at the first boundary >= decision + boot_s, at least one step after the decision.
    # So instances join or leave service only at step boundaries, N is constant within a step,
    # and every request of a step adds 1/N to InvocationsPerInstance with that step's N.
    # Several policies on one target share the target's cooldowns: a scale-out starts the longest
    # ScaleOutCooldown of the policies that asked for it; a scale-in the longest ScaleInCooldown of
    # the policies with scale-in enabled.
    # A scheduled action or a re-registration that raises capacity boots instances like a scale-out
    # but starts no cooldown (§4.7); one that lowers it removes instances at once.
    # Zero copies in service (an inference component at MinCopyCount 0), one rule for the
    # simulator (tuner.model.copies) and the local AWS (tuner.emulator.icscaler): the per-copy
    # metrics (ConcurrentRequestsPerCopy, InvocationsPerCopy) are emitted per copy, so a period
    # in which no copy was in service has no datapoint: the caller passes NaN for such a 10-s
    # step, a 60-s datapoint sums the steps that had copies and is missing only when none had,
    # and the emulator publishes nothing for it. A missing datapoint is not breaching: it breaks
    # the runs of AlarmHigh and AlarmLow (CloudWatch's default TreatMissingData "missing" over
    # a window that holds it). Base capacity 0 makes R = ceil(0 x M / T) = 0 in any case, so
    # target tracking alone never scales out from zero (AWS
    # scales components out of zero with a step-scaling policy whose alarm reads
    # NoCapacityInvocationFailures, Sum over 60 s or 10 s: the requests refused in a step, which
    # the caller passes to step() as no_capacity_failures and the controller sums like
    # InvocationsPerInstance).
    #
    # Step scaling (tuner.model.stepping; reference §8 and the API reference of
    # StepScalingPolicyConfiguration and StepAdjustment are [DOC]; the rest is [MODEL]):
    # - the step alarm reads the controller's own datapoints with the same metric lag:
    #   InvocationsPerInstance with Period 60 (SageMaker publishes it once a minute, so Sum,
    #   Average, Minimum and Maximum of a 60-s period are one value), ConcurrentRequestsPerModel
    #   with Statistic Maximum and Period 10 or 60 (the peak of six 10-s datapoints);
    # - ALARM when DatapointsToAlarm of the newest EvaluationPeriods datapoints breach; before N
    #   datapoints exist it judges the ones it has (missing data is not breaching); it calls its
    #   policy when it enters ALARM and every reinvoke_s while it stays there, like AlarmHigh;
    # - MetricAggregationType aggregates the datapoints of that window into the value whose
    #   distance to the threshold picks the step; no step containing it: no action;
    # - PercentChangeInCapacity rounds as EC2 Auto Scaling documents for its step policies (a
    #   change above 1 rounds toward zero, between 0 and 1 to 1, mirrored for negatives), then
    #   takes at least MinAdjustmentMagnitude;
    # - a positive adjustment only adds capacity and a negative one only removes it;
    #   ExactCapacity goes either way;
    # - Cooldown belongs to each step policy: its scale-out cooldown starts when a scale-out it
    #   asked for completes (as §4.4 for target tracking), and meanwhile it adjusts the capacity
    #   from before that scale-out and acts only if that gives more than D; its scale-in cooldown
    #   starts at its scale-in; any scale-out ends every scale-in cooldown; a step scale-out does
    #   not start target tracking's cooldown and a target-tracking scale-out does not start a
    #   step policy's;
    # - with target tracking on the same target, every policy whose alarm calls it proposes a
    #   capacity; the largest above D scales out (while no capacity change is in progress);
    #   failing any such proposal, the largest below D scales in, target tracking's share
    #   proposed only if all its enabled policies agree (§4.6) while a step policy proposes
    #   alone (AWS warns a step scale-in can fire before target tracking would scale in).

    def __post_init__(self) -> None:
        for name in ("metric_lag_s", "boot_s"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise ValidationError(f"{name} >= 0 must hold, got {value:g}")
        for name in ("high_datapoints", "low_datapoints", "low_datapoints_high_resolution"):
            if getattr(self, name) < 1:
                raise ValidationError(f"{name} >= 1 must hold, got {getattr(self, name)}")
        if not 0 < self.low_ratio <= 1:
            raise ValidationError(f"low_ratio must be in (0, 1], got {self.low_ratio:g}")


class AlarmState(enum.IntEnum):
    """CloudWatch alarm states as stored in the state arrays."""

    INSUFFICIENT_DATA = -1
    OK = 0
    ALARM = 1


class ScalingKind(enum.Enum):
    OUT = "scale-out"
    IN = "scale-in"


class ScalingCause(enum.Enum):
    ALARM_HIGH = "AlarmHigh"
    ALARM_LOW = "AlarmLow"
    SCHEDULED = "scheduled action"
    REGISTERED = "scalable target registered"
    STEP_ALARM = "step-scaling alarm"


@dataclass(frozen=True)
class ScheduledAction:
    """``PutScheduledAction`` with an ``at()`` schedule: new Min/Max from ``at_s`` on.

    A value may be an array with one entry per candidate, NaN where the action leaves that
    candidate's bound alone (candidates with different schedules simulated in one run).
    """

    at_s: float
    min_capacity: int | np.ndarray | None = None
    max_capacity: int | np.ndarray | None = None

    def __post_init__(self) -> None:
        if self.min_capacity is None and self.max_capacity is None:
            raise ValidationError("a scheduled action sets MinCapacity, MaxCapacity or both")


@dataclass(frozen=True)
class ScalingEvent:
    """One scaling activity of one candidate, as DescribeScalingActivities would list it."""

    candidate: int
    t_s: float
    kind: ScalingKind
    from_capacity: int
    to_capacity: int
    cause: ScalingCause
    policy: str | None
    """PolicyName whose required capacity won, None for range changes."""
    completes_at_s: float
    """When the activity completes: instances in service (scale-in: at once)."""

    @property
    def description(self) -> str:
        return f"Setting desired instance count to {self.to_capacity}."


@dataclass(frozen=True)
class StepResult:
    """State after the decisions at boundary ``t_s``; arrays are copies."""

    k: int
    t_s: float
    desired: np.ndarray
    in_service: np.ndarray
    updating: np.ndarray
    alarm_high: np.ndarray
    """(C, J) AlarmState values."""
    alarm_low: np.ndarray
    events: tuple[ScalingEvent, ...]
    completed: tuple[int, ...]
    """Candidates whose boot completed at this boundary."""


def normalise_candidates(
    policies: Sequence[ScalingPolicy] | Sequence[Sequence[ScalingPolicy]],
) -> list[list[ScalingPolicy]]:
    groups = [[p] if isinstance(p, ScalingPolicy) else list(p) for p in policies]
    if not groups:
        raise ValidationError("at least one candidate policy is required, got none")
    for i, group in enumerate(groups):
        if not group:
            raise ValidationError(f"candidate {i} has no policy")
        for p in group:
            if p.tracks_target and p.metric_type not in CONCURRENCY_TYPES | INVOCATION_TYPES:
                metric = p.metric_type.value if p.metric_type else "CustomizedMetricSpecification"
                raise PolicyError(
                    f"PredefinedMetricType must be one of {', '.join(SUPPORTED_METRICS)} to be "
                    f"modelled, got {metric}"
                )
            for s in p.step_policies:
                stream_of(s)  # PolicyError unless the step policy's alarm is modelled
            if (p.min_capacity, p.max_capacity) != (group[0].min_capacity, group[0].max_capacity):
                raise PolicyError(
                    f"policies on one target share its MinCapacity/MaxCapacity, got "
                    f"{group[0].min_capacity}/{group[0].max_capacity} and "
                    f"{p.min_capacity}/{p.max_capacity} for candidate {i}"
                )
    return groups


def step_s_for(policies: Sequence[ScalingPolicy] | Sequence[Sequence[ScalingPolicy]]) -> int:
    """The finest metric period among the policies and their step alarms: 10 s or 60 s."""
    return min(finest_period_s(p) for g in normalise_candidates(policies) for p in g)


def finest_period_s(policy: ScalingPolicy) -> int:
    """10 s if the policy or one of its step alarms reads a 10-s metric, else 60 s."""
    periods = [policy.metric_period_s, *(s.alarm.period_s for s in policy.step_policies)]
    return 10 if min(periods) < 60 else 60
