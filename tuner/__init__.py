"""Load-test a SageMaker endpoint, simulate and tune its target-tracking policy, report why."""

from tuner.errors import TunerError
from tuner.policy.policy import ScalingPolicy
from tuner.policy.resource import Resource, ResourceKind
from tuner.policy.tracking import MetricType

__all__ = ["MetricType", "Resource", "ResourceKind", "ScalingPolicy", "TunerError"]
__version__ = "0.1.0"
