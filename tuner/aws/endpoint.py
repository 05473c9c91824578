"""SageMaker endpoint status and instance counts."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from botocore.exceptions import BotoCoreError, ClientError

from tuner.aws.clients import ClientAdapter, translate_client_error
from tuner.errors import AwsError, EndpointNotFound


@dataclass(frozen=True)
class VariantCounts:
    """Instance counts of one production variant as DescribeEndpoint reports them."""

    variant: str
    current: int
    desired: int


@dataclass(frozen=True)
class EndpointState:
    name: str
    status: str
    """InService, Updating, Creating, Failed, ..."""
    variants: tuple[VariantCounts, ...]
    tags: tuple[tuple[str, str], ...] = ()

    def variant(self, name: str) -> VariantCounts:
        for v in self.variants:
            if v.variant == name:
                return v
        have = ", ".join(v.variant for v in self.variants) or "none"
        raise EndpointNotFound(f"endpoint {self.name} has no variant {name!r} (it has: {have})")


class Endpoints(ClientAdapter):
    """DescribeEndpoint and friends, errors translated."""

    service = "sagemaker"

    def describe(self, name: str) -> EndpointState:
        try:
            resp = self.client.describe_endpoint(EndpointName=name)
        except (ClientError, BotoCoreError) as e:
            raise translate_client_error(e, f"DescribeEndpoint {name}") from e
        variants = tuple(
            VariantCounts(
                variant=v["VariantName"],
                current=int(v.get("CurrentInstanceCount", 0)),
                desired=int(v.get("DesiredInstanceCount", v.get("CurrentInstanceCount", 0))),
            )
            for v in resp.get("ProductionVariants", [])
        )
        return EndpointState(name=name, status=resp["EndpointStatus"], variants=variants)

    def tags(self, name: str) -> dict[str, str]:
        """The endpoint's tags (guardrails read ``environment``)."""
        try:
            arn = self.client.describe_endpoint(EndpointName=name)["EndpointArn"]
            resp = self.client.list_tags(ResourceArn=arn)
        except (ClientError, BotoCoreError) as e:
            raise translate_client_error(e, f"ListTags {name}") from e
        return {t["Key"]: t["Value"] for t in resp.get("Tags", [])}

    def instance_type(self, name: str, variant: str) -> str | None:
        """The variant's instance type, from its endpoint config (None if not shown)."""
        try:
            config = self.client.describe_endpoint(EndpointName=name)["EndpointConfigName"]
            resp = self.client.describe_endpoint_config(EndpointConfigName=config)
        except (ClientError, BotoCoreError) as e:
            raise translate_client_error(e, f"DescribeEndpointConfig {name}") from e
        for v in resp.get("ProductionVariants", []):
            if v.get("VariantName") == variant:
                return str(v["InstanceType"]) if v.get("InstanceType") else None
        return None

    def set_desired_count(self, name: str, variant: str, count: int) -> None:
        """Set a variant's instance count by hand (UpdateEndpointWeightsAndCapacities)."""
        try:
            self.client.update_endpoint_weights_and_capacities(
                EndpointName=name,
                # Weight is sent too: moto drops it otherwise (locust-and-moto.md).
                DesiredWeightsAndCapacities=[
                    {"VariantName": variant, "DesiredInstanceCount": count, "DesiredWeight": 1.0}
                ],
            )
        except (ClientError, BotoCoreError) as e:
            raise translate_client_error(e, f"UpdateEndpointWeightsAndCapacities {name}") from e

    def wait_in_service(
        self,
        name: str,
        *,
        timeout_s: float = 1800.0,
        poll_s: float = 15.0,
        sleep: Callable[[float], None] = time.sleep,
        monotonic: Callable[[], float] = time.monotonic,
        progress: Callable[[EndpointState], None] | None = None,
    ) -> EndpointState:
        """Poll DescribeEndpoint until InService; AwsError on Failed or after ``timeout_s``."""
        deadline = monotonic() + timeout_s
        while True:
            state = self.describe(name)
            if progress is not None:
                progress(state)
            if state.status == "InService":
                return state
            if state.status in {"Failed", "OutOfService", "Deleting"}:
                raise AwsError(f"endpoint {name} is {state.status}, not InService")
            if monotonic() >= deadline:
                raise AwsError(
                    f"endpoint {name} still {state.status} after {timeout_s:g} s "
                    "(timeout; raise it with --wait-timeout-s)"
                )
            sleep(poll_s)
