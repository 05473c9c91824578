"""AutoScaling and Endpoints adapters against moto (real boto3 clients)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import boto3
import pytest

from tests.conftest import REGION, create_endpoint
from tuner.aws import AutoScaling, Endpoints, ScalingSnapshot
from tuner.errors import EndpointNotFound, TargetNotRegistered
from tuner.policy.policy import ScalingPolicy
from tuner.policy.resource import Resource

RESOURCE = Resource.for_variant("my-endpoint")
POLICY = ScalingPolicy(
    min_capacity=1,
    max_capacity=8,
    target_value=300.0,
    scale_out_cooldown_s=60,
    scale_in_cooldown_s=600,
)


def test_apply_reads_back_equal(aws: None) -> None:
    scaling = AutoScaling(boto3.client("application-autoscaling", region_name=REGION))
    assert scaling.read_policy(RESOURCE) is None
    applied = scaling.apply(POLICY, RESOURCE)
    assert applied == POLICY
    assert scaling.read_policy(RESOURCE) == POLICY
    # Applying a changed policy replaces it in place.
    changed = POLICY.replace(target_value=450.0, max_capacity=10)
    scaling.apply(changed, RESOURCE)
    assert scaling.read_policy(RESOURCE) == changed
    assert len(scaling.describe_policies(RESOURCE)) == 1


def _second_policy_and_schedule(client: object) -> None:
    client.put_scaling_policy(  # type: ignore[attr-defined]
        PolicyName="latency-guard",
        ServiceNamespace="sagemaker",
        ResourceId=RESOURCE.resource_id,
        ScalableDimension=RESOURCE.scalable_dimension,
        PolicyType="TargetTrackingScaling",
        TargetTrackingScalingPolicyConfiguration={
            "TargetValue": 4.0,
            "PredefinedMetricSpecification": {
                "PredefinedMetricType": "SageMakerVariantConcurrentRequestsPerModelHighResolution"
            },
            "ScaleOutCooldown": 30,
            "ScaleInCooldown": 900,
            "DisableScaleIn": True,
        },
    )
    client.put_scheduled_action(  # type: ignore[attr-defined]
        ServiceNamespace="sagemaker",
        ScheduledActionName="business-hours",
        ResourceId=RESOURCE.resource_id,
        ScalableDimension=RESOURCE.scalable_dimension,
        Schedule="cron(0 8 ? * MON-FRI *)",
        ScalableTargetAction={"MinCapacity": 3, "MaxCapacity": 8},
    )


def _state(scaling: AutoScaling) -> tuple[object, ...]:
    target = scaling.describe_target(RESOURCE)
    assert target is not None
    policies = sorted(
        (p["PolicyName"], p["PolicyType"], p["TargetTrackingScalingPolicyConfiguration"])
        for p in scaling.describe_policies(RESOURCE)
    )
    actions = sorted(
        (
            a["ScheduledActionName"],
            a["Schedule"],
            a["ScalableTargetAction"]["MinCapacity"],
            a["ScalableTargetAction"]["MaxCapacity"],
        )
        for a in scaling.describe_scheduled_actions(RESOURCE)
    )
    return (target["MinCapacity"], target["MaxCapacity"], repr(policies), actions)


def test_snapshot_change_restore_is_exact(aws: None, tmp_path: Path) -> None:
    client = boto3.client("application-autoscaling", region_name=REGION)
    scaling = AutoScaling(client)
    scaling.apply(POLICY, RESOURCE)
    _second_policy_and_schedule(client)
    original = _state(scaling)
    assert len(original[3]) == 1 and "latency-guard" in original[2]

    path = scaling.snapshot(RESOURCE).save(tmp_path / "snap.json")
    # A trial changes everything: new range, replaced policy, an extra policy, no schedule.
    scaling.apply(POLICY.replace(target_value=999.0, min_capacity=2, max_capacity=3), RESOURCE)
    scaling.apply(POLICY.replace(name="extra", target_value=50.0), RESOURCE)
    scaling.delete_policy(RESOURCE, "latency-guard")
    client.delete_scheduled_action(
        ServiceNamespace="sagemaker",
        ScheduledActionName="business-hours",
        ResourceId=RESOURCE.resource_id,
        ScalableDimension=RESOURCE.scalable_dimension,
    )
    assert _state(scaling) != original

    scaling.restore(ScalingSnapshot.load(path))
    assert _state(scaling) == original
    assert scaling.read_policy(RESOURCE, POLICY.name) == POLICY


def test_restore_of_unregistered_state_deregisters(aws: None) -> None:
    scaling = AutoScaling(boto3.client("application-autoscaling", region_name=REGION))
    snap = scaling.snapshot(RESOURCE)
    assert snap.target is None
    scaling.apply(POLICY, RESOURCE)
    scaling.restore(snap)
    assert scaling.describe_target(RESOURCE) is None
    assert scaling.describe_policies(RESOURCE) == []


def test_suspend_requires_registered_target(aws: None) -> None:
    scaling = AutoScaling(boto3.client("application-autoscaling", region_name=REGION))
    with pytest.raises(TargetNotRegistered, match="no scalable target registered"):
        scaling.set_suspended(RESOURCE, scale_in=True, scale_out=True)
    scaling.apply(POLICY, RESOURCE)
    scaling.set_suspended(RESOURCE, scale_in=True, scale_out=True)
    state = scaling.describe_target(RESOURCE)["SuspendedState"]  # type: ignore[index]
    assert state["DynamicScalingInSuspended"] and state["DynamicScalingOutSuspended"]


def test_restore_lifts_a_suspension_taken_after_the_snapshot(aws: None) -> None:
    scaling = AutoScaling(boto3.client("application-autoscaling", region_name=REGION))
    scaling.apply(POLICY, RESOURCE)
    snap = scaling.snapshot(RESOURCE)
    scaling.set_suspended(RESOURCE, scale_in=True, scale_out=True)
    scaling.restore(snap)
    state = scaling.describe_target(RESOURCE)["SuspendedState"]  # type: ignore[index]
    assert not state["DynamicScalingInSuspended"] and not state["DynamicScalingOutSuspended"]


def test_activities_tolerate_a_backend_without_the_call(aws: None) -> None:
    scaling = AutoScaling(boto3.client("application-autoscaling", region_name=REGION))
    scaling.apply(POLICY, RESOURCE)
    with pytest.warns(RuntimeWarning, match="scaling activities unavailable"):
        assert scaling.describe_activities(RESOURCE) == []


def test_endpoint_counts_and_missing_endpoint(aws: None) -> None:
    sm = boto3.client("sagemaker", region_name=REGION)
    create_endpoint(sm, count=2)
    endpoints = Endpoints(sm)
    state = endpoints.describe("my-endpoint")
    assert state.status == "InService"
    assert state.variant("AllTraffic").current == 2
    endpoints.set_desired_count("my-endpoint", "AllTraffic", 3)
    assert endpoints.describe("my-endpoint").variant("AllTraffic").desired == 3
    with pytest.raises(EndpointNotFound, match="no variant 'blue'"):
        state.variant("blue")
    with pytest.raises(EndpointNotFound, match="nope"):
        endpoints.describe("nope")


def test_wait_in_service_times_out_with_injected_clock(aws: None) -> None:
    sm = boto3.client("sagemaker", region_name=REGION)
    create_endpoint(sm)
    seen: list[str] = []
    state = Endpoints(sm).wait_in_service("my-endpoint", progress=lambda s: seen.append(s.status))
    assert state.status == "InService" and seen == ["InService"]

    class Frozen:
        now = 0.0

        def monotonic(self) -> float:
            return self.now

        def sleep(self, s: float) -> None:
            self.now += s

    class Updating:
        def describe_endpoint(self, EndpointName: str) -> dict[str, object]:  # noqa: N803
            return {"EndpointStatus": "Updating", "ProductionVariants": []}

    clock = Frozen()
    from tuner.errors import AwsError

    with pytest.raises(AwsError, match="still Updating after 60 s"):
        Endpoints(Updating()).wait_in_service(
            "x", timeout_s=60, poll_s=15, sleep=clock.sleep, monotonic=clock.monotonic
        )
    assert clock.now == 60


def test_tags_are_read(aws: None) -> None:
    sm = boto3.client("sagemaker", region_name=REGION)
    create_endpoint(sm, tags=[{"Key": "environment", "Value": "production"}])
    assert Endpoints(sm).tags("my-endpoint") == {"environment": "production"}


def test_snapshot_file_rejects_garbage(tmp_path: Path) -> None:
    from tuner.errors import TunerError

    bad = tmp_path / "s.json"
    bad.write_text('{"version": 99}')
    with pytest.raises(TunerError, match="not a tuner scaling snapshot"):
        ScalingSnapshot.load(bad)
    assert dt.datetime.fromisoformat(ScalingSnapshot(RESOURCE, None).taken_at).tzinfo is not None


def test_a_probe_client_makes_one_attempt_and_the_others_retry() -> None:
    from tuner.aws import AwsSession, Endpoints, Runtime

    session = AwsSession(region="us-east-1")
    assert Runtime(session=session).client.meta.config.retries["total_max_attempts"] == 1
    assert Endpoints(session=session).client.meta.config.retries["total_max_attempts"] == 9
