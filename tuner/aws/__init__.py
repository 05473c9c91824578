"""boto3 adapters: the only part of the package that imports boto3.

Clients come from :class:`AwsSession` (standard credential chain, ``AWS_ENDPOINT_URL`` honoured)
or are injected; none is created at import, so moto intercepts them in tests.
"""

from tuner.aws.alarms import Alarms
from tuner.aws.autoscaling import AutoScaling
from tuner.aws.clients import AwsSession, translate_client_error
from tuner.aws.cloudwatch import (
    SAGEMAKER_METRICS,
    fetch_component_metrics,
    fetch_variant_metrics,
)
from tuner.aws.endpoint import ComponentState, Endpoints
from tuner.aws.runtime import Runtime
from tuner.aws.snapshot import ScalingSnapshot

__all__ = [
    "Alarms",
    "SAGEMAKER_METRICS",
    "AutoScaling",
    "ComponentState",
    "AwsSession",
    "Endpoints",
    "Runtime",
    "ScalingSnapshot",
    "fetch_component_metrics",
    "fetch_variant_metrics",
    "translate_client_error",
]
