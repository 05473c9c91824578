"""Scaling policies as AWS shapes: the frozen ScalingPolicy, the resource, diffs and exports."""

from tuner.policy.alarm import (
    Comparison,
    StepAlarm,
)
from tuner.policy.cron import (
    Schedule,
    fire_times,
    parse_schedule,
    timezone,
)
from tuner.policy.diff import (
    format_diff,
    policy_diff,
)
from tuner.policy.export import (
    FORMATS,
    export_policy,
    to_aws_cli,
    to_cloudformation,
    to_terraform,
)
from tuner.policy.policy import (
    SERVICE_NAMESPACE,
    ScalingPolicy,
)
from tuner.policy.resource import (
    Resource,
    ResourceKind,
)
from tuner.policy.schedule import (
    ScheduledScalingAction,
)
from tuner.policy.step import (
    AdjustmentType,
    MetricAggregation,
    StepAdjustment,
    StepScalingPolicy,
)
from tuner.policy.tracking import (
    DEFAULT_COOLDOWN_S,
    DEFAULT_POLICY_NAME,
    MAX_COOLDOWN_S,
    MetricType,
)

__all__ = [
    "AdjustmentType",
    "Comparison",
    "DEFAULT_COOLDOWN_S",
    "DEFAULT_POLICY_NAME",
    "FORMATS",
    "MAX_COOLDOWN_S",
    "MetricAggregation",
    "MetricType",
    "Resource",
    "ResourceKind",
    "SERVICE_NAMESPACE",
    "ScalingPolicy",
    "Schedule",
    "ScheduledScalingAction",
    "StepAdjustment",
    "StepAlarm",
    "StepScalingPolicy",
    "export_policy",
    "fire_times",
    "format_diff",
    "parse_schedule",
    "policy_diff",
    "timezone",
    "to_aws_cli",
    "to_cloudformation",
    "to_terraform",
]
