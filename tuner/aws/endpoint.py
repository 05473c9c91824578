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


@dataclass(frozen=True)
class ComponentState:
    """An inference component as DescribeInferenceComponent reports it (copies in its
    RuntimeConfig: CurrentCopyCount serving, DesiredCopyCount asked)."""

    name: str
    endpoint: str
    status: str
    """InService, Creating, Updating, Failed, Deleting."""
    current: int
    desired: int


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
        return {t["Key"]: t["Value"] for t in self.tag_list(name)}

    def _arn(self, name: str) -> str:
        try:
            return str(self.client.describe_endpoint(EndpointName=name)["EndpointArn"])
        except (ClientError, BotoCoreError) as e:
            raise translate_client_error(e, f"DescribeEndpoint {name}") from e

    def tag_list(self, name: str) -> list[dict[str, str]]:
        """The endpoint's tags in the order ListTags gives them (every page)."""
        arn = self._arn(name)
        tags: list[dict[str, str]] = []
        kwargs: dict[str, str] = {}
        try:
            while True:
                resp = self.client.list_tags(ResourceArn=arn, **kwargs)
                tags += resp.get("Tags", [])
                if not resp.get("NextToken"):
                    return tags
                kwargs = {"NextToken": resp["NextToken"]}
        except (ClientError, BotoCoreError) as e:
            raise translate_client_error(e, f"ListTags {name}") from e

    def add_tag(self, name: str, key: str, value: str) -> None:
        """Set one tag on the endpoint (AddTags replaces a key's value)."""
        try:
            self.client.add_tags(ResourceArn=self._arn(name), Tags=[{"Key": key, "Value": value}])
        except (ClientError, BotoCoreError) as e:
            raise translate_client_error(e, f"AddTags {name}") from e

    def delete_tag(self, name: str, key: str) -> None:
        try:
            self.client.delete_tags(ResourceArn=self._arn(name), TagKeys=[key])
        except (ClientError, BotoCoreError) as e:
            raise translate_client_error(e, f"DeleteTags {name}") from e

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

    def describe_component(self, name: str) -> ComponentState:
        """DescribeInferenceComponent: the hosting endpoint, status and copy counts."""
        try:
            resp = self.client.describe_inference_component(InferenceComponentName=name)
        except (ClientError, BotoCoreError) as e:
            raise translate_client_error(e, f"DescribeInferenceComponent {name}") from e
        runtime = resp.get("RuntimeConfig") or {}
        current = int(runtime.get("CurrentCopyCount", 0))
        return ComponentState(
            name=name,
            endpoint=str(resp["EndpointName"]),
            status=str(resp.get("InferenceComponentStatus", "InService")),
            current=current,
            desired=int(runtime.get("DesiredCopyCount", current)),
        )

    def set_copy_count(self, name: str, count: int) -> None:
        """Set a component's copy count by hand (UpdateInferenceComponentRuntimeConfig)."""
        try:
            self.client.update_inference_component_runtime_config(
                InferenceComponentName=name, DesiredRuntimeConfig={"CopyCount": count}
            )
        except (ClientError, BotoCoreError) as e:
            raise translate_client_error(e, f"UpdateInferenceComponentRuntimeConfig {name}") from e

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
