"""A policy as the AWS CLI, CloudFormation or Terraform would apply it."""

from __future__ import annotations

import json
import shlex
from collections.abc import Callable
from typing import Any

from tuner.errors import ValidationError
from tuner.policy.policy import ScalingPolicy
from tuner.policy.resource import Resource
from tuner.policy.schedule import ScheduledScalingAction
from tuner.policy.step import StepScalingPolicy

FORMATS = ("aws-cli", "cloudformation", "terraform")


def export_policy(policy: ScalingPolicy, resource: Resource, fmt: str) -> str:
    """The text that applies ``policy`` to ``resource`` in format ``fmt`` (one of FORMATS)."""
    writers: dict[str, Callable[[ScalingPolicy, Resource], str]] = {
        "aws-cli": to_aws_cli,
        "cloudformation": to_cloudformation,
        "terraform": to_terraform,
    }
    if fmt not in writers:
        raise ValidationError(f"--format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    return writers[fmt](policy, resource)


def to_aws_cli(policy: ScalingPolicy, resource: Resource) -> str:
    """``aws application-autoscaling`` (and, for step policies, ``aws cloudwatch``) commands
    with their --cli-input-json payloads."""
    target = policy.register_scalable_target_args(resource)
    register = json.dumps(target, indent=2)
    text = (
        "aws application-autoscaling register-scalable-target --cli-input-json "
        f"{shlex.quote(register)}\n"
    )
    if policy.tracks_target:
        put = json.dumps(policy.put_scaling_policy_args(resource), indent=2)
        text += (
            "\naws application-autoscaling put-scaling-policy --cli-input-json "
            f"{shlex.quote(put)}\n"
        )
    for step in policy.step_policies:
        # The alarm's action is the step policy's ARN, which put-scaling-policy returns; options
        # given beside --cli-input-json take precedence over its fields (AWS CLI user guide).
        var = _shell_name(step.name) + "_ARN"
        step_put = json.dumps(step.put_scaling_policy_args(resource), indent=2)
        alarm = step.put_metric_alarm_args(resource, "")
        del alarm["AlarmActions"]
        text += (
            f"\n{var}=$(aws application-autoscaling put-scaling-policy --cli-input-json "
            f"{shlex.quote(step_put)} --query PolicyARN --output text)\n\n"
            "aws cloudwatch put-metric-alarm --cli-input-json "
            f'{shlex.quote(json.dumps(alarm, indent=2))} --alarm-actions "${var}"\n'
        )
    for action in policy.scheduled_actions or ():
        payload = {
            "ServiceNamespace": target["ServiceNamespace"],
            "ResourceId": target["ResourceId"],
            "ScalableDimension": target["ScalableDimension"],
            **action.to_dict(),
        }
        text += (
            "\naws application-autoscaling put-scheduled-action --cli-input-json "
            f"{shlex.quote(json.dumps(payload, indent=2))}\n"
        )
    return text


def _shell_name(text: str) -> str:
    out = "".join(c if c.isalnum() else "_" for c in text).upper()
    return out if out and not out[0].isdigit() else f"P_{out}"


def _yaml(value: Any, indent: int = 0) -> list[str]:
    # JSON scalars are valid YAML scalars, so only the nesting needs writing.
    pad = "  " * indent
    lines: list[str] = []
    if isinstance(value, dict):
        for key, item in value.items():
            if isinstance(item, dict | list) and item:
                lines.append(f"{pad}{key}:")
                lines.extend(_yaml(item, indent + 1))
            else:
                lines.append(f"{pad}{key}: {json.dumps(item)}")
    elif isinstance(value, list):
        for item in value:
            if isinstance(item, dict | list) and item:
                inner = _yaml(item, indent + 1)
                lines.append(f"{pad}- {inner[0].lstrip()}")
                lines.extend(inner[1:])
            else:
                lines.append(f"{pad}- {json.dumps(item)}")
    return lines


def to_cloudformation(policy: ScalingPolicy, resource: Resource) -> str:
    """CloudFormation (YAML): ScalableTarget (with its ScheduledActions), the target-tracking
    ScalingPolicy, and each step ScalingPolicy with the CloudWatch Alarm acting on it."""
    register = policy.register_scalable_target_args(resource)
    target: dict[str, Any] = {
        "ServiceNamespace": register["ServiceNamespace"],
        "ResourceId": register["ResourceId"],
        "ScalableDimension": register["ScalableDimension"],
        "MinCapacity": register["MinCapacity"],
        "MaxCapacity": register["MaxCapacity"],
    }
    if policy.scheduled_actions:
        target["ScheduledActions"] = [a.to_dict() for a in policy.scheduled_actions]
    kinds = ["Target-tracking"] if policy.tracks_target else []
    kinds += ["step-scaling"] if policy.step_policies else []
    resources: dict[str, Any] = {
        "ScalableTarget": {
            "Type": "AWS::ApplicationAutoScaling::ScalableTarget",
            "Properties": target,
        },
    }
    template = {
        "AWSTemplateFormatVersion": "2010-09-09",
        "Description": f"{' and '.join(kinds).capitalize()} autoscaling for "
        f"{resource.resource_id} (tuner)",
        "Resources": resources,
    }
    if policy.tracks_target:
        put = policy.put_scaling_policy_args(resource)
        resources["ScalingPolicy"] = {
            "Type": "AWS::ApplicationAutoScaling::ScalingPolicy",
            "Properties": {
                "PolicyName": put["PolicyName"],
                "PolicyType": put["PolicyType"],
                "ScalingTargetId": {"Ref": "ScalableTarget"},
                "TargetTrackingScalingPolicyConfiguration": put[
                    "TargetTrackingScalingPolicyConfiguration"
                ],
            },
        }
    for i, step in enumerate(policy.step_policies, start=1):
        alarm = step.put_metric_alarm_args(resource, "")
        del alarm["AlarmActions"]
        resources[f"StepScalingPolicy{i}"] = {
            "Type": "AWS::ApplicationAutoScaling::ScalingPolicy",
            "Properties": {
                "PolicyName": step.name,
                "PolicyType": "StepScaling",
                "ScalingTargetId": {"Ref": "ScalableTarget"},
                "StepScalingPolicyConfiguration": step.configuration(),
            },
        }
        # Ref of a ScalingPolicy is its ARN: the alarm acts on the policy
        resources[f"StepScalingAlarm{i}"] = {
            "Type": "AWS::CloudWatch::Alarm",
            "Properties": {**alarm, "AlarmActions": [{"Ref": f"StepScalingPolicy{i}"}]},
        }
    return "\n".join(_yaml(template)) + "\n"


def _hcl_name(text: str) -> str:
    out = "".join(c if c.isalnum() else "_" for c in text).strip("_").lower()
    return out if out and not out[0].isdigit() else f"r_{out}"


def to_terraform(policy: ScalingPolicy, resource: Resource) -> str:
    """Terraform: aws_appautoscaling_target + aws_appautoscaling_policy (target tracking, and
    each step policy with its aws_cloudwatch_metric_alarm)."""
    name = _hcl_name(resource.name)
    ref = f"aws_appautoscaling_target.{name}"
    return (
        f'resource "aws_appautoscaling_target" "{name}" {{\n'
        '  service_namespace  = "sagemaker"\n'
        f"  resource_id        = {json.dumps(resource.resource_id)}\n"
        f"  scalable_dimension = {json.dumps(resource.scalable_dimension)}\n"
        f"  min_capacity       = {policy.min_capacity}\n"
        f"  max_capacity       = {policy.max_capacity}\n"
        "}\n"
        + _terraform_tracking(policy, name, ref)
        + "".join(_terraform_step(step, name, ref, resource) for step in policy.step_policies)
        + _terraform_scheduled(policy.scheduled_actions or (), name, ref)
    )


def _terraform_tracking(policy: ScalingPolicy, name: str, ref: str) -> str:
    """The target-tracking aws_appautoscaling_policy ("" when the file has none)."""
    if policy.target_value is None:
        return ""
    if policy.metric_type is not None:
        metric = (
            "    predefined_metric_specification {\n"
            f"      predefined_metric_type = {json.dumps(policy.metric_type.value)}\n"
            "    }\n"
        )
    else:
        metric = _terraform_custom_metric(policy.customized_metric or {})
    return (
        f'\nresource "aws_appautoscaling_policy" "{name}" {{\n'
        f"  name               = {json.dumps(policy.name)}\n"
        '  policy_type        = "TargetTrackingScaling"\n'
        f"  service_namespace  = {ref}.service_namespace\n"
        f"  resource_id        = {ref}.resource_id\n"
        f"  scalable_dimension = {ref}.scalable_dimension\n\n"
        "  target_tracking_scaling_policy_configuration {\n"
        f"    target_value       = {policy.target_value:g}\n"
        f"    scale_out_cooldown = {policy.scale_out_cooldown_s}\n"
        f"    scale_in_cooldown  = {policy.scale_in_cooldown_s}\n"
        f"    disable_scale_in   = {str(policy.disable_scale_in).lower()}\n\n"
        f"{metric}"
        "  }\n"
        "}\n"
    )


def _terraform_step(step: StepScalingPolicy, name: str, ref: str, resource: Resource) -> str:
    """aws_appautoscaling_policy (StepScaling) + the aws_cloudwatch_metric_alarm acting on it."""
    res = f"{name}_{_hcl_name(step.name)}"
    cfg = step.configuration()
    lines = [
        f'\nresource "aws_appautoscaling_policy" "{res}" {{',
        f"  name               = {json.dumps(step.name)}",
        '  policy_type        = "StepScaling"',
        f"  service_namespace  = {ref}.service_namespace",
        f"  resource_id        = {ref}.resource_id",
        f"  scalable_dimension = {ref}.scalable_dimension",
        "",
        "  step_scaling_policy_configuration {",
        f"    adjustment_type         = {json.dumps(cfg['AdjustmentType'])}",
        f"    cooldown                = {cfg['Cooldown']}",
        f"    metric_aggregation_type = {json.dumps(cfg['MetricAggregationType'])}",
    ]
    if "MinAdjustmentMagnitude" in cfg:
        lines.append(f"    min_adjustment_magnitude = {cfg['MinAdjustmentMagnitude']}")
    for adj in step.steps:
        lines.append("    step_adjustment {")
        if adj.lower is not None:
            lines.append(f"      metric_interval_lower_bound = {adj.lower:g}")
        if adj.upper is not None:
            lines.append(f"      metric_interval_upper_bound = {adj.upper:g}")
        lines.append(f"      scaling_adjustment          = {adj.scaling_adjustment}")
        lines.append("    }")
    lines += ["  }", "}", ""]
    alarm = step.put_metric_alarm_args(resource, "")
    dims = ", ".join(f"{d['Name']} = {json.dumps(d['Value'])}" for d in alarm["Dimensions"])
    lines += [
        f'resource "aws_cloudwatch_metric_alarm" "{res}" {{',
        f"  alarm_name          = {json.dumps(alarm['AlarmName'])}",
        f"  namespace           = {json.dumps(alarm['Namespace'])}",
        f"  metric_name         = {json.dumps(alarm['MetricName'])}",
        f"  dimensions          = {{ {dims} }}",
        f"  statistic           = {json.dumps(alarm['Statistic'])}",
        f"  period              = {alarm['Period']}",
        f"  evaluation_periods  = {alarm['EvaluationPeriods']}",
        f"  datapoints_to_alarm = {alarm['DatapointsToAlarm']}",
        f"  threshold           = {alarm['Threshold']:g}",
        f"  comparison_operator = {json.dumps(alarm['ComparisonOperator'])}",
        f"  alarm_actions       = [aws_appautoscaling_policy.{res}.arn]",
        "}",
    ]
    return "\n".join(lines) + "\n"


def _terraform_scheduled(actions: tuple[ScheduledScalingAction, ...], name: str, ref: str) -> str:
    """aws_appautoscaling_scheduled_action per scheduled action, created one after another
    (concurrent puts on one target fail with ConcurrentUpdateException)."""
    out, previous = "", None
    for action in actions:
        address = f"{name}_{_hcl_name(action.name)}"
        out += _terraform_action(action, address, ref, previous)
        previous = f"aws_appautoscaling_scheduled_action.{address}"
    return out


def _terraform_action(
    action: ScheduledScalingAction, address: str, ref: str, previous: str | None
) -> str:
    lines = [
        f'\nresource "aws_appautoscaling_scheduled_action" "{address}" {{',
        f"  name               = {json.dumps(action.name)}",
        f"  service_namespace  = {ref}.service_namespace",
        f"  resource_id        = {ref}.resource_id",
        f"  scalable_dimension = {ref}.scalable_dimension",
        f"  schedule           = {json.dumps(action.schedule)}",
    ]
    if action.timezone is not None:
        lines.append(f"  timezone           = {json.dumps(action.timezone)}")
    for attr, value in (("start_time", action.start_time), ("end_time", action.end_time)):
        if value is not None:
            lines.append(f"  {attr:<18} = {json.dumps(action.to_dict()[_CAMEL[attr]])}")
    lines.append("")
    lines.append("  scalable_target_action {")
    if action.min_capacity is not None:
        lines.append(f"    min_capacity = {action.min_capacity}")
    if action.max_capacity is not None:
        lines.append(f"    max_capacity = {action.max_capacity}")
    lines.append("  }")
    if previous is not None:
        lines += ["", f"  depends_on = [{previous}]"]
    lines.append("}")
    return "\n".join(lines) + "\n"


_CAMEL = {"start_time": "StartTime", "end_time": "EndTime"}


def _terraform_custom_metric(spec: dict[str, Any]) -> str:
    if "MetricName" not in spec:
        raise ValidationError(
            "terraform export supports CustomizedMetricSpecification with MetricName, Namespace "
            "and Statistic; metric math (Metrics) must be written by hand"
        )
    lines = ["    customized_metric_specification {"]
    for key, attr in (
        ("MetricName", "metric_name"),
        ("Namespace", "namespace"),
        ("Statistic", "statistic"),
        ("Unit", "unit"),
    ):
        if key in spec:
            lines.append(f"      {attr} = {json.dumps(spec[key])}")
    for dim in spec.get("Dimensions", []):
        lines.append("      dimensions {")
        lines.append(f"        name  = {json.dumps(dim['Name'])}")
        lines.append(f"        value = {json.dumps(dim['Value'])}")
        lines.append("      }")
    lines.append("    }")
    return "\n".join(lines) + "\n"
