"""ScalingPolicy: a target-tracking policy plus its scalable target, validated and frozen.

The policy file (``*.policy.json``) uses AWS field names so it reads like the console and works
with the AWS CLI::

    {"ScalableTarget": {"MinCapacity": 1, "MaxCapacity": 8},
     "TargetTrackingScalingPolicyConfiguration": {
       "TargetValue": 300.0,
       "PredefinedMetricSpecification": {
         "PredefinedMetricType": "SageMakerVariantInvocationsPerInstance"},
       "ScaleOutCooldown": 60, "ScaleInCooldown": 300, "DisableScaleIn": false}}

Optional top-level keys: ``PolicyName``, ``ScalableDimension`` (which says whether the policy
is for an endpoint variant or an inference component) and ``ScheduledActions`` (scheduled
MinCapacity/MaxCapacity changes of the target, :mod:`tuner.policy.schedule`; when the key is
there the file owns the target's scheduled actions, when it is absent they are left alone).
"""

from __future__ import annotations

import dataclasses
import enum
import hashlib
import json
import math
import numbers
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tuner.errors import PolicyError, plain, read_json_file
from tuner.policy.fields import check_keys, integer
from tuner.policy.resource import Resource, ResourceKind
from tuner.policy.schedule import ScheduledScalingAction, check_actions
from tuner.policy.step import StepScalingPolicy

SERVICE_NAMESPACE = "sagemaker"
DEFAULT_POLICY_NAME = "tuner-target-tracking"
# AWS caps both cooldowns at one day (Application Auto Scaling API reference).
MAX_COOLDOWN_S = 86_400
# TargetValue range Application Auto Scaling accepts (API reference: 8.515920e-109 to
# 1.174271e+108, i.e. 2^-360 to 2^360); MinCapacity/MaxCapacity are 32-bit integers in its model.
MIN_TARGET_VALUE = 8.515920e-109
MAX_TARGET_VALUE = 1.174271e108
MAX_RESOURCE_CAPACITY = 2**31 - 1
# Default cooldown for SageMaker variants (target-tracking.md §1).
DEFAULT_COOLDOWN_S = 300


class MetricType(enum.StrEnum):
    """The SageMaker predefined metric types of target tracking (target-tracking.md §1)."""

    INVOCATIONS_PER_INSTANCE = "SageMakerVariantInvocationsPerInstance"
    CONCURRENT_REQUESTS_PER_MODEL = "SageMakerVariantConcurrentRequestsPerModelHighResolution"
    INVOCATIONS_PER_COPY = "SageMakerInferenceComponentInvocationsPerCopy"
    CONCURRENT_REQUESTS_PER_COPY = (
        "SageMakerInferenceComponentConcurrentRequestsPerCopyHighResolution"
    )
    PROVISIONED_CONCURRENCY_UTILIZATION = "SageMakerVariantProvisionedConcurrencyUtilization"

    @property
    def cloudwatch_metric(self) -> str:
        """The AWS/SageMaker CloudWatch metric the alarms watch."""
        return _METRIC_TABLE[self][0]

    @property
    def period_s(self) -> int:
        """Alarm period: 10 s for the high-resolution types, 60 s otherwise."""
        return _METRIC_TABLE[self][1]

    @property
    def kind(self) -> ResourceKind:
        """The resource kind the metric type can scale."""
        return _METRIC_TABLE[self][2]

    @property
    def high_resolution(self) -> bool:
        return self.period_s < 60


_METRIC_TABLE: dict[MetricType, tuple[str, int, ResourceKind]] = {
    MetricType.INVOCATIONS_PER_INSTANCE: ("InvocationsPerInstance", 60, ResourceKind.VARIANT),
    MetricType.CONCURRENT_REQUESTS_PER_MODEL: (
        "ConcurrentRequestsPerModel",
        10,
        ResourceKind.VARIANT,
    ),
    MetricType.INVOCATIONS_PER_COPY: ("InvocationsPerCopy", 60, ResourceKind.INFERENCE_COMPONENT),
    MetricType.CONCURRENT_REQUESTS_PER_COPY: (
        "ConcurrentRequestsPerCopy",
        10,
        ResourceKind.INFERENCE_COMPONENT,
    ),
    MetricType.PROVISIONED_CONCURRENCY_UTILIZATION: (
        "ServerlessProvisionedConcurrencyUtilization",
        60,
        ResourceKind.VARIANT,
    ),
}


