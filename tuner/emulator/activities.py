"""The scaling-activity log moto lacks, answered as DescribeScalingActivities.

Times are virtual epoch seconds. An activity is InProgress until its end (new instances in
service) and Successful from then on; the newest activity comes first, as AWS lists them.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from tuner.errors import ValidationError
from tuner.model.scaling import ScalingCause, ScalingEvent
from tuner.policy.step import StepScalingPolicy

_MAX_RESULTS = 50


@dataclass(frozen=True)
class Activity:
    """One scaling activity."""

    activity_id: str
    description: str
    cause: str
    start_v: float
    end_v: float
    to_capacity: int

    def to_aws(self, resource_id: str, dimension: str, now_v: float) -> dict[str, Any]:
        done = now_v >= self.end_v
        out: dict[str, Any] = {
            "ActivityId": self.activity_id,
            "ServiceNamespace": "sagemaker",
            "ResourceId": resource_id,
            "ScalableDimension": dimension,
            "Description": self.description,
            "Cause": self.cause,
            "StartTime": self.start_v,
            "StatusCode": "Successful" if done else "InProgress",
        }
        if done:
            out["EndTime"] = self.end_v
            out["StatusMessage"] = (
                f"Successfully set desired instance count to {self.to_capacity}. "
                "Change successfully fulfilled by sagemaker."
            )
        return out


class ActivityLog:
    """Scaling activities of one scalable target (thread-safe)."""

    def __init__(self, resource_id: str, dimension: str) -> None:
        self.resource_id = resource_id
        self.dimension = dimension
        self._items: list[Activity] = []
        self._lock = threading.Lock()

    def add(
        self, description: str, cause: str, start_v: float, end_v: float, to_capacity: int
    ) -> Activity:
        activity = Activity(str(uuid.uuid4()), description, cause, start_v, end_v, to_capacity)
        with self._lock:
            self._items.append(activity)
        return activity

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)

    def describe(self, params: dict[str, Any], now_v: float) -> dict[str, Any]:
        """The DescribeScalingActivities response for these request parameters."""
        namespace = params.get("ServiceNamespace")
        if namespace is None:
            raise ValidationError("ServiceNamespace is required")
        max_results = int(params.get("MaxResults") or _MAX_RESULTS)
        if not 1 <= max_results <= _MAX_RESULTS:
            raise ValidationError(f"MaxResults must be in 1..{_MAX_RESULTS}, got {max_results}")
        token = params.get("NextToken")
        try:
            start = int(token) if token else 0
        except ValueError:
            raise ValidationError(f"NextToken is invalid: {token!r}") from None
        matches = (
            namespace == "sagemaker"
            and params.get("ResourceId") in (None, self.resource_id)
            and params.get("ScalableDimension") in (None, self.dimension)
        )
        with self._lock:
            items = list(reversed(self._items)) if matches else []
        page = items[start : start + max_results]
        out: dict[str, Any] = {
            "ScalingActivities": [a.to_aws(self.resource_id, self.dimension, now_v) for a in page]
        }
        if start + max_results < len(items):
            out["NextToken"] = str(start + max_results)
        return out


def activity_cause(
    ev: ScalingEvent,
    resource_id: str,
    registered: tuple[int, int] | None,
    fired: Sequence[str],
    steps: Sequence[StepScalingPolicy],
) -> str:
    """The Cause of the activity a controller event becomes, worded as AWS words it."""
    if ev.cause is ScalingCause.REGISTERED:
        lo, hi = registered or (ev.to_capacity, ev.to_capacity)
        return f"scalable target range set to {lo}..{hi}"
    if ev.cause is ScalingCause.SCHEDULED:
        lo, hi = registered or (ev.to_capacity, ev.to_capacity)
        return f"scheduled action {', '.join(fired) or '?'} set the range to {lo}..{hi}"
    if ev.cause in (ScalingCause.ALARM_HIGH, ScalingCause.ALARM_LOW):
        alarm = f"TargetTracking-{resource_id}-{ev.cause.value}"
    elif ev.cause is ScalingCause.STEP_ALARM:
        alarm = {s.name: s.alarm_name for s in steps}.get(ev.policy or "", ev.cause.value)
    else:
        alarm = ev.cause.value
    return f"monitor alarm {alarm} in state ALARM triggered policy {ev.policy}"


def alarm_changes(
    steps: Sequence[StepScalingPolicy], on: np.ndarray, states: dict[str, bool]
) -> list[tuple[str, bool, str]]:
    """(alarm name, in ALARM, reason) of step alarms whose state changed at this step.

    ``on``: the controller's step-alarm states of the candidate; ``states`` the last states set
    in CloudWatch (updated here).
    """
    out = []
    for step, state in zip(steps, on, strict=False):
        name, now = step.alarm_name, bool(state)
        before = states.setdefault(name, False)  # new: as moto created it (OK)
        if before is not now:
            a = step.alarm
            m_of_n = f"{a.datapoints_to_alarm} of the last {a.evaluation_periods}"
            reason = (
                f"Threshold Crossed: at least {m_of_n} datapoints {a.comparison.value} "
                f"{a.threshold:g} (tuner emulator)"
                if now
                else f"Threshold not crossed: fewer than {m_of_n} datapoints "
                f"{a.comparison.value} {a.threshold:g} (tuner emulator)"
            )
            states[name] = now
            out.append((name, now, reason))
    return out
