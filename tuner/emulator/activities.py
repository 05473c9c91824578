"""The scaling-activity log moto lacks, answered as DescribeScalingActivities.

Times are virtual epoch seconds. An activity is InProgress until its end (new instances in
service) and Successful from then on; the newest activity comes first, as AWS lists them.
"""

from __future__ import annotations

import threading
import uuid
from dataclasses import dataclass
from typing import Any

from tuner.errors import ValidationError

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
