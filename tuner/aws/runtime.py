"""SageMaker runtime: one timed InvokeEndpoint, the probe calibration uses to see a queue."""

from __future__ import annotations

import time
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from tuner.aws.clients import ClientAdapter, translate_client_error


class Runtime(ClientAdapter):
    """InvokeEndpoint, timed, errors translated."""

    service = "sagemaker-runtime"
    # One attempt: a retried throttle or timeout would hide what the probe is there to see.
    max_attempts = 1

    def invoke_ms(
        self,
        endpoint: str,
        body: bytes,
        *,
        variant: str | None = None,
        content_type: str = "application/json",
    ) -> float:
        """Invoke once; wall-clock milliseconds until the whole answer was read."""
        kwargs: dict[str, Any] = {
            "EndpointName": endpoint,
            "Body": body,
            "ContentType": content_type,
        }
        if variant:
            kwargs["TargetVariant"] = variant
        started = time.perf_counter()
        try:
            self.client.invoke_endpoint(**kwargs)["Body"].read()
        except (ClientError, BotoCoreError) as e:
            raise translate_client_error(e, f"InvokeEndpoint {endpoint}") from e
        return (time.perf_counter() - started) * 1000.0
