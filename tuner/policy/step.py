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

Rules checked on load come from the API reference (StepAdjustment, StepScalingPolicyConfiguration,
PutMetricAlarm): intervals relative to the threshold must neither overlap nor leave gaps, at most
one null lower and one null upper bound, never both null in one step; ExactCapacity adjustments
are >= 0; MinAdjustmentMagnitude only with PercentChangeInCapacity; DatapointsToAlarm <=
EvaluationPeriods.
"""

from __future__ import annotations

import enum
import math
import numbers
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from tuner.errors import PolicyError
from tuner.policy.fields import check_keys, integer
from tuner.policy.resource import Resource, ResourceKind

# Step scaling's default Cooldown (API StepScalingPolicyConfiguration: "If not specified, the
# default value is 300").
DEFAULT_STEP_COOLDOWN_S = 300
MAX_STEP_COOLDOWN_S = 86_400
NAMESPACE = "AWS/SageMaker"


class AdjustmentType(enum.StrEnum):
    CHANGE_IN_CAPACITY = "ChangeInCapacity"
    PERCENT_CHANGE_IN_CAPACITY = "PercentChangeInCapacity"
    EXACT_CAPACITY = "ExactCapacity"


class MetricAggregation(enum.StrEnum):
    AVERAGE = "Average"
    MINIMUM = "Minimum"
    MAXIMUM = "Maximum"


class Comparison(enum.StrEnum):
    GREATER_OR_EQUAL = "GreaterThanOrEqualToThreshold"
    GREATER = "GreaterThanThreshold"
    LESS = "LessThanThreshold"
    LESS_OR_EQUAL = "LessThanOrEqualToThreshold"

    @property
    def above(self) -> bool:
        """The breach is above the threshold (it decides which interval bound is inclusive)."""
        return self in (Comparison.GREATER_OR_EQUAL, Comparison.GREATER)

    def breaches(self, value: float, threshold: float) -> bool:
        return {
            Comparison.GREATER_OR_EQUAL: value >= threshold,
            Comparison.GREATER: value > threshold,
            Comparison.LESS: value < threshold,
            Comparison.LESS_OR_EQUAL: value <= threshold,
        }[self]


def resource_dimensions(resource: Resource) -> list[dict[str, str]]:
    """The AWS/SageMaker dimensions of the resource's metrics."""
    if resource.kind is ResourceKind.VARIANT:
        return [
            {"Name": "EndpointName", "Value": resource.endpoint},
            {"Name": "VariantName", "Value": resource.variant or ""},
        ]
    return [{"Name": "InferenceComponentName", "Value": resource.name}]


