"""Export formats: cfn-lint passes, the real AWS CLI accepts the payloads, Terraform is right."""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
from pathlib import Path

import boto3
import pytest

from tests.policy.helpers import assert_cfn_lint_passes
from tuner.aws import AutoScaling
from tuner.errors import ValidationError
from tuner.policy.export import export_policy
from tuner.policy.policy import ScalingPolicy
from tuner.policy.resource import Resource
from tuner.policy.tracking import MetricType

RESOURCE = Resource.for_variant("my-endpoint", "AllTraffic")
POLICY = ScalingPolicy(
    min_capacity=2,
    max_capacity=12,
    target_value=420.0,
    scale_out_cooldown_s=60,
    scale_in_cooldown_s=900,
)


def test_cloudformation_passes_cfn_lint(tmp_path: Path) -> None:
    for policy in (
        POLICY,
        POLICY.replace(
            metric_type=MetricType.CONCURRENT_REQUESTS_PER_MODEL,
            target_value=4.0,
            disable_scale_in=True,
        ),
    ):
        template = tmp_path / "asg.yaml"
        template.write_text(export_policy(policy, RESOURCE, "cloudformation"))
        assert_cfn_lint_passes(template)
        text = template.read_text()
        assert 'Type: "AWS::ApplicationAutoScaling::ScalableTarget"' in text
        assert f"TargetValue: {policy.target_value}" in text
        assert 'Ref: "ScalableTarget"' in text


def test_aws_cli_payloads_accepted_by_real_cli(
    moto_server: str, subprocess_env: dict[str, str]
) -> None:
    text = export_policy(POLICY, RESOURCE, "aws-cli")
    commands = [c for c in text.split("\n\n") if c.strip()]
    assert len(commands) == 2
    for command in commands:
        argv = shlex.split(command)
        assert argv[:2] == ["aws", "application-autoscaling"]
        argv = [str(Path(sys.executable).parent / "aws"), *argv[1:], "--endpoint-url", moto_server]
        result = subprocess.run(
            argv, capture_output=True, text=True, env=subprocess_env, timeout=120
        )
        assert result.returncode == 0, result.stderr
    client = boto3.client("application-autoscaling", endpoint_url=moto_server)
    assert AutoScaling(client).read_policy(RESOURCE) == POLICY


def test_terraform_names_resources_and_values() -> None:
    text = export_policy(POLICY, RESOURCE, "terraform")
    assert 'resource "aws_appautoscaling_target" "my_endpoint" {' in text
    assert 'resource "aws_appautoscaling_policy" "my_endpoint" {' in text
    values = dict(re.findall(r"^\s*(\w+)\s*=\s*(.+)$", text, flags=re.M))
    assert values["resource_id"] == "aws_appautoscaling_target.my_endpoint.resource_id"
    assert '"endpoint/my-endpoint/variant/AllTraffic"' in text
    assert values["min_capacity"] == "2" and values["max_capacity"] == "12"
    assert values["target_value"] == "420"
    assert values["scale_out_cooldown"] == "60" and values["scale_in_cooldown"] == "900"
    assert values["disable_scale_in"] == "false"
    assert values["predefined_metric_type"] == '"SageMakerVariantInvocationsPerInstance"'
    assert values["policy_type"] == '"TargetTrackingScaling"'
    assert text.count("{") == text.count("}")


def test_terraform_customized_metric_and_math_refused() -> None:
    custom = POLICY.replace(
        metric_type=None,
        customized_metric={
            "MetricName": "GPUUtilization",
            "Namespace": "/aws/sagemaker/Endpoints",
            "Statistic": "Average",
            "Dimensions": [{"Name": "EndpointName", "Value": "my-endpoint"}],
        },
    )
    text = export_policy(custom, RESOURCE, "terraform")
    assert 'metric_name = "GPUUtilization"' in text and 'value = "my-endpoint"' in text
    math = POLICY.replace(metric_type=None, customized_metric={"Metrics": [{"Id": "m1"}]})
    with pytest.raises(ValidationError, match="metric math"):
        export_policy(math, RESOURCE, "terraform")


def test_aws_cli_payload_is_json_of_request_args() -> None:
    text = export_policy(POLICY, RESOURCE, "aws-cli")
    payloads = [json.loads(shlex.split(c)[-1]) for c in text.split("\n\n") if c.strip()]
    assert payloads == [
        POLICY.register_scalable_target_args(RESOURCE),
        POLICY.put_scaling_policy_args(RESOURCE),
    ]


def test_unknown_format_is_refused() -> None:
    with pytest.raises(ValidationError, match="--format must be one of"):
        export_policy(POLICY, RESOURCE, "pulumi")
