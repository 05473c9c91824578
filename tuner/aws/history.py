"""What AWS recorded about a variant's scaling: activities, policies in force, alarms as created.

:func:`read_scaling_history` reads DescribeScalingActivities (every page, newest first, down to
the window's start), DescribeScalableTargets / DescribeScalingPolicies, and DescribeAlarms for
the alarms target tracking created (``TargetTracking-<resource id>-AlarmHigh-...`` and
``-AlarmLow-...``). The result is a JSON document (``*.scaling.json`` beside ``tuner collect``'s
CSV) that :mod:`tuner.model.recording` turns into a backtest's :class:`Recording`.

AWS keeps no history of a policy's configuration: a policy's ``CreationTime`` is when it was last
put. So the policies in force are kept as spans, each from the ``CreationTime`` of the policies
it holds; a collection merged with an earlier one (:func:`merge_spans`) keeps the earlier spans,
and the backtest plays each span for its own part of the window.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from tuner.aws.autoscaling import AutoScaling
from tuner.aws.clients import AwsSession, translate_client_error
from tuner.errors import AwsError, TunerError, read_json_file
from tuner.model.recording import parse_time
from tuner.policy.policy import SERVICE_NAMESPACE
from tuner.policy.resource import Resource

HISTORY_VERSION = 1
SUFFIX = ".scaling.json"


def _iso(value: Any) -> Any:
    if isinstance(value, dt.datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=dt.UTC)
        return value.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")
    if isinstance(value, dict):
        return {k: _iso(v) for k, v in value.items() if k != "ResponseMetadata"}
    if isinstance(value, list):
        return [_iso(v) for v in value]
    return value


def _pages(client: Any, operation: str, key: str, **kwargs: Any) -> Iterator[dict[str, Any]]:
    try:
        for page in client.get_paginator(operation).paginate(**kwargs):
            yield from page.get(key, [])
    except (ClientError, BotoCoreError) as e:
        raise translate_client_error(e, operation) from e


def read_activities(
    client: Any,
    resource: Resource,
    start: dt.datetime,
    end: dt.datetime,
    before: list[dict[str, Any]] | None = None,
) -> list[dict[str, Any]]:
    """Scaling activities started in [start, end), oldest first, read across every page.

    ``before`` receives the newest activity started before ``start`` (the capacity the window
    starts with), if there is one.
    """
    t0, t1 = start.timestamp(), end.timestamp()
    out: list[dict[str, Any]] = []
    try:
        for a in _pages(
            client,
            "describe_scaling_activities",
            "ScalingActivities",
            ServiceNamespace=SERVICE_NAMESPACE,
            ResourceId=resource.resource_id,
            ScalableDimension=resource.scalable_dimension,
        ):
            started = parse_time(a["StartTime"], "ScalingActivities[].StartTime")
            if started < t0:
                if before is not None:
                    before.append(_iso(a))
                break  # newest first [DOC]: the rest are older still
            if started < t1 and a.get("ResourceId", resource.resource_id) == resource.resource_id:
                out.append(_iso(a))
    except NotImplementedError as e:  # moto in-process lacks the call
        raise AwsError(f"DescribeScalingActivities is not available here: {e}") from e
    return sorted(out, key=lambda a: parse_time(a["StartTime"], "StartTime"))


def read_alarms(client: Any, resource: Resource) -> list[dict[str, Any]]:
    """The CloudWatch alarms target tracking created for this resource, every page."""
    prefix = f"TargetTracking-{resource.resource_id}-"
    return [
        _iso(a)
        for a in _pages(
            client,
            "describe_alarms",
            "MetricAlarms",
            AlarmNamePrefix=prefix,
            AlarmTypes=["MetricAlarm"],
        )
        if str(a.get("AlarmName", "")).startswith(prefix)
    ]


def read_scaling_history(
    session: AwsSession,
    resource: Resource,
    start: dt.datetime,
    end: dt.datetime,
    *,
    autoscaling_client: Any | None = None,
    cloudwatch_client: Any | None = None,
    require_activities: bool = True,
) -> dict[str, Any]:
    """The scaling history document of ``resource`` over [start, end).

    Without ``require_activities`` a backend that lacks DescribeScalingActivities (moto) gives
    no activities and the reason in ``activities_unavailable``; a backtest refuses such a file.
    """
    aas = autoscaling_client or session.client("application-autoscaling")
    cw = cloudwatch_client or session.client("cloudwatch")
    adapter = AutoScaling(aas)
    target = adapter.describe_target(resource)
    policies = adapter.describe_policies(resource) if target is not None else []
    span_from = max(
        (parse_time(p["CreationTime"], "CreationTime") for p in policies if "CreationTime" in p),
        default=start.timestamp(),
    )
    spans = (
        [{"from": _iso(dt.datetime.fromtimestamp(span_from, dt.UTC)), "target": target,
          "policies": policies}]
        if target is not None and policies
        else []
    )  # fmt: skip
    missing = None
    prior: list[dict[str, Any]] = []
    try:
        activities = read_activities(aas, resource, start, end, prior)
    except AwsError as e:
        if require_activities:
            raise
        activities, missing = [], str(e)
    return {
        "version": HISTORY_VERSION,
        "resource_id": resource.resource_id,
        "window": {"start": _iso(start), "end": _iso(end)},
        "collected_at": _iso(dt.datetime.now(dt.UTC)),
        "target": target,
        "policies": policies,
        "policy_spans": spans,
        "activities": activities,
        "activity_before": prior[0] if prior else None,
        "activities_unavailable": missing,
        "alarms": read_alarms(cw, resource),
    }


def _span_key(span: dict[str, Any]) -> str:
    target = span.get("target") or {}
    policies = sorted(
        (
            p.get("PolicyName"),
            json.dumps(p.get("TargetTrackingScalingPolicyConfiguration"), sort_keys=True),
        )
        for p in span.get("policies", [])
    )
    return json.dumps([target.get("MinCapacity"), target.get("MaxCapacity"), policies])


def merge_spans(earlier: list[dict[str, Any]], later: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Policy spans of two collections: the earlier ones before the later ones' start, deduped."""
    if not later:
        return list(earlier)
    first = parse_time(later[0]["from"], "policy_spans[].from")
    kept = [s for s in earlier if parse_time(s["from"], "policy_spans[].from") < first]
    merged: list[dict[str, Any]] = []
    for span in kept + list(later):
        if merged and _span_key(merged[-1]) == _span_key(span):
            continue  # the same configuration collected twice: one span from its first time
        merged.append(span)
    return merged


def save_history(doc: dict[str, Any], path: str | Path) -> Path:
    """Write atomically; merge policy spans with an earlier document at the same path."""
    path = Path(path)
    if path.is_file():
        try:
            old = load_history(path)
        except TunerError:
            old = None
        if old is not None and old.get("resource_id") == doc.get("resource_id"):
            doc = dict(doc, policy_spans=merge_spans(old["policy_spans"], doc["policy_spans"]))
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(doc, indent=1, default=str) + "\n", encoding="utf-8")
    tmp.replace(path)
    return path


def load_history(path: str | Path) -> dict[str, Any]:
    """A ``*.scaling.json`` document, its version checked."""
    path = Path(path)
    doc = read_json_file(path, TunerError, "scaling history")
    if not isinstance(doc, dict) or doc.get("version") != HISTORY_VERSION:
        raise TunerError(f"{path}: not a tuner scaling history (version {HISTORY_VERSION})")
    for key in ("resource_id", "policy_spans", "activities", "alarms"):
        if key not in doc:
            raise TunerError(f"{path}: scaling history field {key!r} is missing")
    return doc