def _number(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise PolicyError(f"{where} must be a number, got {value!r}")
    if not math.isfinite(value):
        raise PolicyError(f"{where} must be finite, got {value!r}")
    return float(value)


def _enum(cls: type[enum.StrEnum], value: Any, where: str) -> Any:
    try:
        return cls(value)
    except ValueError:
        allowed = ", ".join(m.value for m in cls)
        raise PolicyError(f"{where} must be one of {allowed}, got {value!r}") from None


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


@dataclass(frozen=True, kw_only=True)
class StepAlarm:
    """The CloudWatch alarm (``put-metric-alarm``) whose action is the step policy."""

    metric_name: str = "InvocationsPerInstance"
    statistic: str = "Sum"
    period_s: int = 60
    evaluation_periods: int = 1
    datapoints_to_alarm: int = 1
    threshold: float
    comparison: Comparison = Comparison.GREATER_OR_EQUAL
    name: str | None = None
    """AlarmName; None: derived from the policy name."""

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        set_(self, "threshold", _number(self.threshold, "Alarm.Threshold"))
        set_(self, "period_s", integer(self.period_s, "Alarm.Period"))
        if self.period_s not in (10, 30) and (self.period_s < 60 or self.period_s % 60):
            raise PolicyError(
                f"Alarm.Period must be 10, 30 or a multiple of 60 s, got {self.period_s}"
            )
        set_(
            self, "evaluation_periods", integer(self.evaluation_periods, "Alarm.EvaluationPeriods")
        )
        set_(
            self,
            "datapoints_to_alarm",
            integer(self.datapoints_to_alarm, "Alarm.DatapointsToAlarm"),
        )
        if self.evaluation_periods < 1:
            raise PolicyError(
                f"Alarm.EvaluationPeriods >= 1 must hold, got {self.evaluation_periods}"
            )
        if not 1 <= self.datapoints_to_alarm <= self.evaluation_periods:
            raise PolicyError(
                "1 <= Alarm.DatapointsToAlarm <= EvaluationPeriods must hold, "
                f"got {self.datapoints_to_alarm} and {self.evaluation_periods}"
            )
        set_(self, "comparison", _enum(Comparison, self.comparison, "Alarm.ComparisonOperator"))
        for attr, key in (("metric_name", "MetricName"), ("statistic", "Statistic")):
            if not isinstance(getattr(self, attr), str) or not getattr(self, attr):
                raise PolicyError(f"Alarm.{key} must be a non-empty string")


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
            _enum(AdjustmentType, self.adjustment_type, f"{cfg}.AdjustmentType"),
        )
        set_(
            self,
            "metric_aggregation",
            _enum(MetricAggregation, self.metric_aggregation, f"{cfg}.MetricAggregationType"),
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
        a = self.alarm
        out: dict[str, Any] = {
            "MetricName": a.metric_name,
            "Statistic": a.statistic,
            "Period": a.period_s,
            "EvaluationPeriods": a.evaluation_periods,
            "DatapointsToAlarm": a.datapoints_to_alarm,
            "Threshold": a.threshold,
            "ComparisonOperator": a.comparison.value,
        }
        if a.name is not None:
            out = {"AlarmName": a.name, **out}
        return out

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
        a = self.alarm
        return {
            "AlarmName": self.alarm_name,
            "Namespace": NAMESPACE,
            "MetricName": a.metric_name,
            "Dimensions": resource_dimensions(resource),
            "Statistic": a.statistic,
            "Period": a.period_s,
            "EvaluationPeriods": a.evaluation_periods,
            "DatapointsToAlarm": a.datapoints_to_alarm,
            "Threshold": a.threshold,
            "ComparisonOperator": a.comparison.value,
            "AlarmActions": [policy_arn],
        }

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
        steps = []
        for i, s in enumerate(raw_steps):
            sw = f"{cfg_where}.StepAdjustments[{i}]"
            s = check_keys(
                s,
                sw,
                {"MetricIntervalLowerBound", "MetricIntervalUpperBound", "ScalingAdjustment"},
                {"ScalingAdjustment"},
            )
            lower = s.get("MetricIntervalLowerBound")
            upper = s.get("MetricIntervalUpperBound")
            steps.append(
                StepAdjustment(
                    integer(s["ScalingAdjustment"], f"{sw}.ScalingAdjustment"),
                    None if lower is None else _number(lower, f"{sw}.MetricIntervalLowerBound"),
                    None if upper is None else _number(upper, f"{sw}.MetricIntervalUpperBound"),
                )
            )
        aw = f"{where}.Alarm"
        alarm = check_keys(
            top["Alarm"],
            aw,
            {
                "AlarmName",
                "MetricName",
                "Namespace",
                "Statistic",
                "Period",
                "EvaluationPeriods",
                "DatapointsToAlarm",
                "Threshold",
                "ComparisonOperator",
            },
            {"Threshold", "ComparisonOperator", "EvaluationPeriods"},
        )
        if alarm.get("Namespace", NAMESPACE) != NAMESPACE:
            raise PolicyError(f"{aw}.Namespace must be {NAMESPACE}, got {alarm['Namespace']!r}")
        try:
            step_alarm = StepAlarm(
                metric_name=alarm.get("MetricName", "InvocationsPerInstance"),
                statistic=alarm.get("Statistic", "Sum"),
                period_s=alarm.get("Period", 60),
                evaluation_periods=alarm["EvaluationPeriods"],
                datapoints_to_alarm=alarm.get("DatapointsToAlarm", alarm["EvaluationPeriods"]),
                threshold=alarm["Threshold"],
                comparison=alarm["ComparisonOperator"],
                name=alarm.get("AlarmName"),
            )
        except PolicyError as e:
            raise PolicyError(f"{where}.{e}") from e
        return cls(
            name=name,
            alarm=step_alarm,
            steps=tuple(steps),
            adjustment_type=cfg["AdjustmentType"],
            min_adjustment_magnitude=cfg.get("MinAdjustmentMagnitude"),
            metric_aggregation=cfg.get("MetricAggregationType", "Average"),
            cooldown_s=cfg.get("Cooldown", DEFAULT_STEP_COOLDOWN_S),
        )


def policy_arn_tail(resource: Resource, name: str) -> str:
    """The end of a scaling policy's ARN that names its resource and policy."""
    return f"resource/sagemaker/{resource.resource_id}:policyName/{name}"


def policy_name_of(action: str) -> str | None:
    """The policy name an alarm action names, if it is a scaling policy's ARN."""
    head, sep, name = action.rpartition(":policyName/")
    return name if sep and ":scalingPolicy:" in head else None


def step_from_aws(policy: Mapping[str, Any], alarm: Mapping[str, Any]) -> StepScalingPolicy:
    """A StepScalingPolicy from a DescribeScalingPolicies entry and its DescribeAlarms entry."""
    keys = (
        "AlarmName",
        "MetricName",
        "Namespace",
        "Statistic",
        "Period",
        "EvaluationPeriods",
        "DatapointsToAlarm",
        "Threshold",
        "ComparisonOperator",
    )
    alarm_fields = {k: alarm[k] for k in keys if k in alarm}
    if alarm_fields.get("AlarmName") == f"{policy['PolicyName']}-alarm":
        del alarm_fields["AlarmName"]  # the default name: the file said nothing
    data = {
        "PolicyName": policy["PolicyName"],
        "StepScalingPolicyConfiguration": dict(policy["StepScalingPolicyConfiguration"]),
        "Alarm": alarm_fields,
    }
    return StepScalingPolicy.from_dict(data)


def _bound(value: float | None) -> str:
    return "null" if value is None else f"{value:g}"
