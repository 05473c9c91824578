"""What ``tuner apply`` would change: a live policy against the wanted one, field by field."""

from __future__ import annotations

import json
from typing import Any

from tuner.policy.policy import ScalingPolicy
from tuner.policy.schedule import ScheduledScalingAction


def _action_summary(action: ScheduledScalingAction) -> str:
    """One line per scheduled action: schedule, zone, new range, window."""
    target = action.to_dict()["ScalableTargetAction"]
    parts = [action.schedule, action.timezone or "UTC"]
    parts += [f"{k.removesuffix('Capacity')} {v}" for k, v in target.items()]
    for key, value in (("from", action.start_time), ("until", action.end_time)):
        if value is not None:
            parts.append(f"{key} {value.isoformat()}")
    return " ".join(parts)


def _flat_fields(policy: ScalingPolicy | None, *, schedules: bool = True) -> dict[str, Any]:
    if policy is None:
        return {}
    out: dict[str, Any] = {
        "MinCapacity": policy.min_capacity,
        "MaxCapacity": policy.max_capacity,
    }
    if policy.tracks_target:
        # target tracking's fields only when it exists: a step-only side shows them as (none)
        metric = (
            policy.metric_type.value
            if policy.metric_type is not None
            else json.dumps(policy.customized_metric, sort_keys=True)
        )
        out.update(
            TargetValue=policy.target_value,
            Metric=metric,
            ScaleOutCooldown=policy.scale_out_cooldown_s,
            ScaleInCooldown=policy.scale_in_cooldown_s,
            DisableScaleIn=policy.disable_scale_in,
        )
    for step in policy.step_policies:
        # one line per step policy: its configuration and alarm as the policy file writes them
        out[f"StepScaling {step.name}"] = json.dumps(
            {**step.configuration(), "Alarm": step.alarm_dict()}, sort_keys=True
        )
    if schedules:
        for action in policy.scheduled_actions or ():
            out[f"ScheduledAction {action.name}"] = _action_summary(action)
    return out


def policy_diff(
    live: ScalingPolicy | None,
    wanted: ScalingPolicy,
    *,
    live_actions: tuple[ScheduledScalingAction, ...] | None = None,
) -> list[tuple[str, Any | None, Any]]:
    """(field, live value or None, wanted value) for every field, in the policy file's order.

    Scheduled actions are compared only when the wanted file manages them
    (``ScheduledActions`` present); a live one the file drops is listed with wanted None.
    ``live_actions``: the target's scheduled actions when they are not on ``live`` (e.g. a
    target with actions but no policy yet).
    """
    manage = wanted.scheduled_actions is not None
    old, new = _flat_fields(live, schedules=manage), _flat_fields(wanted)
    if manage and live_actions is not None and (live is None or live.scheduled_actions is None):
        old.update((f"ScheduledAction {a.name}", _action_summary(a)) for a in live_actions)
    rows = [(key, old.get(key), value) for key, value in new.items()]
    rows += [(key, value, None) for key, value in old.items() if key not in new]
    return rows


def format_diff(
    live: ScalingPolicy | None,
    wanted: ScalingPolicy,
    *,
    live_actions: tuple[ScheduledScalingAction, ...] | None = None,
) -> str:
    """A readable field-by-field diff: ``TargetValue  240 -> 300``."""

    def show(v: Any) -> str:
        if v is None:
            return "(none)"
        if isinstance(v, bool):
            return str(v).lower()
        if isinstance(v, float):
            return f"{v:g}"
        return str(v)

    rows = policy_diff(live, wanted, live_actions=live_actions)
    width = max(len(k) for k, _, _ in rows)
    lines = []
    for key, old, new in rows:
        if new is None and key.startswith("ScheduledAction "):
            lines.append(f"  {key:<{width}}  {show(old)} -> (deleted)")
        elif old == new:
            lines.append(f"  {key:<{width}}  {show(new)}  (unchanged)")
        else:
            lines.append(f"  {key:<{width}}  {show(old)} -> {show(new)}")
    return "\n".join(lines)
