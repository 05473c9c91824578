"""Scheduled actions of a policy file: ``ScheduledActions``, in AWS's field names.

::

    "ScheduledActions": [
      {"ScheduledActionName": "business-hours-floor",
       "Schedule": "cron(0 7 ? * MON-FRI *)", "Timezone": "Europe/Paris",
       "ScalableTargetAction": {"MinCapacity": 4}},
      {"ScheduledActionName": "night",
       "Schedule": "cron(0 21 ? * MON-FRI *)", "Timezone": "Europe/Paris",
       "ScalableTargetAction": {"MinCapacity": 1}}]

Optional ``StartTime``/``EndTime`` are ISO-8601 UTC instants. Each action sets MinCapacity,
MaxCapacity or both; at its time Application Auto Scaling moves the capacity into the new range.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, tzinfo
from typing import Any

from tuner.errors import PolicyError
from tuner.policy.cron import Schedule, fire_times, parse_schedule, timezone

# PutScheduledAction: ScheduledActionName is 1..256 characters of [\u0020-\uD7FF...] without
# ":" or "/" in practice (it becomes part of the ARN); we keep to a portable subset.
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,255}$")
_KEYS = {
    "ScheduledActionName",
    "Schedule",
    "Timezone",
    "ScalableTargetAction",
    "StartTime",
    "EndTime",
}


def _instant(value: Any, where: str) -> datetime:
    if isinstance(value, datetime):
        moment = value
    elif isinstance(value, int | float) and not isinstance(value, bool):
        moment = datetime.fromtimestamp(float(value), tz=UTC)
    elif isinstance(value, str):
        try:
            moment = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        except ValueError:
            raise PolicyError(f"{where} must be an ISO-8601 date and time, got {value!r}") from None
    else:
        raise PolicyError(f"{where} must be an ISO-8601 date and time, got {value!r}")
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).astimezone(UTC)


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


@dataclass(frozen=True, kw_only=True)
class ScheduledScalingAction:
    """One PutScheduledAction: a schedule and the new MinCapacity and/or MaxCapacity.

    >>> a = ScheduledScalingAction(name="day", schedule="cron(0 7 * * ? *)", min_capacity=4)
    >>> a.to_dict()["ScalableTargetAction"]
    {'MinCapacity': 4}
    """

    name: str
    """ScheduledActionName (unique per scalable target)."""
    schedule: str
    """``at(...)``, ``rate(...)`` or ``cron(...)``."""
    timezone: str | None = None
    """IANA zone the at/cron expression is read in; None: UTC."""
    min_capacity: int | None = None
    max_capacity: int | None = None
    start_time: datetime | None = None
    end_time: datetime | None = None
    parsed: Schedule = field(init=False, repr=False, compare=False, hash=False)

    def __post_init__(self) -> None:
        where = f"ScheduledActions[{self.name!r}]"
        if not isinstance(self.name, str) or not _NAME.match(self.name):
            raise PolicyError(
                "ScheduledActions: ScheduledActionName must be 1-256 letters, digits, '.', '_' "
                f"or '-', starting with a letter or digit, got {self.name!r}"
            )
        object.__setattr__(self, "parsed", parse_schedule(self.schedule, f"{where}.Schedule"))
        if self.timezone is not None:
            if not isinstance(self.timezone, str):
                raise PolicyError(f"{where}.Timezone must be a string, got {self.timezone!r}")
            timezone(self.timezone, f"{where}.Timezone")
        for attr, key in (("min_capacity", "MinCapacity"), ("max_capacity", "MaxCapacity")):
            value = getattr(self, attr)
            if value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise PolicyError(
                    f"{where}.ScalableTargetAction.{key} must be an integer >= 0, got {value!r}"
                )
        if self.min_capacity is None and self.max_capacity is None:
            raise PolicyError(
                f"{where}.ScalableTargetAction must set MinCapacity, MaxCapacity or both"
            )
        if (
            self.min_capacity is not None
            and self.max_capacity is not None
            and self.min_capacity > self.max_capacity
        ):
            raise PolicyError(
                f"{where}.ScalableTargetAction: MinCapacity <= MaxCapacity must hold, "
                f"got {self.min_capacity} > {self.max_capacity}"
            )
        for attr, key in (("start_time", "StartTime"), ("end_time", "EndTime")):
            value = getattr(self, attr)
            if value is not None:
                object.__setattr__(self, attr, _instant(value, f"{where}.{key}"))
        if self.start_time and self.end_time and self.start_time >= self.end_time:
            raise PolicyError(
                f"{where}: StartTime < EndTime must hold, got {_iso(self.start_time)} >= "
                f"{_iso(self.end_time)}"
            )

    @property
    def zone(self) -> tzinfo:
        return timezone(self.timezone)

    def fire_times(self, start: datetime, end: datetime) -> list[datetime]:
        """UTC instants in [start, end) at which the action runs."""
        return fire_times(
            self.parsed,
            start,
            end,
            zone=self.zone,
            start_time=self.start_time,
            end_time=self.end_time,
        )

    # -- shapes --------------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """The policy file's entry (also CloudFormation's ScheduledAction property)."""
        out: dict[str, Any] = {"ScheduledActionName": self.name, "Schedule": self.schedule}
        if self.timezone is not None:
            out["Timezone"] = self.timezone
        target: dict[str, int] = {}
        if self.min_capacity is not None:
            target["MinCapacity"] = self.min_capacity
        if self.max_capacity is not None:
            target["MaxCapacity"] = self.max_capacity
        out["ScalableTargetAction"] = target
        if self.start_time is not None:
            out["StartTime"] = _iso(self.start_time)
        if self.end_time is not None:
            out["EndTime"] = _iso(self.end_time)
        return out

    @classmethod
    def from_dict(cls, data: Any, where: str = "ScheduledActions[]") -> ScheduledScalingAction:
        if not isinstance(data, Mapping):
            raise PolicyError(f"{where} must be a JSON object, got {type(data).__name__}")
        unknown = sorted(set(data) - _KEYS)
        if unknown:
            raise PolicyError(
                f"{where}: unknown key {unknown[0]!r} (allowed: {', '.join(sorted(_KEYS))})"
            )
        for key in ("ScheduledActionName", "Schedule", "ScalableTargetAction"):
            if key not in data:
                raise PolicyError(f"{where}.{key} is required")
        target = data["ScalableTargetAction"]
        if not isinstance(target, Mapping):
            raise PolicyError(f"{where}.ScalableTargetAction must be a JSON object")
        extra = sorted(set(target) - {"MinCapacity", "MaxCapacity"})
        if extra:
            raise PolicyError(
                f"{where}.ScalableTargetAction: unknown key {extra[0]!r} "
                "(allowed: MaxCapacity, MinCapacity)"
            )
        return cls(
            name=data["ScheduledActionName"],
            schedule=data["Schedule"],
            timezone=data.get("Timezone"),
            min_capacity=target.get("MinCapacity"),
            max_capacity=target.get("MaxCapacity"),
            start_time=data.get("StartTime"),
            end_time=data.get("EndTime"),
        )

    @classmethod
    def from_aws(cls, entry: Mapping[str, Any]) -> ScheduledScalingAction:
        """From a DescribeScheduledActions entry (AWS's computed fields ignored)."""
        keep = {k: entry[k] for k in _KEYS if entry.get(k) is not None}
        if keep.get("Timezone") in ("UTC", "Etc/UTC"):
            keep.pop("Timezone")
        return cls.from_dict(keep, f"scheduled action {entry.get('ScheduledActionName')!r}")

    def put_args(self) -> dict[str, Any]:
        """PutScheduledAction keyword arguments, without the resource's three."""
        args = self.to_dict()
        for key in ("StartTime", "EndTime"):
            if key in args:
                args[key] = getattr(self, "start_time" if key == "StartTime" else "end_time")
        return args


def check_actions(actions: tuple[ScheduledScalingAction, ...]) -> None:
    """Names are unique per target (AWS's rule)."""
    seen: set[str] = set()
    for a in actions:
        if a.name in seen:
            raise PolicyError(f"ScheduledActions: ScheduledActionName {a.name!r} appears twice")
        seen.add(a.name)
