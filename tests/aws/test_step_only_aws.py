"""A target with step policies and no target tracking through the adapters, against moto (real
boto3 clients): apply and read back, snapshot and restore, a trial's isolation, `tuner apply`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import boto3
import pytest

from tests.conftest import REGION
from tuner.aws import AutoScaling, ScalingSnapshot
from tuner.policy import ScalingPolicy, StepAdjustment, StepAlarm, StepScalingPolicy
from tuner.policy.resource import Resource

RESOURCE = Resource.for_variant("my-endpoint")
UP = StepScalingPolicy(
    name="burst-out",
    alarm=StepAlarm(threshold=1800.0),
    steps=(StepAdjustment(2, 0.0, None),),
    cooldown_s=120,
)
STEP_ONLY = ScalingPolicy(min_capacity=1, max_capacity=8, step_policies=(UP,))
TRACKING = ScalingPolicy(min_capacity=2, max_capacity=6, target_value=600.0)


def _scaling() -> AutoScaling:
    return AutoScaling(boto3.client("application-autoscaling", region_name=REGION))


def _alarms() -> list[dict[str, Any]]:
    cw = boto3.client("cloudwatch", region_name=REGION)
    return cw.describe_alarms(AlarmTypes=["MetricAlarm"])["MetricAlarms"]  # type: ignore[no-any-return]


def _policies(scaling: AutoScaling) -> list[tuple[str, str]]:
    return sorted((p["PolicyName"], p["PolicyType"]) for p in scaling.describe_policies(RESOURCE))


def test_apply_puts_the_step_policy_alone_and_reads_back_equal(aws: None) -> None:
    scaling = _scaling()
    assert scaling.apply(STEP_ONLY, RESOURCE) == STEP_ONLY
    assert _policies(scaling) == [("burst-out", "StepScaling")]
    (alarm,) = _alarms()
    assert alarm["AlarmName"] == "burst-out-alarm" and alarm["Threshold"] == 1800.0
    assert alarm["AlarmActions"][0].endswith(":policyName/burst-out")
    target = scaling.describe_target(RESOURCE)
    assert target is not None and (target["MinCapacity"], target["MaxCapacity"]) == (1, 8)
    assert scaling.read_like(STEP_ONLY, RESOURCE) == STEP_ONLY
    # read as target tracking there is none; the step policy unnamed is not read
    assert scaling.read_policy(RESOURCE, steps=["burst-out"]) is None
    assert scaling.read_policy(RESOURCE, tracking=False) is None


def test_snapshot_restore_between_step_only_and_target_tracking(aws: None, tmp_path: Path) -> None:
    scaling = _scaling()
    scaling.apply(STEP_ONLY, RESOURCE)
    step_snap = scaling.snapshot(RESOURCE)
    assert [a["AlarmName"] for a in step_snap.alarms] == ["burst-out-alarm"]
    path = step_snap.save(tmp_path / "steps.json")
    # a trial of target tracking alone: the step policy and its alarm go
    scaling.apply_alone(TRACKING, RESOURCE)
    assert _policies(scaling) == [("tuner-target-tracking", "TargetTrackingScaling")]
    assert _alarms() == []
    tracking_snap = scaling.snapshot(RESOURCE)
    scaling.restore(ScalingSnapshot.load(path))
    assert _policies(scaling) == [("burst-out", "StepScaling")]
    assert scaling.read_like(STEP_ONLY, RESOURCE) == STEP_ONLY
    (alarm,) = _alarms()
    (live,) = scaling.describe_policies(RESOURCE)
    assert alarm["AlarmActions"] == [live["PolicyARN"]]
    # and back: restoring target tracking deletes the step policy's alarm
    scaling.restore(tracking_snap)
    assert _policies(scaling) == [("tuner-target-tracking", "TargetTrackingScaling")]
    assert _alarms() == []
    assert scaling.read_policy(RESOURCE) == TRACKING


def test_a_trial_of_a_step_only_candidate_removes_target_tracking(aws: None) -> None:
    scaling = _scaling()
    scaling.apply(TRACKING.replace(step_policies=(UP,)), RESOURCE)
    other = StepScalingPolicy(
        name="someone-else", alarm=StepAlarm(threshold=5.0), steps=UP.steps, cooldown_s=60
    )
    scaling.apply(TRACKING.replace(name="other-tt", step_policies=(other,)), RESOURCE)
    assert len(_alarms()) == 2
    candidate = STEP_ONLY.replace(max_capacity=4)
    assert scaling.apply_alone(candidate, RESOURCE) == candidate
    assert _policies(scaling) == [("burst-out", "StepScaling")]
    assert [a["AlarmName"] for a in _alarms()] == ["burst-out-alarm"]
    target = scaling.describe_target(RESOURCE)
    assert target is not None and target["MaxCapacity"] == 4
    assert target["SuspendedState"]["ScheduledScalingSuspended"] is True


def test_restore_to_unregistered_deletes_the_step_only_alarm(aws: None) -> None:
    scaling = _scaling()
    empty = scaling.snapshot(RESOURCE)
    scaling.apply(STEP_ONLY, RESOURCE)
    scaling.restore(empty)
    assert _alarms() == [] and scaling.describe_target(RESOURCE) is None


def test_cli_apply_of_a_step_only_file(
    aws: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from tests.conftest import create_endpoint
    from tuner.cli import main

    create_endpoint(boto3.client("sagemaker", region_name=REGION))
    _scaling().apply(TRACKING, RESOURCE)  # a target-tracking policy is live already
    path = STEP_ONLY.save(tmp_path / "steps.policy.json")
    assert main(["apply", str(path), "--endpoint", "my-endpoint", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "policy burst-out" in out
    assert "StepScaling burst-out  (none) -> " in out
    assert "other policies on this target stay as they are: tuner-target-tracking" in out
    assert out.count("application-autoscaling PutScalingPolicy") == 1
    assert '"PolicyType": "StepScaling"' in out and "TargetTrackingScaling" not in out
    assert "cloudwatch PutMetricAlarm" in out and _alarms() == []
    assert main(["apply", str(path), "--endpoint", "my-endpoint", "--yes"]) == 0
    assert "now runs step-min1-max8-s1800+2" in capsys.readouterr().out
    assert main(["apply", str(path), "--endpoint", "my-endpoint", "--yes"]) == 0
    assert "nothing to change" in capsys.readouterr().out
    assert _policies(_scaling()) == [
        ("burst-out", "StepScaling"),
        ("tuner-target-tracking", "TargetTrackingScaling"),
    ]


def test_the_current_policy_is_read_whole_step_only_or_beside_target_tracking(aws: None) -> None:
    # what `tuner tune --endpoint` evaluates as "current": the step policy alone here...
    scaling = _scaling()
    assert scaling.read_current(RESOURCE) is None
    scaling.apply(STEP_ONLY, RESOURCE)
    assert scaling.read_current(RESOURCE) == STEP_ONLY
    # ...and, with target tracking added beside it, both (a read of target tracking alone would
    # simulate the target without its burst step)
    both = TRACKING.replace(min_capacity=1, max_capacity=8, step_policies=(UP,))
    scaling.apply(both, RESOURCE)
    assert scaling.read_current(RESOURCE) == both
    assert scaling.read_policy(RESOURCE) == both.replace(step_policies=())
