"""Target tracking's own fields: the SageMaker predefined metric types, TargetValue's range and
the cooldowns."""

from __future__ import annotations

import enum

from tuner.policy.resource import ResourceKind

DEFAULT_POLICY_NAME = "tuner-target-tracking"
# AWS caps both cooldowns at one day (Application Auto Scaling API reference).
MAX_COOLDOWN_S = 86_400
# TargetValue range Application Auto Scaling accepts (API reference: 8.515920e-109 to
# 1.174271e+108, i.e. 2^-360 to 2^360).
MIN_TARGET_VALUE = 8.515920e-109
MAX_TARGET_VALUE = 1.174271e108
# Default cooldown for SageMaker variants (target-tracking.md §1).
DEFAULT_COOLDOWN_S = 300


class MetricType(enum.StrEnum):
    """The SageMaker predefined metric types of target tracking (target-tracking.md §1)."""

    INVOCATIONS_PER_INSTANCE = "SageMakerVariantInvocationsPerInstance"
    CONCURRENT_REQUESTS_PER_MODEL = "SageMakerVariantConcurrentRequestsPerModelHighResolution"
    INVOCATIONS_PER_COPY = "SageMakerInferenceComponentInvocationsPerCopy"
    CONCURRENT_REQUESTS_PER_COPY = (
        "SageMakerInferenceComponentConcurrentRequestsPerCopyHighResolution"
    )
    PROVISIONED_CONCURRENCY_UTILIZATION = "SageMakerVariantProvisionedConcurrencyUtilization"

    @property
    def cloudwatch_metric(self) -> str:
        """The AWS/SageMaker CloudWatch metric the alarms watch."""
        return _METRIC_TABLE[self][0]

    @property
    def period_s(self) -> int:
        """Alarm period: 10 s for the high-resolution types, 60 s otherwise."""
        return _METRIC_TABLE[self][1]

    @property
    def kind(self) -> ResourceKind:
        """The resource kind the metric type can scale."""
        return _METRIC_TABLE[self][2]

    @property
    def high_resolution(self) -> bool:
        return self.period_s < 60


_METRIC_TABLE: dict[MetricType, tuple[str, int, ResourceKind]] = {
    MetricType.INVOCATIONS_PER_INSTANCE: ("InvocationsPerInstance", 60, ResourceKind.VARIANT),
    MetricType.CONCURRENT_REQUESTS_PER_MODEL: (
        "ConcurrentRequestsPerModel",
        10,
        ResourceKind.VARIANT,
    ),
    MetricType.INVOCATIONS_PER_COPY: ("InvocationsPerCopy", 60, ResourceKind.INFERENCE_COMPONENT),
    MetricType.CONCURRENT_REQUESTS_PER_COPY: (
        "ConcurrentRequestsPerCopy",
        10,
        ResourceKind.INFERENCE_COMPONENT,
    ),
    MetricType.PROVISIONED_CONCURRENCY_UTILIZATION: (
        "ServerlessProvisionedConcurrencyUtilization",
        60,
        ResourceKind.VARIANT,
    ),
}
