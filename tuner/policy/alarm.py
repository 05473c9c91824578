"""StepAlarm: the CloudWatch alarm whose action is a step-scaling policy, in policy-file form.

A step policy does nothing until a CloudWatch alarm names its ARN among its actions (Application
Auto Scaling user guide, "Step scaling policies"). The policy file holds the alarm beside its
policy with ``put-metric-alarm`` field names, without the action (the ARN is known only once the
policy is put)::

    "Alarm": {"MetricName": "InvocationsPerInstance", "Statistic": "Sum", "Period": 60,
              "EvaluationPeriods": 1, "DatapointsToAlarm": 1, "Threshold": 1800,
              "ComparisonOperator": "GreaterThanOrEqualToThreshold"}

Rules checked on load (PutMetricAlarm API reference): Period 10, 30 or a multiple of 60 s;
1 <= DatapointsToAlarm <= EvaluationPeriods; the namespace is AWS/SageMaker.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any

from tuner.errors import PolicyError
from tuner.policy.fields import check_keys, choice, integer, number
from tuner.policy.resource import Resource, ResourceKind

NAMESPACE = "AWS/SageMaker"
_ALARM_KEYS = {
    "AlarmName",
    "MetricName",
    "Namespace",
    "Statistic",
    "Period",
    "EvaluationPeriods",
    "DatapointsToAlarm",
    "Threshold",
    "ComparisonOperator",
}


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


def policy_arn_tail(resource: Resource, name: str) -> str:
    """The end of a scaling policy's ARN that names its resource and policy."""
    return f"resource/sagemaker/{resource.resource_id}:policyName/{name}"


def policy_name_of(action: str) -> str | None:
    """The policy name an alarm action names, if it is a scaling policy's ARN."""
    head, sep, name = action.rpartition(":policyName/")
    return name if sep and ":scalingPolicy:" in head else None


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
        set_(self, "threshold", number(self.threshold, "Alarm.Threshold"))
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
        set_(self, "comparison", choice(Comparison, self.comparison, "Alarm.ComparisonOperator"))
        for attr, key in (("metric_name", "MetricName"), ("statistic", "Statistic")):
            if not isinstance(getattr(self, attr), str) or not getattr(self, attr):
                raise PolicyError(f"Alarm.{key} must be a non-empty string")
        if self.name is not None and (not isinstance(self.name, str) or not self.name):
            raise PolicyError(f"Alarm.AlarmName must be a non-empty string, got {self.name!r}")

    def to_dict(self) -> dict[str, Any]:
        """The policy file's ``Alarm`` (put-metric-alarm field names, without its action)."""
        out: dict[str, Any] = {} if self.name is None else {"AlarmName": self.name}
        out.update(
            MetricName=self.metric_name,
            Statistic=self.statistic,
            Period=self.period_s,
            EvaluationPeriods=self.evaluation_periods,
            DatapointsToAlarm=self.datapoints_to_alarm,
            Threshold=self.threshold,
            ComparisonOperator=self.comparison.value,
        )
        return out

    def put_metric_alarm_args(
        self, resource: Resource, alarm_name: str, policy_arn: str
    ) -> dict[str, Any]:
        """Keyword arguments of ``cloudwatch.put_metric_alarm``: the alarm acts on the policy."""
        return {
            "AlarmName": alarm_name,
            "Namespace": NAMESPACE,
            "MetricName": self.metric_name,
            "Dimensions": resource_dimensions(resource),
            "Statistic": self.statistic,
            "Period": self.period_s,
            "EvaluationPeriods": self.evaluation_periods,
            "DatapointsToAlarm": self.datapoints_to_alarm,
            "Threshold": self.threshold,
            "ComparisonOperator": self.comparison.value,
            "AlarmActions": [policy_arn],
        }

    @classmethod
    def from_dict(cls, data: Any, where: str = "Alarm") -> StepAlarm:
        """Parse a policy file's ``Alarm``; errors are prefixed with ``where``'s policy."""
        alarm = check_keys(
            data, where, _ALARM_KEYS, {"Threshold", "ComparisonOperator", "EvaluationPeriods"}
        )
        if alarm.get("Namespace", NAMESPACE) != NAMESPACE:
            raise PolicyError(f"{where}.Namespace must be {NAMESPACE}, got {alarm['Namespace']!r}")
        prefix = where.removesuffix("Alarm")
        try:
            return cls(
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
            raise PolicyError(f"{prefix}{e}") from e

    @classmethod
    def from_aws(cls, described: dict[str, Any], default_name: str) -> StepAlarm:
        """From a DescribeAlarms entry; an AlarmName equal to ``default_name`` reads as None."""
        fields = {k: described[k] for k in _ALARM_KEYS if k in described}
        if fields.get("AlarmName") == default_name:
            del fields["AlarmName"]  # the default name: the file said nothing
        return cls.from_dict(fields)
