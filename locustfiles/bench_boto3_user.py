"""Baseline for the load generator's benchmark: boto3 ``invoke_endpoint`` inside plain Locust users.

Closed loop and no pacing, so it shows the most one Locust process gets out of boto3 (which
signs, builds and parses every call through botocore's full stack). Compare with
sagemaker_endpoint.py (botocore's signer + FastHttpSession) in tests/test_loadgen.py::test_bench...

    locust -f locustfiles/bench_boto3_user.py --headless -u 32 -r 32 -t 15s --host URL
"""

from __future__ import annotations

# isort: off
from locust import User, constant, events, task

# isort: on
import os
import time

import boto3
from botocore.config import Config

BODY = b'{"inputs": "tuner load test"}'


@events.init_command_line_parser.add_listener
def _options(parser) -> None:
    parser.add_argument("--endpoint-name", default="bench", help="SageMaker endpoint to invoke")


class Boto3InvokeUser(User):
    """invoke_endpoint in a loop, timed into Locust's stats."""

    wait_time = constant(0)

    def on_start(self) -> None:
        self.sm = boto3.client(
            "sagemaker-runtime",
            endpoint_url=self.host,
            region_name=os.environ.get("AWS_REGION", "us-east-1"),
            config=Config(retries={"max_attempts": 1, "mode": "standard"}),
        )
        self.endpoint = self.environment.parsed_options.endpoint_name

    @task
    def invoke(self) -> None:
        began, error = time.perf_counter(), None
        try:
            self.sm.invoke_endpoint(
                EndpointName=self.endpoint, Body=BODY, ContentType="application/json"
            )
        except Exception as e:  # noqa: BLE001 - every failure is a failed sample here
            error = e
        self.environment.events.request.fire(
            request_type="POST",
            name="boto3 invoke_endpoint",
            response_time=(time.perf_counter() - began) * 1000,
            response_length=0,
            exception=error,
            context={},
        )
