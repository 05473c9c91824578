"""A policy file with step policies and no target tracking: parsed back, refused when wrong,
diffed, and exported (cfn-lint, Terraform, the real AWS CLI against the local AWS)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from tests.policy.helpers import applied_with_aws_cli, assert_cfn_lint_passes
from tuner.errors import PolicyError
from tuner.policy import (
    AdjustmentType,
    Comparison,
    MetricAggregation,
    ResourceKind,
    ScalingPolicy,
    StepAdjustment,
    StepAlarm,
    StepScalingPolicy,
    export_policy,
    policy_diff,
)
from tuner.policy.resource import Resource

RESOURCE = Resource.for_variant("my-endpoint", "AllTraffic")
FILE = {
    "ScalableTarget": {"MinCapacity": 1, "MaxCapacity": 8},
    "StepScalingPolicies": [
        {
            "PolicyName": "burst-out",
            "StepScalingPolicyConfiguration": {
                "AdjustmentType": "ChangeInCapacity",
                "StepAdjustments": [
                    {
                        "MetricIntervalLowerBound": 0,
                        "MetricIntervalUpperBound": 600,
                        "ScalingAdjustment": 2,
                    },
                    {"MetricIntervalLowerBound": 600, "ScalingAdjustment": 4},
                ],
                "Cooldown": 120,
                "MetricAggregationType": "Maximum",
            },
            "Alarm": {
                "MetricName": "InvocationsPerInstance",
                "Statistic": "Sum",
                "Period": 60,
                "EvaluationPeriods": 1,
                "DatapointsToAlarm": 1,
                "Threshold": 1800,
                "ComparisonOperator": "GreaterThanOrEqualToThreshold",
            },
        },
        {
            "PolicyName": "idle-in",
            "StepScalingPolicyConfiguration": {
                "AdjustmentType": "PercentChangeInCapacity",
                "StepAdjustments": [{"MetricIntervalUpperBound": 0, "ScalingAdjustment": -50}],
                "MinAdjustmentMagnitude": 1,
            },
            "Alarm": {
                "AlarmName": "my-idle-alarm",
                "Threshold": 60,
                "EvaluationPeriods": 10,
                "DatapointsToAlarm": 8,
                "ComparisonOperator": "LessThanThreshold",
            },
        },
    ],
}
POLICY = ScalingPolicy(
    min_capacity=1,
    max_capacity=8,
    step_policies=(
        StepScalingPolicy(
            name="burst-out",
            alarm=StepAlarm(threshold=1800.0),
            steps=(StepAdjustment(2, 0.0, 600.0), StepAdjustment(4, 600.0, None)),
            metric_aggregation=MetricAggregation.MAXIMUM,
            cooldown_s=120,
        ),
        StepScalingPolicy(
            name="idle-in",
            alarm=StepAlarm(
                threshold=60.0,
                evaluation_periods=10,
                datapoints_to_alarm=8,
                comparison=Comparison.LESS,
                name="my-idle-alarm",
            ),
            steps=(StepAdjustment(-50, None, 0.0),),
            adjustment_type=AdjustmentType.PERCENT_CHANGE_IN_CAPACITY,
            min_adjustment_magnitude=1,
        ),
    ),
)


def test_the_file_parses_to_the_policy_and_back(tmp_path: Path) -> None:
    path = tmp_path / "steps.policy.json"
    path.write_text(json.dumps(FILE))
    policy = ScalingPolicy.load(path)
    assert policy == POLICY
    assert policy.target_value is None and policy.metric_type is None
    assert not policy.tracks_target and policy.policy_names == ["burst-out", "idle-in"]
    assert policy.label == "step-min1-max8-s1800+2-s60-50%"
    assert policy.metric_period_s == 60 and policy.steady_capacity(100.0) == 1
    written = json.loads(policy.to_json())
    assert "TargetTrackingScalingPolicyConfiguration" not in written and "PolicyName" not in written
    assert sorted(written) == ["ScalableTarget", "StepScalingPolicies"]
    assert ScalingPolicy.load(policy.save(tmp_path / "again.policy.json")) == policy
    # the defaults the file left out are written back explicitly
    idle = written["StepScalingPolicies"][1]
    assert idle["StepScalingPolicyConfiguration"]["Cooldown"] == 300
    assert idle["Alarm"]["MetricName"] == "InvocationsPerInstance" and idle["Alarm"]["Period"] == 60
    # an inference component: the dimension decides the kind
    ic = dict(FILE, ScalableDimension="sagemaker:inference-component:DesiredCopyCount")
    assert ScalingPolicy.from_dict(ic).kind is ResourceKind.INFERENCE_COMPONENT


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            {"StepScalingPolicies": []},
            "a scaling policy is required: TargetTrackingScalingPolicyConfiguration, "
            "StepScalingPolicies, or both",
        ),
        ({"PolicyName": "tt"}, "PolicyName names the target-tracking policy: it needs"),
        (
            {"TargetTrackingScalingPolicyConfiguration": {"TargetValue": None}},
            "TargetTrackingScalingPolicyConfiguration.TargetValue must be a number, got null",
        ),
    ],
    ids=["no-policy", "name-without-tracking", "null-target"],
)
def test_wrong_files_are_refused_with_the_rule(change: dict, message: str) -> None:
    with pytest.raises(PolicyError, match=re.escape(message)):
        ScalingPolicy.from_dict({**FILE, **change})


def test_constructor_refuses_target_tracking_fields_without_a_target() -> None:
    with pytest.raises(PolicyError, match="a policy file needs a scaling policy"):
        ScalingPolicy(min_capacity=1, max_capacity=8)
    with pytest.raises(PolicyError, match=r"ScaleOutCooldown needs .*TargetValue"):
        POLICY.replace(scale_out_cooldown_s=60)
    with pytest.raises(PolicyError, match=r"PredefinedMetricSpecification needs"):
        POLICY.replace(metric_type="SageMakerVariantConcurrentRequestsPerModelHighResolution")
    # target tracking added to it: the defaults come back
    both = POLICY.replace(target_value=600.0, metric_type="SageMakerVariantInvocationsPerInstance")
    assert both.tracks_target and both.policy_names == [
        "tuner-target-tracking",
        *POLICY.policy_names,
    ]
    assert ScalingPolicy.from_dict(both.to_dict()) == both


def test_diff_against_a_live_target_tracking_policy() -> None:
    live = ScalingPolicy(min_capacity=1, max_capacity=8, target_value=600.0)
    rows = {key: (old, new) for key, old, new in policy_diff(live, POLICY)}
    assert rows["TargetValue"] == (600.0, None)
    assert rows["MinCapacity"] == (1, 1)
    assert rows["StepScaling burst-out"][0] is None
    assert json.loads(rows["StepScaling burst-out"][1])["Alarm"]["Threshold"] == 1800.0


def test_cloudformation_of_step_policies_alone_passes_cfn_lint(tmp_path: Path) -> None:
    template = tmp_path / "steps.yaml"
    text = export_policy(POLICY, RESOURCE, "cloudformation")
    template.write_text(text)
    assert_cfn_lint_passes(template)
    assert "TargetTrackingScaling" not in text and "  ScalingPolicy:" not in text
    assert text.count('Type: "AWS::ApplicationAutoScaling::ScalingPolicy"') == 2
    assert text.count('Type: "AWS::CloudWatch::Alarm"') == 2
    assert 'Description: "Step-scaling autoscaling for' in text


def test_terraform_of_step_policies_alone() -> None:
    text = export_policy(POLICY, RESOURCE, "terraform")
    assert text.count("{") == text.count("}")
    assert "TargetTrackingScaling" not in text and "target_tracking" not in text
    assert re.findall(r'resource "(\w+)" "(\w+)"', text) == [
        ("aws_appautoscaling_target", "my_endpoint"),
        ("aws_appautoscaling_policy", "my_endpoint_burst_out"),
        ("aws_cloudwatch_metric_alarm", "my_endpoint_burst_out"),
        ("aws_appautoscaling_policy", "my_endpoint_idle_in"),
        ("aws_cloudwatch_metric_alarm", "my_endpoint_idle_in"),
    ]


def test_aws_cli_of_step_policies_alone_runs_against_the_local_aws_and_reads_back_equal(
    subprocess_env: dict[str, str], tmp_path: Path
) -> None:
    resource = Resource.for_variant("steps-endpoint", "AllTraffic")
    text = export_policy(POLICY, resource, "aws-cli")
    assert text.count("put-scaling-policy") == 2 and "TargetTrackingScaling" not in text
    with applied_with_aws_cli(text, "steps-endpoint", tmp_path, subprocess_env) as scaling:
        assert scaling.read_like(POLICY, resource) == POLICY
        # read as target tracking, there is none
        assert scaling.read_policy(resource, steps=POLICY.policy_names) is None
        types = sorted(p["PolicyType"] for p in scaling.describe_policies(resource))
        assert types == ["StepScaling", "StepScaling"]


def test_the_report_lists_the_step_policies_without_target_tracking_fields() -> None:
    from types import SimpleNamespace

    from tuner.report.document import policy_values

    table = policy_values(SimpleNamespace(recommended=POLICY))  # type: ignore[arg-type]
    rows = dict(zip(table["Field"], table["Value"], strict=True))
    assert list(rows) == [
        "MinCapacity",
        "MaxCapacity",
        "StepScaling burst-out",
        "StepScaling idle-in",
    ]
    assert rows["StepScaling burst-out"] == (
        "InvocationsPerInstance GreaterThanOrEqualToThreshold 1800 (1 of 1 x 60 s): "
        "ChangeInCapacity +2, +4, cooldown 120 s"
    )
    assert rows["StepScaling idle-in"].endswith("PercentChangeInCapacity -50, cooldown 300 s")
