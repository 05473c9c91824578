"""The policy file (``*.policy.json``) parsed into :class:`tuner.policy.policy.ScalingPolicy`'s
fields, and AWS's Describe* entries turned into a policy file.

The file's keys are AWS's (:mod:`tuner.policy.policy` shows one); the values are checked by
ScalingPolicy itself, the structure (known keys, required ones, lists) here.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from tuner.errors import PolicyError
from tuner.policy.fields import check_keys
from tuner.policy.resource import ResourceKind
from tuner.policy.schedule import ScheduledScalingAction
from tuner.policy.step import StepScalingPolicy
from tuner.policy.tracking import DEFAULT_COOLDOWN_S, DEFAULT_POLICY_NAME, MetricType


def policy_fields(data: Any) -> dict[str, Any]:
    """The ScalingPolicy keyword arguments a policy file's JSON object gives."""
    top = check_keys(
        data,
        "policy",
        {
            "ScalableTarget",
            "TargetTrackingScalingPolicyConfiguration",
            "PolicyName",
            "ScalableDimension",
            "StepScalingPolicies",
            "ScheduledActions",
        },
        {"ScalableTarget"},
    )
    tt = "TargetTrackingScalingPolicyConfiguration"
    if tt not in top and not top.get("StepScalingPolicies"):
        raise PolicyError(f"a scaling policy is required: {tt}, StepScalingPolicies, or both")
    if tt not in top and "PolicyName" in top:
        raise PolicyError(f"PolicyName names the target-tracking policy: it needs {tt}")
    raw_steps = top.get("StepScalingPolicies", [])
    if not isinstance(raw_steps, list):
        raise PolicyError("StepScalingPolicies must be a list")
    steps = tuple(
        StepScalingPolicy.from_dict(s, f"StepScalingPolicies[{i}]") for i, s in enumerate(raw_steps)
    )
    target = check_keys(
        top["ScalableTarget"],
        "ScalableTarget",
        {"MinCapacity", "MaxCapacity"},
        {"MinCapacity", "MaxCapacity"},
    )
    config = check_keys(
        top.get(tt, {"TargetValue": None}),
        tt,
        {
            "TargetValue",
            "PredefinedMetricSpecification",
            "CustomizedMetricSpecification",
            "ScaleOutCooldown",
            "ScaleInCooldown",
            "DisableScaleIn",
        },
        {"TargetValue"},
    )
    if tt in top and config["TargetValue"] is None:
        raise PolicyError(f"{tt}.TargetValue must be a number, got null")
    metric_type: str | None = None
    if "PredefinedMetricSpecification" in config:
        spec = check_keys(
            config["PredefinedMetricSpecification"],
            f"{tt}.PredefinedMetricSpecification",
            {"PredefinedMetricType", "ResourceLabel"},
            {"PredefinedMetricType"},
        )
        metric_type = spec["PredefinedMetricType"]
    custom = config.get("CustomizedMetricSpecification")
    if custom is not None and not isinstance(custom, Mapping):
        raise PolicyError(f"{tt}.CustomizedMetricSpecification must be a JSON object")
    if "ScalableDimension" in top:
        kind = ResourceKind.from_dimension(top["ScalableDimension"])
    elif metric_type in {m.value for m in MetricType}:
        kind = MetricType(metric_type).kind
    else:
        kind = ResourceKind.VARIANT
    name = top.get("PolicyName", DEFAULT_POLICY_NAME)
    if not isinstance(name, str):
        raise PolicyError(f"PolicyName must be a string, got {name!r}")
    scheduled = top.get("ScheduledActions")
    if scheduled is not None and not isinstance(scheduled, list):
        raise PolicyError(f"ScheduledActions must be a JSON list, got {scheduled!r}")
    actions = (
        None
        if scheduled is None
        else tuple(
            ScheduledScalingAction.from_dict(a, f"ScheduledActions[{i}]")
            for i, a in enumerate(scheduled)
        )
    )
    return dict(
        min_capacity=target["MinCapacity"],
        max_capacity=target["MaxCapacity"],
        target_value=config["TargetValue"],
        customized_metric=dict(custom) if custom is not None else None,
        metric_type=metric_type,  # a string: ScalingPolicy checks it and makes it a MetricType
        scale_out_cooldown_s=config.get("ScaleOutCooldown", DEFAULT_COOLDOWN_S),
        scale_in_cooldown_s=config.get("ScaleInCooldown", DEFAULT_COOLDOWN_S),
        disable_scale_in=config.get("DisableScaleIn", False),
        kind=kind,
        name=name,
        step_policies=steps,
        scheduled_actions=actions,
    )


def aws_policy_file(target: Mapping[str, Any], policy: Mapping[str, Any]) -> dict[str, Any]:
    """A policy file from a DescribeScalableTargets entry and a target-tracking policy's
    DescribeScalingPolicies entry (AWS's computed fields dropped)."""
    config = dict(policy["TargetTrackingScalingPolicyConfiguration"])
    config.pop("ResourceLabel", None)
    predefined = config.get("PredefinedMetricSpecification")
    if predefined is not None:
        config["PredefinedMetricSpecification"] = {
            "PredefinedMetricType": predefined["PredefinedMetricType"]
        }
    return {
        "ScalableTarget": {
            "MinCapacity": target["MinCapacity"],
            "MaxCapacity": target["MaxCapacity"],
        },
        "TargetTrackingScalingPolicyConfiguration": config,
        "PolicyName": policy["PolicyName"],
        "ScalableDimension": target["ScalableDimension"],
    }
