"""What ``tuner apply`` would change: a live policy against the wanted one, field by field."""

from __future__ import annotations

import json
from typing import Any

from tuner.policy.policy import ScalingPolicy


def _flat_fields(policy: ScalingPolicy | None) -> dict[str, Any]:
    if policy is None:
        return {}
    config = policy.to_dict()["TargetTrackingScalingPolicyConfiguration"]
    metric = (
        policy.metric_type.value
        if policy.metric_type is not None
        else json.dumps(policy.customized_metric, sort_keys=True)
    )
    fields = {
        "MinCapacity": policy.min_capacity,
        "MaxCapacity": policy.max_capacity,
        "TargetValue": policy.target_value,
        "Metric": metric,
        "ScaleOutCooldown": config["ScaleOutCooldown"],
        "ScaleInCooldown": config["ScaleInCooldown"],
        "DisableScaleIn": policy.disable_scale_in,
    }
    for step in policy.step_policies:
        # one line per step policy: its configuration and alarm as the policy file writes them
        fields[f"StepScaling {step.name}"] = json.dumps(
            {**step.configuration(), "Alarm": step.alarm_dict()}, sort_keys=True
        )
    return fields


def policy_diff(
    live: ScalingPolicy | None, wanted: ScalingPolicy
) -> list[tuple[str, Any | None, Any]]:
    """(field, live value or None, wanted value) for every field, in the policy file's order."""
    old, new = _flat_fields(live), _flat_fields(wanted)
    return [(key, old.get(key), value) for key, value in new.items()]


def format_diff(live: ScalingPolicy | None, wanted: ScalingPolicy) -> str:
    """A readable field-by-field diff: ``TargetValue  240 -> 300``."""

    def show(v: Any) -> str:
        if v is None:
            return "(none)"
        if isinstance(v, bool):
            return str(v).lower()
        if isinstance(v, float):
            return f"{v:g}"
        return str(v)

    rows = policy_diff(live, wanted)
    width = max(len(k) for k, _, _ in rows)
    lines = []
    for key, old, new in rows:
        if old == new:
            lines.append(f"  {key:<{width}}  {show(new)}  (unchanged)")
        else:
            lines.append(f"  {key:<{width}}  {show(old)} -> {show(new)}")
    return "\n".join(lines)