@dataclass(frozen=True, kw_only=True)
class ScalingPolicy:
    """A scalable target's range plus one target-tracking policy on it.

    >>> ScalingPolicy(min_capacity=1, max_capacity=8, target_value=300.0).label
    't300-min1-max8-out300-in300'
    """

    min_capacity: int
    """MinCapacity of the scalable target."""
    max_capacity: int
    """MaxCapacity of the scalable target."""
    target_value: float
    """TargetValue of the metric (per instance per period for InvocationsPerInstance)."""
    metric_type: MetricType | None = MetricType.INVOCATIONS_PER_INSTANCE
    """Predefined metric type, or None when ``customized_metric`` is given."""
    customized_metric: dict[str, Any] | None = field(default=None, hash=False)
    """A CustomizedMetricSpecification, passed to AWS as is."""
    scale_out_cooldown_s: int = DEFAULT_COOLDOWN_S
    scale_in_cooldown_s: int = DEFAULT_COOLDOWN_S
    disable_scale_in: bool = False
    kind: ResourceKind = ResourceKind.VARIANT
    """Whether the policy scales a variant's instances or an inference component's copies."""
    name: str = DEFAULT_POLICY_NAME
    """PolicyName used when the policy is put."""
    step_policies: tuple[StepScalingPolicy, ...] = ()
    """Step-scaling policies (each with its alarm) on the same scalable target."""
    scheduled_actions: tuple[ScheduledScalingAction, ...] | None = None
    """The target's scheduled actions, sorted by name; None: the file does not manage them."""

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        steps = tuple(self.step_policies)
        for s in steps:
            if not isinstance(s, StepScalingPolicy):
                raise PolicyError(f"StepScalingPolicies must hold step policies, got {s!r}")
        names = [self.name, *(s.name for s in steps)]
        if len(set(names)) != len(names):
            raise PolicyError(f"PolicyName must differ between the policies, got {names}")
        set_(self, "step_policies", steps)
        tt = "TargetTrackingScalingPolicyConfiguration"
        set_(self, "min_capacity", integer(self.min_capacity, "ScalableTarget.MinCapacity"))
        set_(self, "max_capacity", integer(self.max_capacity, "ScalableTarget.MaxCapacity"))
        floor = self.kind.min_capacity_floor
        if self.min_capacity < floor:
            raise PolicyError(
                f"ScalableTarget.MinCapacity >= {floor} must hold for an {self.kind.noun}, "
                f"got {self.min_capacity}"
            )
        if self.min_capacity > self.max_capacity:
            raise PolicyError(
                "ScalableTarget.MinCapacity <= MaxCapacity must hold, "
                f"got {self.min_capacity} > {self.max_capacity}"
            )
        least = max(1, floor) if self.kind is ResourceKind.VARIANT else 0  # a component: 0 copies
        if self.max_capacity < least:
            raise PolicyError(
                f"ScalableTarget.MaxCapacity >= {least} must hold, got {self.max_capacity}"
            )
        if self.max_capacity > MAX_RESOURCE_CAPACITY:
            raise PolicyError(
                f"ScalableTarget.MaxCapacity <= {MAX_RESOURCE_CAPACITY} must hold (Application "
                f"Auto Scaling's 32-bit capacity), got {self.max_capacity}"
            )
        if isinstance(self.target_value, bool) or not isinstance(self.target_value, numbers.Real):
            raise PolicyError(
                f"{tt}.TargetValue must be a number, got {plain(self.target_value)!r}"
            )
        set_(self, "target_value", float(self.target_value))
        if not (math.isfinite(self.target_value) and self.target_value > 0):
            raise PolicyError(f"{tt}.TargetValue > 0 must hold, got {self.target_value:g}")
        if not MIN_TARGET_VALUE <= self.target_value <= MAX_TARGET_VALUE:
            raise PolicyError(
                f"{tt}.TargetValue must be in {MIN_TARGET_VALUE:g}..{MAX_TARGET_VALUE:g} "
                f"(Application Auto Scaling's range), got {self.target_value:g}"
            )
        for attr, key in (
            ("scale_out_cooldown_s", "ScaleOutCooldown"),
            ("scale_in_cooldown_s", "ScaleInCooldown"),
        ):
            value = integer(getattr(self, attr), f"{tt}.{key}")
            if not 0 <= value <= MAX_COOLDOWN_S:
                raise PolicyError(f"{tt}.{key} must be in 0..{MAX_COOLDOWN_S} s, got {value}")
            set_(self, attr, value)
        if not isinstance(self.disable_scale_in, bool):
            raise PolicyError(
                f"{tt}.DisableScaleIn must be true or false, got {self.disable_scale_in!r}"
            )
        if (self.metric_type is None) == (self.customized_metric is None):
            raise PolicyError(
                f"{tt}: exactly one of PredefinedMetricSpecification and "
                "CustomizedMetricSpecification is required"
            )
        if self.metric_type is not None:
            try:
                metric = MetricType(self.metric_type)
            except ValueError:
                allowed = ", ".join(m.value for m in MetricType)
                raise PolicyError(
                    f"{tt}.PredefinedMetricSpecification.PredefinedMetricType must be one of "
                    f"{allowed}, got {self.metric_type!r}"
                ) from None
            set_(self, "metric_type", metric)
            if metric.kind is not self.kind:
                raise PolicyError(
                    f"{tt}.PredefinedMetricSpecification.PredefinedMetricType {metric.value} "
                    f"scales an {metric.kind.noun}, but the policy is for an {self.kind.noun}"
                )
        elif not isinstance(self.customized_metric, Mapping) or not self.customized_metric:
            raise PolicyError(f"{tt}.CustomizedMetricSpecification must be a non-empty object")
        if not self.name:
            raise PolicyError("PolicyName must be non-empty")
        if self.scheduled_actions is not None:
            actions = tuple(sorted(self.scheduled_actions, key=lambda a: a.name))
            check_actions(actions)
            for a in actions:
                if a.min_capacity is not None and a.min_capacity < floor:
                    raise PolicyError(
                        f"ScheduledActions[{a.name!r}].ScalableTargetAction.MinCapacity >= "
                        f"{floor} must hold for an {self.kind.noun}, got {a.min_capacity}"
                    )
            set_(self, "scheduled_actions", actions)

    # -- derived -------------------------------------------------------------------------------

    @property
    def metric_period_s(self) -> int:
        """Alarm period of the tracked metric (customized metrics: 60 s)."""
        return self.metric_type.period_s if self.metric_type is not None else 60

    @property
    def label(self) -> str:
        """Short stable name for tables and folders: ``t300-min1-max8-out60-in300``."""
        text = (
            f"t{self.target_value:g}-min{self.min_capacity}-max{self.max_capacity}"
            f"-out{self.scale_out_cooldown_s}-in{self.scale_in_cooldown_s}"
        )
        if self.metric_type is MetricType.CONCURRENT_REQUESTS_PER_MODEL:
            text = "crpm-" + text
        elif self.metric_type is None:
            text = "custom-" + text
        text += "-noscalein" if self.disable_scale_in else ""
        if self.scheduled_actions:
            blob = json.dumps([a.to_dict() for a in self.scheduled_actions], sort_keys=True)
            text += "-sched" + hashlib.sha256(blob.encode()).hexdigest()[:6]
        return "".join([text, *(f"-{s.label}" for s in self.step_policies)])

    def steady_capacity(self, rate_rps: float) -> int:
        """Instances this policy settles at under a steady ``rate_rps`` (Min for other metrics).

        For InvocationsPerInstance the alarms rest once rate x 60 / N <= TargetValue, so
        N = ceil(rate x 60 / TargetValue), within [Min, Max]. The other metric types depend on
        latency, not rate alone: they start at MinCapacity.
        """
        if self.metric_type is not MetricType.INVOCATIONS_PER_INSTANCE:
            return self.min_capacity
        need = math.ceil(rate_rps * 60.0 / self.target_value - 1e-9)
        return max(self.min_capacity, min(self.max_capacity, need))

    def replace(self, **changes: Any) -> ScalingPolicy:
        """A copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **changes)

    def check_resource(self, resource: Resource) -> None:
        """Raise unless this policy can scale ``resource``."""
        if resource.kind is not self.kind:
            raise PolicyError(
                f"the policy is for an {self.kind.noun} but {resource.resource_id} is an "
                f"{resource.kind.noun}"
            )

    @classmethod
    def aws_rule_of_thumb(
        cls,
        max_rps_per_instance: float,
        *,
        min_capacity: int,
        max_capacity: int,
        safety_factor: float = 0.5,
    ) -> ScalingPolicy:
        """AWS's advice (target-tracking.md §6): target = MAX_RPS x 60 x 0.5, default cooldowns."""
        return cls(
            min_capacity=min_capacity,
            max_capacity=max_capacity,
            target_value=round(max_rps_per_instance * 60 * safety_factor, 3),
            name="aws-rule-of-thumb",
        )

    # -- the policy file -----------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """The policy file's JSON object (AWS field names)."""
        config: dict[str, Any] = {"TargetValue": self.target_value}
        config.update(self._metric_spec())
        config.update(
            ScaleOutCooldown=self.scale_out_cooldown_s,
            ScaleInCooldown=self.scale_in_cooldown_s,
            DisableScaleIn=self.disable_scale_in,
        )
        out: dict[str, Any] = {
            "ScalableTarget": {"MinCapacity": self.min_capacity, "MaxCapacity": self.max_capacity},
            "TargetTrackingScalingPolicyConfiguration": config,
        }
        if self.name != DEFAULT_POLICY_NAME:
            out["PolicyName"] = self.name
        if self.kind is not ResourceKind.VARIANT:
            out["ScalableDimension"] = self.kind.scalable_dimension
        if self.step_policies:
            out["StepScalingPolicies"] = [s.to_dict() for s in self.step_policies]
        if self.scheduled_actions is not None:
            out["ScheduledActions"] = [a.to_dict() for a in self.scheduled_actions]
        return out

    @classmethod
    def from_dict(cls, data: Any) -> ScalingPolicy:
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
            {"ScalableTarget", "TargetTrackingScalingPolicyConfiguration"},
        )
        raw_steps = top.get("StepScalingPolicies", [])
        if not isinstance(raw_steps, list):
            raise PolicyError("StepScalingPolicies must be a list")
        steps = tuple(
            StepScalingPolicy.from_dict(s, f"StepScalingPolicies[{i}]")
            for i, s in enumerate(raw_steps)
        )
        target = check_keys(
            top["ScalableTarget"],
            "ScalableTarget",
            {"MinCapacity", "MaxCapacity"},
            {"MinCapacity", "MaxCapacity"},
        )
        tt = "TargetTrackingScalingPolicyConfiguration"
        config = check_keys(
            top[tt],
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
        return cls(
            min_capacity=target["MinCapacity"],
            max_capacity=target["MaxCapacity"],
            target_value=config["TargetValue"],
            metric_type=metric_type,  # type: ignore[arg-type]  # validated in __post_init__
            customized_metric=dict(custom) if custom is not None else None,
            scale_out_cooldown_s=config.get("ScaleOutCooldown", DEFAULT_COOLDOWN_S),
            scale_in_cooldown_s=config.get("ScaleInCooldown", DEFAULT_COOLDOWN_S),
            disable_scale_in=config.get("DisableScaleIn", False),
            kind=kind,
            name=name,
            step_policies=steps,
            scheduled_actions=actions,
        )

    @classmethod
    def load(cls, path: str | Path) -> ScalingPolicy:
        """Read and validate a policy file; errors name the file."""
        path = Path(path)
        data = read_json_file(path, PolicyError, "policy file")
        try:
            return cls.from_dict(data)
        except PolicyError as e:
            raise PolicyError(f"{path}: {e}") from e

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2) + "\n"

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.write_text(self.to_json(), encoding="utf-8")
        return path

    # -- AWS request and response shapes -------------------------------------------------------

    def _metric_spec(self) -> dict[str, Any]:
        if self.metric_type is not None:
            return {
                "PredefinedMetricSpecification": {"PredefinedMetricType": self.metric_type.value}
            }
        return {"CustomizedMetricSpecification": dict(self.customized_metric or {})}

    def register_scalable_target_args(self, resource: Resource) -> dict[str, Any]:
        """Keyword arguments of ``application-autoscaling.register_scalable_target``."""
        self.check_resource(resource)
        return {
            "ServiceNamespace": SERVICE_NAMESPACE,
            "ResourceId": resource.resource_id,
            "ScalableDimension": resource.scalable_dimension,
            "MinCapacity": self.min_capacity,
            "MaxCapacity": self.max_capacity,
        }

    def put_scheduled_action_args(self, resource: Resource) -> list[dict[str, Any]]:
        """Keyword arguments of ``put_scheduled_action``, one per scheduled action."""
        self.check_resource(resource)
        return [
            {
                "ServiceNamespace": SERVICE_NAMESPACE,
                "ResourceId": resource.resource_id,
                "ScalableDimension": resource.scalable_dimension,
                **a.put_args(),
            }
            for a in self.scheduled_actions or ()
        ]

    def put_scaling_policy_args(self, resource: Resource) -> dict[str, Any]:
        """Keyword arguments of ``application-autoscaling.put_scaling_policy``."""
        self.check_resource(resource)
        config = self.to_dict()["TargetTrackingScalingPolicyConfiguration"]
        return {
            "PolicyName": self.name,
            "ServiceNamespace": SERVICE_NAMESPACE,
            "ResourceId": resource.resource_id,
            "ScalableDimension": resource.scalable_dimension,
            "PolicyType": "TargetTrackingScaling",
            "TargetTrackingScalingPolicyConfiguration": config,
        }

    @classmethod
    def from_aws(cls, target: Mapping[str, Any], policy: Mapping[str, Any]) -> ScalingPolicy:
        """Build from DescribeScalableTargets and DescribeScalingPolicies entries."""
        config = dict(policy["TargetTrackingScalingPolicyConfiguration"])
        config.pop("ResourceLabel", None)
        predefined = config.get("PredefinedMetricSpecification")
        if predefined is not None:
            config["PredefinedMetricSpecification"] = {
                "PredefinedMetricType": predefined["PredefinedMetricType"]
            }
        data = {
            "ScalableTarget": {
                "MinCapacity": target["MinCapacity"],
                "MaxCapacity": target["MaxCapacity"],
            },
            "TargetTrackingScalingPolicyConfiguration": config,
            "PolicyName": policy["PolicyName"],
            "ScalableDimension": target["ScalableDimension"],
        }
        return cls.from_dict(data)
