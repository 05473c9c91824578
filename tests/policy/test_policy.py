"""ScalingPolicy: validation rules, the policy file, AWS request shapes, the diff."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tuner.errors import PolicyError
from tuner.policy.diff import format_diff, policy_diff
from tuner.policy.policy import ScalingPolicy
from tuner.policy.resource import Resource, ResourceKind
from tuner.policy.tracking import MetricType

DESIGN_EXAMPLE = {
    "ScalableTarget": {"MinCapacity": 1, "MaxCapacity": 8},
    "TargetTrackingScalingPolicyConfiguration": {
        "TargetValue": 300.0,
        "PredefinedMetricSpecification": {
            "PredefinedMetricType": "SageMakerVariantInvocationsPerInstance"
        },
        "ScaleOutCooldown": 60,
        "ScaleInCooldown": 300,
        "DisableScaleIn": False,
    },
}


def _with(**changes: Any) -> dict[str, Any]:
    data = json.loads(json.dumps(DESIGN_EXAMPLE))
    for path, value in changes.items():
        *parents, leaf = path.split("__")
        node = data
        for p in parents:
            node = node[p]
        if value is KeyError:
            del node[leaf]
        else:
            node[leaf] = value
    return data


def test_design_example_round_trips_exactly() -> None:
    policy = ScalingPolicy.from_dict(DESIGN_EXAMPLE)
    assert policy.min_capacity == 1 and policy.max_capacity == 8
    assert policy.target_value == 300.0
    assert policy.metric_type is MetricType.INVOCATIONS_PER_INSTANCE
    assert (policy.scale_out_cooldown_s, policy.scale_in_cooldown_s) == (60, 300)
    assert policy.to_dict() == DESIGN_EXAMPLE


def test_file_save_and_load(tmp_path: Path) -> None:
    policy = ScalingPolicy(
        min_capacity=2, max_capacity=6, target_value=450.5, disable_scale_in=True
    )
    path = policy.save(tmp_path / "p.policy.json")
    assert (
        json.loads(path.read_text())["TargetTrackingScalingPolicyConfiguration"]["DisableScaleIn"]
        is True
    )
    assert ScalingPolicy.load(path) == policy


TT = "TargetTrackingScalingPolicyConfiguration"
METRIC_KEY = f"{TT}__PredefinedMetricSpecification__PredefinedMetricType"


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (
            _with(ScalableTarget__MinCapacity=5, ScalableTarget__MaxCapacity=2),
            "ScalableTarget.MinCapacity <= MaxCapacity must hold, got 5 > 2",
        ),
        (
            _with(ScalableTarget__MinCapacity=0),
            "MinCapacity >= 1 must hold for an endpoint variant, got 0",
        ),
        (_with(**{f"{TT}__TargetValue": -5}), "TargetValue > 0 must hold, got -5"),
        (_with(**{f"{TT}__TargetValue": 0}), "TargetValue > 0 must hold, got 0"),
        (_with(**{f"{TT}__ScaleInCooldown": 1.5}), "ScaleInCooldown must be an integer, got 1.5"),
        (_with(**{f"{TT}__ScaleOutCooldown": "60"}), "ScaleOutCooldown must be an integer"),
        (_with(**{f"{TT}__ScaleOutCooldown": 86401}), "ScaleOutCooldown must be in 0..86400"),
        (
            _with(**{f"{TT}__PredefinedMetricSpecification__PredefinedMetricType": "CPU"}),
            "PredefinedMetricType must be one of",
        ),
        (_with(**{f"{TT}__Extra": 1}), "unknown key 'Extra'"),
        (_with(ScalableTarget__MaxCapacity=KeyError), "ScalableTarget.MaxCapacity is required"),
        (_with(**{f"{TT}__TargetValue": KeyError}), f"{TT}.TargetValue is required"),
        (_with(**{f"{TT}__PredefinedMetricSpecification": KeyError}), "exactly one of"),
        (_with(**{f"{TT}__DisableScaleIn": "no"}), "DisableScaleIn must be true or false"),
        (
            _with(
                **{METRIC_KEY: "SageMakerInferenceComponentInvocationsPerCopy"},
                ScalableDimension="sagemaker:variant:DesiredInstanceCount",
            ),
            "scales an inference component, but the policy is for an endpoint variant",
        ),
    ],
    ids=[
        "min>max",
        "min0-variant",
        "negative-target",
        "zero-target",
        "float-cooldown",
        "string-cooldown",
        "cooldown-too-long",
        "unknown-metric",
        "unknown-key",
        "missing-max",
        "missing-target",
        "no-metric",
        "bad-bool",
        "metric-kind-mismatch",
    ],
)
def test_validation_states_rule_and_value(data: dict[str, Any], message: str) -> None:
    with pytest.raises(PolicyError) as info:
        ScalingPolicy.from_dict(data)
    assert message in str(info.value)


def test_inference_component_may_have_min_zero() -> None:
    data = _with(
        **{METRIC_KEY: "SageMakerInferenceComponentInvocationsPerCopy"},
        ScalableTarget__MinCapacity=0,
    )
    policy = ScalingPolicy.from_dict(data)
    assert policy.kind is ResourceKind.INFERENCE_COMPONENT and policy.min_capacity == 0
    args = policy.register_scalable_target_args(Resource.for_component("ic-1"))
    assert args["ScalableDimension"] == "sagemaker:inference-component:DesiredCopyCount"
    assert ScalingPolicy.from_dict(policy.to_dict()) == policy
    with pytest.raises(PolicyError, match="is for an inference component"):
        policy.register_scalable_target_args(Resource.for_variant("ep"))


def test_load_reports_file_and_malformed_json(tmp_path: Path) -> None:
    bad = tmp_path / "bad.policy.json"
    bad.write_text('{"ScalableTarget": {"MinCapacity": 1,}')
    with pytest.raises(PolicyError, match=r"bad.policy.json: malformed JSON at line 1"):
        ScalingPolicy.load(bad)
    with pytest.raises(PolicyError, match="cannot read policy file"):
        ScalingPolicy.load(tmp_path / "missing.json")


@pytest.mark.parametrize(
    ("resource_id", "kind", "name", "variant"),
    [
        ("endpoint/my-ep/variant/AllTraffic", ResourceKind.VARIANT, "my-ep", "AllTraffic"),
        ("inference-component/ic-7", ResourceKind.INFERENCE_COMPONENT, "ic-7", None),
    ],
    ids=["variant", "component"],
)
def test_resource_id_parse_and_build(
    resource_id: str, kind: ResourceKind, name: str, variant: str | None
) -> None:
    resource = Resource.parse(resource_id)
    assert (resource.kind, resource.name, resource.variant) == (kind, name, variant)
    assert resource.resource_id == resource_id


def test_resource_id_rejects_garbage() -> None:
    with pytest.raises(PolicyError, match="ResourceId must be"):
        Resource.parse("endpoint/ep")


def test_request_arguments_are_the_aws_shapes() -> None:
    policy = ScalingPolicy.from_dict(DESIGN_EXAMPLE)
    resource = Resource.for_variant("ep", "blue")
    assert policy.register_scalable_target_args(resource) == {
        "ServiceNamespace": "sagemaker",
        "ResourceId": "endpoint/ep/variant/blue",
        "ScalableDimension": "sagemaker:variant:DesiredInstanceCount",
        "MinCapacity": 1,
        "MaxCapacity": 8,
    }
    put = policy.put_scaling_policy_args(resource)
    assert put["PolicyType"] == "TargetTrackingScaling"
    assert put["PolicyName"] == "tuner-target-tracking"
    assert put["TargetTrackingScalingPolicyConfiguration"] == DESIGN_EXAMPLE[TT]


def test_from_aws_ignores_read_only_fields() -> None:
    target = {
        "ServiceNamespace": "sagemaker",
        "ResourceId": "endpoint/ep/variant/AllTraffic",
        "ScalableDimension": "sagemaker:variant:DesiredInstanceCount",
        "MinCapacity": 1,
        "MaxCapacity": 8,
        "RoleARN": "arn:x",
    }
    described = {
        "PolicyName": "p1",
        "PolicyARN": "arn:p",
        "PolicyType": "TargetTrackingScaling",
        "ResourceId": target["ResourceId"],
        "Alarms": [{"AlarmName": "a"}],
        TT: dict(DESIGN_EXAMPLE[TT]),
    }
    policy = ScalingPolicy.from_aws(target, described)
    assert policy.name == "p1"
    assert policy.replace(name="tuner-target-tracking") == ScalingPolicy.from_dict(DESIGN_EXAMPLE)


def test_high_resolution_metric_has_ten_second_period() -> None:
    policy = ScalingPolicy(
        min_capacity=1,
        max_capacity=4,
        target_value=5,
        metric_type=MetricType.CONCURRENT_REQUESTS_PER_MODEL,
    )
    assert policy.metric_period_s == 10
    assert ScalingPolicy(min_capacity=1, max_capacity=4, target_value=5).metric_period_s == 60


def test_rule_of_thumb_is_max_rps_times_60_times_half() -> None:
    policy = ScalingPolicy.aws_rule_of_thumb(20.0, min_capacity=1, max_capacity=8)
    assert policy.target_value == 600.0
    assert (policy.scale_out_cooldown_s, policy.scale_in_cooldown_s) == (300, 300)


def test_label_names_every_tuned_value() -> None:
    policy = ScalingPolicy(
        min_capacity=2,
        max_capacity=9,
        target_value=450,
        scale_out_cooldown_s=60,
        scale_in_cooldown_s=900,
    )
    assert policy.label == "t450-min2-max9-out60-in900"


def test_diff_shows_changes_and_unchanged_fields() -> None:
    live = ScalingPolicy.from_dict(DESIGN_EXAMPLE)
    wanted = live.replace(target_value=240.0, max_capacity=12)
    rows = {key: (old, new) for key, old, new in policy_diff(live, wanted)}
    assert rows["TargetValue"] == (300.0, 240.0)
    assert rows["MaxCapacity"] == (8, 12)
    text = format_diff(live, wanted)
    assert "TargetValue       300 -> 240" in text
    assert "MaxCapacity       8 -> 12" in text
    assert "ScaleInCooldown   300  (unchanged)" in text
    assert "MinCapacity       (none) -> 1" in format_diff(None, live)
