"""ScalingSnapshot: everything Application Auto Scaling (and the step policies' CloudWatch
alarms) holds for one resource, saved as JSON to be put back exactly by ``AutoScaling.restore``."""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tuner.errors import TunerError, read_json_file
from tuner.policy.resource import Resource

SNAPSHOT_VERSION = 1


def jsonable(value: Any) -> Any:
    """A boto3 response as JSON values: datetimes as ISO text, ResponseMetadata dropped."""
    if isinstance(value, dt.datetime):
        return value.isoformat()
    if isinstance(value, dict):
        return {k: jsonable(v) for k, v in value.items() if k != "ResponseMetadata"}
    if isinstance(value, list):
        return [jsonable(v) for v in value]
    return value


@dataclass(frozen=True)
class ScalingSnapshot:
    """Everything Application Auto Scaling holds for one resource, to put back exactly."""

    resource: Resource
    target: dict[str, Any] | None
    """The DescribeScalableTargets entry (None: nothing was registered)."""
    policies: tuple[dict[str, Any], ...] = ()
    scheduled_actions: tuple[dict[str, Any], ...] = ()
    alarms: tuple[dict[str, Any], ...] = ()
    """put-metric-alarm arguments of the CloudWatch alarms acting on the step policies."""
    taken_at: str = field(default_factory=lambda: dt.datetime.now(dt.UTC).isoformat())

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": SNAPSHOT_VERSION,
            "resource_id": self.resource.resource_id,
            "taken_at": self.taken_at,
            "target": self.target,
            "policies": list(self.policies),
            "scheduled_actions": list(self.scheduled_actions),
            "alarms": list(self.alarms),
        }

    def save(self, path: str | Path) -> Path:
        """Write atomically (a torn snapshot would make restore impossible)."""
        path = Path(path)
        tmp = path.with_name(path.name + ".tmp")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp.write_text(json.dumps(self.to_dict(), indent=2) + "\n", encoding="utf-8")
            tmp.replace(path)
        except OSError as e:
            tmp.unlink(missing_ok=True)  # never leave NAME.tmp behind
            raise TunerError(f"{path}: cannot write the snapshot ({e.strerror or e})") from e
        return path

    @classmethod
    def load(cls, path: str | Path) -> ScalingSnapshot:
        path = Path(path)
        data = read_json_file(path, TunerError, "snapshot")
        if not isinstance(data, dict) or data.get("version") != SNAPSHOT_VERSION:
            raise TunerError(f"{path}: not a tuner scaling snapshot (version {SNAPSHOT_VERSION})")
        try:
            snap = cls(
                resource=Resource.parse(data["resource_id"]),
                target=data["target"],
                policies=tuple(data["policies"]),
                scheduled_actions=tuple(data["scheduled_actions"]),
                alarms=tuple(data.get("alarms", ())),  # absent from snapshots before step scaling
                taken_at=data["taken_at"],
            )
        except (KeyError, TypeError) as e:
            raise TunerError(f"{path}: snapshot field {e} is missing or malformed") from e
        target = snap.target
        if target is not None:
            for key in ("MinCapacity", "MaxCapacity"):
                value = target.get(key) if isinstance(target, dict) else None
                if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                    raise TunerError(f"{path}: target.{key} must be an integer >= 0, got {value!r}")
        for i, policy in enumerate(snap.policies):
            if not isinstance(policy, dict) or not isinstance(policy.get("PolicyName"), str):
                raise TunerError(f"{path}: policies[{i}] must be an object with a PolicyName")
        return snap
