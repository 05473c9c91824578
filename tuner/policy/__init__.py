"""Scaling policies as AWS shapes: the frozen ScalingPolicy, the resource, diffs and exports."""

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
    DEFAULT_COOLDOWN_S,
    DEFAULT_POLICY_NAME,
    MAX_COOLDOWN_S,
    SERVICE_NAMESPACE,
    MetricType,
    ScalingPolicy,
)
from tuner.policy.resource import (
    Resource,
    ResourceKind,
)
from tuner.policy.schedule import (
    ScheduledScalingAction,
)

__all__ = [
    "DEFAULT_COOLDOWN_S",
    "DEFAULT_POLICY_NAME",
    "FORMATS",
    "MAX_COOLDOWN_S",
    "MetricType",
    "Resource",
    "ResourceKind",
    "SERVICE_NAMESPACE",
    "ScalingPolicy",
    "Schedule",
    "ScheduledScalingAction",
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
