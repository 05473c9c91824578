"""Exports of a policy file with step policies: cfn-lint, the real AWS CLI against the local
AWS (read back equal), Terraform."""

from __future__ import annotations

import re
from pathlib import Path

from tests.policy.helpers import applied_with_aws_cli, assert_cfn_lint_passes
from tuner.policy.alarm import Comparison, StepAlarm
from tuner.policy.export import export_policy
from tuner.policy.policy import ScalingPolicy
from tuner.policy.resource import Resource
from tuner.policy.step import AdjustmentType, MetricAggregation, StepAdjustment, StepScalingPolicy

RESOURCE = Resource.for_variant("my-endpoint", "AllTraffic")
OUT = StepScalingPolicy(
    name="fast-scale-out",
    alarm=StepAlarm(threshold=1800.0),
    steps=(StepAdjustment(2, 0.0, 1200.0), StepAdjustment(4, 1200.0, None)),
    metric_aggregation=MetricAggregation.MAXIMUM,
    cooldown_s=120,
)
IN = StepScalingPolicy(
    name="idle-scale-in",
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
)

POLICY = ScalingPolicy(min_capacity=2, max_capacity=12, target_value=420.0, step_policies=(OUT, IN))


def test_cloudformation_with_step_policies_passes_cfn_lint(tmp_path: Path) -> None:
    template = tmp_path / "asg.yaml"
    template.write_text(export_policy(POLICY, RESOURCE, "cloudformation"))
    assert_cfn_lint_passes(template)
    text = template.read_text()
    assert text.count('Type: "AWS::CloudWatch::Alarm"') == 2
    assert 'PolicyType: "StepScaling"' in text
    assert 'Ref: "StepScalingPolicy1"' in text and 'Ref: "StepScalingPolicy2"' in text
    assert "MinAdjustmentMagnitude: 1" in text and 'AlarmName: "my-idle-alarm"' in text


def test_terraform_step_policy_and_alarm() -> None:
    text = export_policy(POLICY, RESOURCE, "terraform")
    assert text.count("{") == text.count("}")
    assert 'resource "aws_appautoscaling_policy" "my_endpoint_fast_scale_out" {' in text
    assert 'resource "aws_cloudwatch_metric_alarm" "my_endpoint_fast_scale_out" {' in text
    assert (
        "alarm_actions       = [aws_appautoscaling_policy.my_endpoint_fast_scale_out.arn]" in text
    )
    blocks = re.findall(r"step_adjustment \{(.*?)\}", text, flags=re.S)
    assert [dict(re.findall(r"(\w+)\s*=\s*(\S+)", b)) for b in blocks] == [
        {
            "metric_interval_lower_bound": "0",
            "metric_interval_upper_bound": "1200",
            "scaling_adjustment": "2",
        },
        {"metric_interval_lower_bound": "1200", "scaling_adjustment": "4"},
        {"metric_interval_upper_bound": "0", "scaling_adjustment": "-50"},
    ]
    assert "min_adjustment_magnitude = 1" in text
    assert (
        'dimensions          = { EndpointName = "my-endpoint", VariantName = "AllTraffic" }' in text
    )
    assert 'comparison_operator = "LessThanThreshold"' in text


def test_aws_cli_script_runs_against_the_local_aws_and_reads_back_equal(
    subprocess_env: dict[str, str], tmp_path: Path
) -> None:
    resource = Resource.for_variant("export-endpoint", "AllTraffic")
    text = export_policy(POLICY, resource, "aws-cli")
    with applied_with_aws_cli(text, "export-endpoint", tmp_path, subprocess_env) as scaling:
        live = scaling.read_policy(resource, steps=["fast-scale-out", "idle-scale-in"])
        assert live == POLICY
