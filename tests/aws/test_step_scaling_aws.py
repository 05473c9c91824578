"""Step policies and their alarms through the adapters, against moto (real boto3 clients)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import boto3
import pytest

from tests.conftest import REGION
from tuner.aws import AutoScaling, ScalingSnapshot
from tuner.policy.alarm import StepAlarm
from tuner.policy.policy import ScalingPolicy
from tuner.policy.resource import Resource
from tuner.policy.step import StepAdjustment, StepScalingPolicy

RESOURCE = Resource.for_variant("my-endpoint")
COMPANION = StepScalingPolicy(
    name="fast-scale-out",
    alarm=StepAlarm(threshold=1800.0, evaluation_periods=1, datapoints_to_alarm=1),
    steps=(StepAdjustment(2, 0.0, 1200.0), StepAdjustment(4, 1200.0, None)),
    cooldown_s=120,
)
POLICY = ScalingPolicy(
    min_capacity=1, max_capacity=8, target_value=600.0, step_policies=(COMPANION,)
)


def _alarms() -> list[dict[str, Any]]:
    cw = boto3.client("cloudwatch", region_name=REGION)
    return cw.describe_alarms(AlarmTypes=["MetricAlarm"])["MetricAlarms"]  # type: ignore[no-any-return]


def test_apply_puts_the_step_policy_and_its_alarm_and_reads_back_equal(aws: None) -> None:
    scaling = AutoScaling(boto3.client("application-autoscaling", region_name=REGION))
    assert scaling.apply(POLICY, RESOURCE) == POLICY
    kinds = sorted((p["PolicyName"], p["PolicyType"]) for p in scaling.describe_policies(RESOURCE))
    assert kinds == [
        ("fast-scale-out", "StepScaling"),
        ("tuner-target-tracking", "TargetTrackingScaling"),
    ]
    (alarm,) = _alarms()
    assert alarm["AlarmName"] == "fast-scale-out-alarm"
    assert (
        alarm["Threshold"] == 1800.0
        and alarm["ComparisonOperator"] == "GreaterThanOrEqualToThreshold"
    )
    assert alarm["Dimensions"] == [
        {"Name": "EndpointName", "Value": "my-endpoint"},
        {"Name": "VariantName", "Value": "AllTraffic"},
    ]
    assert alarm["AlarmActions"][0].endswith(
        "resource/sagemaker/endpoint/my-endpoint/variant/AllTraffic:policyName/fast-scale-out"
    )
    # a changed threshold replaces the alarm in place: still one alarm
    changed_step = StepScalingPolicy(
        name="fast-scale-out", alarm=StepAlarm(threshold=2400.0), steps=COMPANION.steps
    )
    changed = POLICY.replace(step_policies=(changed_step,))
    assert scaling.apply(changed, RESOURCE) == changed
    assert [a["Threshold"] for a in _alarms()] == [2400.0]


def test_snapshot_restore_deletes_the_alarm_a_trial_added_and_brings_one_back(
    aws: None, tmp_path: Path
) -> None:
    scaling = AutoScaling(boto3.client("application-autoscaling", region_name=REGION))
    plain = POLICY.replace(step_policies=())
    scaling.apply(plain, RESOURCE)
    before = scaling.snapshot(RESOURCE).save(tmp_path / "before.json")
    scaling.apply(POLICY, RESOURCE)  # a trial adds the step companion and its alarm
    assert len(_alarms()) == 1
    scaling.restore(ScalingSnapshot.load(before))
    assert _alarms() == []
    assert [p["PolicyName"] for p in scaling.describe_policies(RESOURCE)] == [
        "tuner-target-tracking"
    ]
    # the other way round: the user had the companion; a trial removes it; restore puts both back
    scaling.apply(POLICY, RESOURCE)
    with_step = scaling.snapshot(RESOURCE)
    assert [a["AlarmName"] for a in with_step.alarms] == ["fast-scale-out-alarm"]
    path = with_step.save(tmp_path / "with-step.json")
    scaling.restore(ScalingSnapshot.load(before))
    assert _alarms() == []
    scaling.restore(ScalingSnapshot.load(path))
    assert scaling.read_policy(RESOURCE, steps=["fast-scale-out"]) == POLICY
    (alarm,) = _alarms()
    live_arn = next(
        p["PolicyARN"]
        for p in scaling.describe_policies(RESOURCE)
        if p["PolicyName"] == "fast-scale-out"
    )
    assert alarm["AlarmActions"] == [live_arn]  # the alarm acts on the policy as put again


def test_restore_to_unregistered_deletes_the_step_alarms(aws: None) -> None:
    scaling = AutoScaling(boto3.client("application-autoscaling", region_name=REGION))
    empty = scaling.snapshot(RESOURCE)
    scaling.apply(POLICY, RESOURCE)
    scaling.restore(empty)
    assert _alarms() == []
    assert scaling.describe_target(RESOURCE) is None


def test_cli_apply_shows_the_step_policy_then_finds_nothing_to_change(
    aws: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from tests.conftest import create_endpoint
    from tuner.cli import main

    create_endpoint(boto3.client("sagemaker", region_name=REGION))
    path = POLICY.save(tmp_path / "p.policy.json")
    assert main(["apply", str(path), "--endpoint", "my-endpoint", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "StepScaling fast-scale-out  (none) -> " in out
    assert "cloudwatch PutMetricAlarm" in out and '"Threshold": 1800.0' in out
    assert _alarms() == []  # a dry run changes nothing
    assert main(["apply", str(path), "--endpoint", "my-endpoint", "--yes"]) == 0
    assert "applied and verified" in capsys.readouterr().out
    assert main(["apply", str(path), "--endpoint", "my-endpoint", "--yes"]) == 0
    assert "nothing to change" in capsys.readouterr().out
    # a bad step policy file: one line, exit 2
    data = POLICY.to_dict()
    data["StepScalingPolicies"][0]["StepScalingPolicyConfiguration"]["StepAdjustments"] = [
        {"MetricIntervalLowerBound": 0, "MetricIntervalUpperBound": 100, "ScalingAdjustment": 1},
        {"MetricIntervalLowerBound": 200, "ScalingAdjustment": 2},
    ]
    bad = tmp_path / "bad.policy.json"
    bad.write_text(json.dumps(data))
    assert main(["apply", str(bad), "--endpoint", "my-endpoint"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "intervals must neither overlap nor leave a gap, got [0, 100) then [200, null)" in err
