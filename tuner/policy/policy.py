"""ScalingPolicy: a scalable target with its target-tracking and step policies, frozen.

The policy file (``*.policy.json``) uses AWS field names so it reads like the console and works
with the AWS CLI::

    {"ScalableTarget": {"MinCapacity": 1, "MaxCapacity": 8},
     "TargetTrackingScalingPolicyConfiguration": {
       "TargetValue": 300.0,
       "PredefinedMetricSpecification": {
         "PredefinedMetricType": "SageMakerVariantInvocationsPerInstance"},
       "ScaleOutCooldown": 60, "ScaleInCooldown": 300, "DisableScaleIn": false}}

A file holds target tracking, step policies (``StepScalingPolicies``, each with its CloudWatch
alarm, :mod:`tuner.policy.step`) or both: at least one scaling policy. Parsing is
:mod:`tuner.policy.policy_file`. Optional top-level keys: ``PolicyName`` (of the
target-tracking policy), ``ScalableDimension`` (which says whether the policy is for an endpoint
variant or an inference component) and ``ScheduledActions`` (scheduled MinCapacity/MaxCapacity
changes of the target, :mod:`tuner.policy.schedule`; when the key is there the file owns the
target's scheduled actions, when it is absent they are left alone).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import numbers
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tuner.errors import PolicyError, plain, read_json_file
from tuner.policy.fields import integer
from tuner.policy.policy_file import aws_policy_file, policy_fields
from tuner.policy.resource import Resource, ResourceKind
from tuner.policy.schedule import ScheduledScalingAction, check_actions
from tuner.policy.step import StepScalingPolicy
from tuner.policy.tracking import (
    DEFAULT_COOLDOWN_S,
    DEFAULT_POLICY_NAME,
    MAX_COOLDOWN_S,
    MAX_TARGET_VALUE,
    MIN_TARGET_VALUE,
    MetricType,
)

SERVICE_NAMESPACE = "sagemaker"
# MinCapacity/MaxCapacity are 32-bit integers in Application Auto Scaling's model.
MAX_RESOURCE_CAPACITY = 2**31 - 1


@dataclass(frozen=True, kw_only=True)
class ScalingPolicy:
    """A scalable target's range plus its target-tracking policy, step policies, or both.

    >>> ScalingPolicy(min_capacity=1, max_capacity=8, target_value=300.0).label
    't300-min1-max8-out300-in300'

    Without ``target_value`` the target has step policies only; the target-tracking fields
    (metric, cooldowns, DisableScaleIn, name) then keep their defaults and ``metric_type`` is None.
    """

    min_capacity: int
    """MinCapacity of the scalable target."""
    max_capacity: int
    """MaxCapacity of the scalable target."""
    target_value: float | None = None
    """TargetValue of the metric (per instance per period for InvocationsPerInstance); None: no
    target-tracking policy (then ``step_policies`` must hold one)."""
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
        set_(self, "step_policies", steps)
        tt = "TargetTrackingScalingPolicyConfiguration"
        if self.target_value is None:
            self._check_no_target_tracking(tt)
        names = self.policy_names
        if len(set(names)) != len(names):
            raise PolicyError(f"PolicyName must differ between the policies, got {names}")
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
        if self.target_value is not None:
            self._check_target_tracking(tt)
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

    def _check_no_target_tracking(self, tt: str) -> None:
        """A step-only target: at least one step policy, the target-tracking fields unset."""
        if not self.step_policies:
            raise PolicyError(
                f"a policy file needs a scaling policy: {tt} (TargetValue), "
                "StepScalingPolicies, or both"
            )
        defaults = {
            "customized_metric": (None, f"{tt}.CustomizedMetricSpecification"),
            "scale_out_cooldown_s": (DEFAULT_COOLDOWN_S, f"{tt}.ScaleOutCooldown"),
            "scale_in_cooldown_s": (DEFAULT_COOLDOWN_S, f"{tt}.ScaleInCooldown"),
            "disable_scale_in": (False, f"{tt}.DisableScaleIn"),
            "name": (DEFAULT_POLICY_NAME, "PolicyName (of the target-tracking policy)"),
        }
        for attr, (default, key) in defaults.items():
            if getattr(self, attr) != default:
                raise PolicyError(f"{key} needs {tt}.TargetValue (no target tracking is given)")
        if self.metric_type not in (None, MetricType.INVOCATIONS_PER_INSTANCE):
            # the dataclass default cannot be told from an explicit one: only it passes
            raise PolicyError(
                f"{tt}.PredefinedMetricSpecification needs {tt}.TargetValue "
                "(no target tracking is given)"
            )
        object.__setattr__(self, "metric_type", None)

    def _check_target_tracking(self, tt: str) -> None:
        set_ = object.__setattr__
        if isinstance(self.target_value, bool) or not isinstance(self.target_value, numbers.Real):
            raise PolicyError(
                f"{tt}.TargetValue must be a number, got {plain(self.target_value)!r}"
            )
        target = float(self.target_value)
        set_(self, "target_value", target)
        if not (math.isfinite(target) and target > 0):
            raise PolicyError(f"{tt}.TargetValue > 0 must hold, got {target:g}")
        if not MIN_TARGET_VALUE <= target <= MAX_TARGET_VALUE:
            raise PolicyError(
                f"{tt}.TargetValue must be in {MIN_TARGET_VALUE:g}..{MAX_TARGET_VALUE:g} "
                f"(Application Auto Scaling's range), got {target:g}"
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

    # -- derived -------------------------------------------------------------------------------

    @property
    def tracks_target(self) -> bool:
        """Whether the target has a target-tracking policy (else step policies only)."""
        return self.target_value is not None

    @property
    def policy_names(self) -> list[str]:
        """PolicyName of every scaling policy the file puts: target tracking's first."""
        return [*([self.name] if self.tracks_target else []), *(s.name for s in self.step_policies)]

    @property
    def metric_period_s(self) -> int:
        """Alarm period of the tracked metric (customized metrics: 60 s; without target
        tracking, the shortest period of the step policies' alarms)."""
        if self.target_value is None:
            return min(s.alarm.period_s for s in self.step_policies)
        return self.metric_type.period_s if self.metric_type is not None else 60

    @property
    def label(self) -> str:
        """Short stable name for tables and folders: ``t300-min1-max8-out60-in300``.

        Without target tracking: ``step-min1-max8-s1800+2`` (the step policies' labels).
        """
        if self.target_value is None:
            text = f"step-min{self.min_capacity}-max{self.max_capacity}"
        else:
            text = (
                f"t{self.target_value:g}-min{self.min_capacity}-max{self.max_capacity}"
                f"-out{self.scale_out_cooldown_s}-in{self.scale_in_cooldown_s}"
            )
        if self.metric_type is MetricType.CONCURRENT_REQUESTS_PER_MODEL:
            text = "crpm-" + text
        elif self.metric_type is None and self.tracks_target:
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
        latency, not rate alone, and step policies alone have no resting point: they start at
        MinCapacity.
        """
        if self.target_value is None or self.metric_type is not MetricType.INVOCATIONS_PER_INSTANCE:
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

    def target_tracking_configuration(self) -> dict[str, Any]:
        """TargetTrackingScalingPolicyConfiguration as PutScalingPolicy takes it."""
        if self.target_value is None:
            raise PolicyError("the policy has no target tracking (step policies only)")
        config: dict[str, Any] = {"TargetValue": self.target_value}
        config.update(self._metric_spec())
        config.update(
            ScaleOutCooldown=self.scale_out_cooldown_s,
            ScaleInCooldown=self.scale_in_cooldown_s,
            DisableScaleIn=self.disable_scale_in,
        )
        return config

    def to_dict(self) -> dict[str, Any]:
        """The policy file's JSON object (AWS field names)."""
        out: dict[str, Any] = {
            "ScalableTarget": {"MinCapacity": self.min_capacity, "MaxCapacity": self.max_capacity},
        }
        if self.tracks_target:
            out["TargetTrackingScalingPolicyConfiguration"] = self.target_tracking_configuration()
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
        """Parse a policy file's JSON object (:mod:`tuner.policy.policy_file`)."""
        return cls(**policy_fields(data))

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
        """Keyword arguments of ``put_scaling_policy`` for the target-tracking policy."""
        self.check_resource(resource)
        config = self.target_tracking_configuration()
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
        return cls.from_dict(aws_policy_file(target, policy))
