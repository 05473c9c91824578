"""The local AWS runs a step policy that stands alone on its target (no target tracking): a
trial's isolation puts it under the journal, 150 invocations in one virtual minute breach its
alarm, the emulated autoscaler adds 2 instances as the activity says, and leaving the live change
puts the original target tracking back and deletes the alarm (real boto3 clients)."""

from __future__ import annotations

import asyncio
import math
import time
from pathlib import Path

import pytest

from tests.conftest import local_client
from tuner.aws import AutoScaling, AwsSession, Endpoints
from tuner.emulator import EmulatorConfig, LocalAws
from tuner.emulator.client import drive
from tuner.live import safety
from tuner.live.safety import live_change
from tuner.model.capacity import Capacity, LatencyPoint
from tuner.policy import ScalingPolicy, StepAdjustment, StepAlarm, StepScalingPolicy
from tuner.policy.resource import Resource

SPEED = 30.0
ENDPOINT = "step-only-endpoint"
RESOURCE = Resource.for_variant(ENDPOINT)
# 50 rps per instance at 20 ms, booting in 60 s
CAPACITY = Capacity(
    boot_s=60, max_rps_per_instance=50.0, timeout_ms=60000, latency=(LatencyPoint(1, 20, 40),)
)
UP = StepScalingPolicy(
    name="burst-out",
    # 1 of 1 minute with >= 100 invocations per instance: +2 instances; no second one for 600 s
    alarm=StepAlarm(threshold=100.0),
    steps=(StepAdjustment(2, 0.0, None),),
    cooldown_s=600,
)
CANDIDATE = ScalingPolicy(min_capacity=1, max_capacity=5, step_policies=(UP,))
ORIGINAL = ScalingPolicy(
    min_capacity=1, max_capacity=3, target_value=6000.0, name="original-tt", disable_scale_in=True
)


def _wait_virtual(aws: LocalAws, virtual_s: float) -> None:
    time.sleep(max(0.0, aws.clock.to_real(virtual_s) - time.time()))


def test_a_step_only_candidate_runs_on_the_local_aws_and_is_restored(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(safety, "LOCK_SETTLE_S", 0.05)
    with LocalAws(EmulatorConfig(speed=SPEED, endpoint=ENDPOINT, capacity=CAPACITY)) as aws:
        session = AwsSession(endpoint_url=aws.url, region="us-east-1")
        scaling = AutoScaling(session=session)
        endpoints = Endpoints(session=session)
        assert scaling.apply(ORIGINAL, RESOURCE) == ORIGINAL
        logged: list[str] = []
        with live_change(
            scaling, endpoints, RESOURCE, tmp_path / "journal.json", logged.append,
            endpoint_url=aws.url,
        ):  # fmt: skip
            assert scaling.apply_alone(CANDIDATE, RESOURCE) == CANDIDATE
            assert [p["PolicyName"] for p in scaling.describe_policies(RESOURCE)] == ["burst-out"]
            # 150 invocations spread over one whole virtual minute, on its boundaries
            minute_v = 60 * math.ceil((aws.clock.now() + 2 * SPEED) / 60)
            now_real = time.time()
            offsets = [
                max(0.0, aws.clock.to_real(minute_v + 0.4 * i + 0.2) - now_real) for i in range(150)
            ]
            sent = asyncio.run(drive(aws.url, ENDPOINT, offsets))
            assert [s.status for s in sent] == [200] * 150
            sm = local_client(aws, "sagemaker")
            deadline_v = minute_v + 60 + 180
            while aws.clock.now() < deadline_v:
                variant = sm.describe_endpoint(EndpointName=ENDPOINT)["ProductionVariants"][0]
                if variant["DesiredInstanceCount"] != 1:
                    break
                time.sleep(0.1)
            assert variant["DesiredInstanceCount"] == 3
            activities = local_client(aws, "application-autoscaling").describe_scaling_activities(
                ServiceNamespace="sagemaker"
            )["ScalingActivities"]
            by_step = [a for a in activities if "burst-out" in a["Cause"]]
            assert len(by_step) == 1, [a["Cause"] for a in activities]
            assert by_step[0]["Description"] == "Setting desired instance count to 3."
            assert (
                "monitor alarm burst-out-alarm in state ALARM triggered policy burst-out"
                in by_step[0]["Cause"]
            )
            # the minute's datapoint was 150 per instance: the alarm went to ALARM on it
            (alarm,) = local_client(aws, "cloudwatch").describe_alarms(
                AlarmNames=["burst-out-alarm"]
            )["MetricAlarms"]
            assert alarm["StateValue"] == "ALARM"
        assert scaling.read_policy(RESOURCE) == ORIGINAL
        assert [p["PolicyName"] for p in scaling.describe_policies(RESOURCE)] == ["original-tt"]
        alarms = local_client(aws, "cloudwatch").describe_alarms(AlarmNamePrefix="burst-out")
        assert alarms["MetricAlarms"] == []
        assert not (tmp_path / "journal.json").exists()
