"""StepScalingPolicy: a step-scaling policy with the CloudWatch alarm that runs it, frozen.

In a policy file each step policy sits in ``StepScalingPolicies``, with AWS field names: the
``StepScalingPolicyConfiguration`` of ``PutScalingPolicy`` and the ``Alarm`` of
``cloudwatch put-metric-alarm`` (whose action is the policy)::

    {"PolicyName": "fast-scale-out",
     "StepScalingPolicyConfiguration": {
       "AdjustmentType": "ChangeInCapacity", "Cooldown": 120, "MetricAggregationType": "Maximum",
       "StepAdjustments": [{"MetricIntervalLowerBound": 0, "ScalingAdjustment": 2}]},
     "Alarm": {"MetricName": "InvocationsPerInstance", "Statistic": "Sum", "Period": 60,
               "EvaluationPeriods": 1, "DatapointsToAlarm": 1, "Threshold": 1800,
               "ComparisonOperator": "GreaterThanOrEqualToThreshold"}}

Rules checked on load come from the API reference (StepAdjustment, StepScalingPolicyConfiguration):
intervals relative to the threshold must neither overlap nor leave gaps, at most one null lower
and one null upper bound, never both null in one step; ExactCapacity adjustments are >= 0;
MinAdjustmentMagnitude only with PercentChangeInCapacity. The alarm and its rules are
:mod:`tuner.policy.alarm`.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from tuner.errors import PolicyError
from tuner.policy.alarm import StepAlarm
from tuner.policy.fields import check_keys, choice, integer, number
from tuner.policy.resource import Resource

# Step scaling's default Cooldown (API StepScalingPolicyConfiguration: "If not specified, the
# default value is 300").
DEFAULT_STEP_COOLDOWN_S = 300
MAX_STEP_COOLDOWN_S = 86_400


class AdjustmentType(enum.StrEnum):
    CHANGE_IN_CAPACITY = "ChangeInCapacity"
    PERCENT_CHANGE_IN_CAPACITY = "PercentChangeInCapacity"
    EXACT_CAPACITY = "ExactCapacity"


class MetricAggregation(enum.StrEnum):
    AVERAGE = "Average"
    MINIMUM = "Minimum"
    MAXIMUM = "Maximum"


@dataclass(frozen=True)
class StepAdjustment:
    """One step: ``scaling_adjustment`` when (metric - threshold) lies in [lower, upper)."""

    scaling_adjustment: int
    lower: float | None = None
    """MetricIntervalLowerBound relative to the alarm threshold (None: minus infinity)."""
    upper: float | None = None
    """MetricIntervalUpperBound relative to the alarm threshold (None: plus infinity)."""

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.lower is not None:
            out["MetricIntervalLowerBound"] = self.lower
        if self.upper is not None:
            out["MetricIntervalUpperBound"] = self.upper
        out["ScalingAdjustment"] = self.scaling_adjustment
        return out

    @classmethod
    def from_dict(cls, data: Any, where: str = "StepAdjustments[]") -> StepAdjustment:
        s = check_keys(
            data,
            where,
            {"MetricIntervalLowerBound", "MetricIntervalUpperBound", "ScalingAdjustment"},
            {"ScalingAdjustment"},
        )
        lower = s.get("MetricIntervalLowerBound")
        upper = s.get("MetricIntervalUpperBound")
        return cls(
            integer(s["ScalingAdjustment"], f"{where}.ScalingAdjustment"),
            None if lower is None else number(lower, f"{where}.MetricIntervalLowerBound"),
            None if upper is None else number(upper, f"{where}.MetricIntervalUpperBound"),
        )


@dataclass(frozen=True, kw_only=True)
class StepScalingPolicy:
    """A StepScaling policy and its alarm, on the same scalable target as the policy file's."""

    name: str
    """PolicyName."""
    alarm: StepAlarm
    steps: tuple[StepAdjustment, ...]
    adjustment_type: AdjustmentType = AdjustmentType.CHANGE_IN_CAPACITY
    min_adjustment_magnitude: int | None = None
    metric_aggregation: MetricAggregation = MetricAggregation.AVERAGE
    """MetricAggregationType ("If the aggregation type is null, the value is treated as
    Average", API StepScalingPolicyConfiguration)."""
    cooldown_s: int = DEFAULT_STEP_COOLDOWN_S

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        where = f"StepScalingPolicies[{self.name}]"
        if not isinstance(self.name, str) or not self.name:
            raise PolicyError("StepScalingPolicies[].PolicyName must be a non-empty string")
        cfg = f"{where}.StepScalingPolicyConfiguration"
        set_(
            self,
            "adjustment_type",
            choice(AdjustmentType, self.adjustment_type, f"{cfg}.AdjustmentType"),
        )
        set_(
            self,
            "metric_aggregation",
            choice(MetricAggregation, self.metric_aggregation, f"{cfg}.MetricAggregationType"),
        )
        cooldown = integer(self.cooldown_s, f"{cfg}.Cooldown")
        if not 0 <= cooldown <= MAX_STEP_COOLDOWN_S:
            raise PolicyError(
                f"{cfg}.Cooldown must be in 0..{MAX_STEP_COOLDOWN_S} s, got {cooldown}"
            )
        set_(self, "cooldown_s", cooldown)
        if self.min_adjustment_magnitude is not None:
            mam = integer(self.min_adjustment_magnitude, f"{cfg}.MinAdjustmentMagnitude")
            if self.adjustment_type is not AdjustmentType.PERCENT_CHANGE_IN_CAPACITY:
                raise PolicyError(
                    f"{cfg}.MinAdjustmentMagnitude applies only to PercentChangeInCapacity, "
                    f"got AdjustmentType {self.adjustment_type.value}"
                )
            if mam < 1:
                raise PolicyError(f"{cfg}.MinAdjustmentMagnitude >= 1 must hold, got {mam}")
            set_(self, "min_adjustment_magnitude", mam)
        steps = tuple(self.steps)
        if not steps:
            raise PolicyError(f"{cfg}.StepAdjustments needs at least one step")
        set_(self, "steps", steps)
        self._check_steps(f"{cfg}.StepAdjustments")

    def _check_steps(self, where: str) -> None:
        # API StepAdjustment: "The ranges of your step adjustments can't overlap or have a gap";
        # at most one null lower and one null upper bound, never both null in one step.
        for i, s in enumerate(self.steps):
            integer(s.scaling_adjustment, f"{where}[{i}].ScalingAdjustment")
            if s.lower is None and s.upper is None:
                raise PolicyError(
                    f"{where}[{i}]: MetricIntervalLowerBound and MetricIntervalUpperBound "
                    "cannot both be null"
                )
            if s.lower is not None and s.upper is not None and not s.lower < s.upper:
                raise PolicyError(
                    f"{where}[{i}]: MetricIntervalLowerBound < MetricIntervalUpperBound must "
                    f"hold, got {s.lower:g} >= {s.upper:g}"
                )
            if self.adjustment_type is AdjustmentType.EXACT_CAPACITY and s.scaling_adjustment < 0:
                raise PolicyError(
                    f"{where}[{i}].ScalingAdjustment >= 0 must hold for ExactCapacity, "
                    f"got {s.scaling_adjustment}"
                )
        ordered = sorted(self.steps, key=lambda s: -math.inf if s.lower is None else s.lower)
        for a, b in zip(ordered, ordered[1:], strict=False):
            if a.upper is None or b.lower is None or a.upper != b.lower:
                raise PolicyError(
                    f"{where}: intervals must neither overlap nor leave a gap, got "
                    f"[{_bound(a.lower)}, {_bound(a.upper)}) then [{_bound(b.lower)}, "
                    f"{_bound(b.upper)})"
                )

    # -- derived ---------------------------------------------------------------------------------

    @property
    def alarm_name(self) -> str:
        return self.alarm.name or f"{self.name}-alarm"

    @property
    def scales_out(self) -> bool:
        """Whether some step adds capacity (ExactCapacity counts as adding)."""
        return any(
            s.scaling_adjustment > 0 or self.adjustment_type is AdjustmentType.EXACT_CAPACITY
            for s in self.steps
        )

    @property
    def label(self) -> str:
        """``s<threshold>+<first adjustment>``, e.g. ``s1800+2`` for tables and folders."""
        first = self.steps[0].scaling_adjustment
        sign = "=" if self.adjustment_type is AdjustmentType.EXACT_CAPACITY else ""
        unit = "%" if self.adjustment_type is AdjustmentType.PERCENT_CHANGE_IN_CAPACITY else ""
        return f"s{self.alarm.threshold:g}{sign}{first:+d}{unit}".replace("=+", "=")

    # -- AWS shapes ------------------------------------------------------------------------------

    def configuration(self) -> dict[str, Any]:
        """StepScalingPolicyConfiguration as PutScalingPolicy takes it."""
        out: dict[str, Any] = {
            "AdjustmentType": self.adjustment_type.value,
            "StepAdjustments": [s.to_dict() for s in self.steps],
            "Cooldown": self.cooldown_s,
            "MetricAggregationType": self.metric_aggregation.value,
        }
        if self.min_adjustment_magnitude is not None:
            out["MinAdjustmentMagnitude"] = self.min_adjustment_magnitude
        return out

    def alarm_dict(self) -> dict[str, Any]:
        """The policy file's ``Alarm`` (put-metric-alarm field names, without its action)."""
        return self.alarm.to_dict()

    def to_dict(self) -> dict[str, Any]:
        return {
            "PolicyName": self.name,
            "StepScalingPolicyConfiguration": self.configuration(),
            "Alarm": self.alarm_dict(),
        }

    def put_scaling_policy_args(self, resource: Resource) -> dict[str, Any]:
        """Keyword arguments of ``application-autoscaling.put_scaling_policy``."""
        return {
            "PolicyName": self.name,
            "ServiceNamespace": "sagemaker",
            "ResourceId": resource.resource_id,
            "ScalableDimension": resource.scalable_dimension,
            "PolicyType": "StepScaling",
            "StepScalingPolicyConfiguration": self.configuration(),
        }

    def put_metric_alarm_args(self, resource: Resource, policy_arn: str) -> dict[str, Any]:
        """Keyword arguments of ``cloudwatch.put_metric_alarm``: the alarm acts on the policy."""
        return self.alarm.put_metric_alarm_args(resource, self.alarm_name, policy_arn)

    @classmethod
    def from_dict(cls, data: Any, where: str = "StepScalingPolicies[]") -> StepScalingPolicy:
        top = check_keys(
            data,
            where,
            {"PolicyName", "StepScalingPolicyConfiguration", "Alarm"},
            {"PolicyName", "StepScalingPolicyConfiguration", "Alarm"},
        )
        name = top["PolicyName"]
        if not isinstance(name, str) or not name:
            raise PolicyError(f"{where}.PolicyName must be a non-empty string, got {name!r}")
        where = f"StepScalingPolicies[{name}]"
        cfg_where = f"{where}.StepScalingPolicyConfiguration"
        cfg = check_keys(
            top["StepScalingPolicyConfiguration"],
            cfg_where,
            {
                "AdjustmentType",
                "StepAdjustments",
                "Cooldown",
                "MetricAggregationType",
                "MinAdjustmentMagnitude",
            },
            {"AdjustmentType", "StepAdjustments"},
        )
        raw_steps = cfg["StepAdjustments"]
        if not isinstance(raw_steps, list):
            raise PolicyError(f"{cfg_where}.StepAdjustments must be a list")
        steps = tuple(
            StepAdjustment.from_dict(s, f"{cfg_where}.StepAdjustments[{i}]")
            for i, s in enumerate(raw_steps)
        )
        return cls(
            name=name,
            alarm=StepAlarm.from_dict(top["Alarm"], f"{where}.Alarm"),
            steps=steps,
            adjustment_type=cfg["AdjustmentType"],
            min_adjustment_magnitude=cfg.get("MinAdjustmentMagnitude"),
            metric_aggregation=cfg.get("MetricAggregationType", "Average"),
            cooldown_s=cfg.get("Cooldown", DEFAULT_STEP_COOLDOWN_S),
        )


def step_from_aws(policy: Mapping[str, Any], alarm: Mapping[str, Any]) -> StepScalingPolicy:
    """A StepScalingPolicy from a DescribeScalingPolicies entry and its DescribeAlarms entry."""
    name = policy["PolicyName"]
    step_alarm = StepAlarm.from_aws(dict(alarm), f"{name}-alarm")
    data = {
        "PolicyName": name,
        "StepScalingPolicyConfiguration": dict(policy["StepScalingPolicyConfiguration"]),
        "Alarm": step_alarm.to_dict(),
    }
    return StepScalingPolicy.from_dict(data)


def _bound(value: float | None) -> str:
    return "null" if value is None else f"{value:g}"
