"""A backtest's :class:`Recording` from what ``tuner collect`` saves (or reads live).

Inputs: the per-minute history (``timestamp,invocations,instances``) and the scaling history
document (``*.scaling.json``: activities, policy spans, alarms; see :mod:`tuner.aws.history`).
The alarms target tracking created override the model's alarm shape where they differ
(:func:`choices_from_alarms`), and each difference becomes a sentence of the report.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

import numpy as np
import pandas as pd

from tuner.errors import TunerError, ValidationError
from tuner.model.backtest import MINUTE_S, PolicySpan, RecordedActivity, Recording
from tuner.model.scaling import CONCURRENCY_TYPES, ModelChoices
from tuner.policy.policy import ScalingPolicy

_CAPACITY_RE_WORDS = ("Setting desired instance count to ", "Setting desired count to ")


def parse_time(value: Any, where: str) -> float:
    """Epoch seconds from an ISO-8601 string, a datetime or a number."""
    if isinstance(value, dt.datetime):
        return (value if value.tzinfo else value.replace(tzinfo=dt.UTC)).timestamp()
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str):
        try:
            t = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            pass
        else:
            return (t if t.tzinfo else t.replace(tzinfo=dt.UTC)).timestamp()
    raise TunerError(f"{where} must be an ISO-8601 time, got {value!r}")


def to_capacity(activity: Mapping[str, Any]) -> int | None:
    """N of "Setting desired instance count to N." (the Description AWS writes), else None."""
    text = str(activity.get("Description", ""))
    for words in _CAPACITY_RE_WORDS:
        if words in text:
            tail = text.split(words, 1)[1].rstrip(". ")
            return int(tail) if tail.isdigit() else None
    return None


def activities_from(doc: Mapping[str, Any]) -> tuple[RecordedActivity, ...]:
    out = []
    for i, a in enumerate(doc.get("activities", [])):
        n = to_capacity(a)
        if n is None:
            continue  # not a capacity change (e.g. a failed registration)
        end = a.get("EndTime")
        out.append(
            RecordedActivity(
                start_s=parse_time(a.get("StartTime"), f"activities[{i}].StartTime"),
                end_s=None if end is None else parse_time(end, f"activities[{i}].EndTime"),
                to_capacity=n,
                status=str(a.get("StatusCode", "Successful")),
                cause=str(a.get("Cause", "")),
            )
        )
    return tuple(sorted(out, key=lambda a: a.start_s))


def spans_from(doc: Mapping[str, Any]) -> tuple[PolicySpan, ...]:
    """The target-tracking policies of each span (others are not modelled and are skipped)."""
    spans = []
    for i, span in enumerate(doc.get("policy_spans", [])):
        target = span.get("target") or {}
        try:
            policies = tuple(
                ScalingPolicy.from_aws(target, p)
                for p in span.get("policies", [])
                if p.get("PolicyType") == "TargetTrackingScaling"
            )
        except (KeyError, TypeError, AttributeError) as e:
            raise ValidationError(
                f"policy_spans[{i}]: field {e} is missing or malformed (as DescribeScalableTargets"
                " and DescribeScalingPolicies give them)"
            ) from e
        if policies:
            spans.append(PolicySpan(parse_time(span["from"], f"policy_spans[{i}].from"), policies))
    if not spans:
        raise ValidationError(
            "the scaling history holds no target-tracking policy: nothing to backtest"
        )
    return tuple(sorted(spans, key=lambda s: s.from_s))


def choices_from_alarms(
    alarms: Sequence[Mapping[str, Any]],
    policy: ScalingPolicy,
    defaults: ModelChoices,
) -> tuple[ModelChoices, tuple[str, ...]]:
    """The model's alarm shape taken from the alarms AWS created, and what differed.

    AlarmHigh gives ``high_datapoints`` (DatapointsToAlarm, else EvaluationPeriods); AlarmLow
    gives ``low_datapoints`` (or the high-resolution count) and ``low_ratio`` (its threshold
    over the target). The model evaluates "N of N": an "M of N" alarm is modelled as M of M.
    """
    conc = policy.metric_type in CONCURRENCY_TYPES
    notes: list[str] = []
    choices = defaults
    found = {"AlarmHigh": False, "AlarmLow": False}
    for alarm in alarms:
        name = str(alarm.get("AlarmName", ""))
        which = "AlarmHigh" if "-AlarmHigh-" in name else "AlarmLow" if "-AlarmLow-" in name else ""
        if not which or found[which]:
            continue
        found[which] = True
        n = int(alarm.get("DatapointsToAlarm") or alarm.get("EvaluationPeriods") or 0)
        of = int(alarm.get("EvaluationPeriods") or n)
        if n < 1:
            continue
        if n != of:
            notes.append(
                f"{which} alarms on {n} of {of} datapoints; the model evaluates {n} of {n}"
            )
        if which == "AlarmHigh":
            if n != defaults.high_datapoints:
                notes.append(
                    f"AlarmHigh as created needs {n} datapoints (model default "
                    f"{defaults.high_datapoints}): the model uses {n}"
                )
                choices = replace(choices, high_datapoints=n)
            continue
        field = "low_datapoints_high_resolution" if conc else "low_datapoints"
        if n != getattr(defaults, field):
            notes.append(
                f"AlarmLow as created needs {n} datapoints (model default "
                f"{getattr(defaults, field)}): the model uses {n}"
            )
            choices = replace(choices, **{field: n})
        threshold = alarm.get("Threshold")
        target = policy.target_value
        if isinstance(threshold, (int, float)) and target is not None and target > 0:
            ratio = round(float(threshold) / target, 4)
            if 0 < ratio <= 1 and not math.isclose(ratio, defaults.low_ratio, rel_tol=1e-3):
                notes.append(
                    f"AlarmLow as created fires below {ratio:g} x the target (model default "
                    f"{defaults.low_ratio:g}): the model uses {ratio:g}"
                )
                choices = replace(choices, low_ratio=ratio)
    for which, seen in found.items():
        if not seen:
            notes.append(f"no {which} alarm found for the policy: the model's default shape used")
    return choices, tuple(notes)


def recording_from(
    history: pd.DataFrame, doc: Mapping[str, Any], *, defaults: ModelChoices
) -> Recording:
    """A Recording from the collected CSV (as a DataFrame) and the scaling history document."""
    for column in ("timestamp", "invocations"):
        if column not in history.columns:
            raise ValidationError(f"history must have a {column!r} column, got {list(history)}")
    stamps = np.array(
        [parse_time(v, "history.timestamp") for v in history["timestamp"]], dtype=float
    )
    if len(stamps) < 2:
        raise ValidationError(f"history needs at least 2 rows, got {len(stamps)}")
    step = float(np.median(np.diff(stamps)))
    if step != MINUTE_S:
        raise ValidationError(
            f"a backtest needs per-minute history (collect with --period-s 60), got {step:g} s"
        )
    start = float(stamps[0])
    minutes = int(round((stamps[-1] - start) / MINUTE_S)) + 1
    idx = np.rint((stamps - start) / MINUTE_S).astype(int)
    invocations = np.zeros(minutes)
    np.add.at(invocations, idx, pd.to_numeric(history["invocations"]).fillna(0.0).to_numpy())
    if doc.get("activities_unavailable"):
        raise ValidationError(
            "the scaling history has no scaling activities (the backend could not list them: "
            f"{doc['activities_unavailable']}): nothing to compare the model with"
        )
    activities = activities_from(doc)
    spans = spans_from(doc)
    initial = None
    before = doc.get("activity_before")
    if isinstance(before, Mapping) and to_capacity(before) is not None:
        initial = to_capacity(before)  # the desired count the window starts with
    if initial is None and "instances" in history.columns:
        known = pd.to_numeric(history["instances"], errors="coerce").dropna()
        if len(known) and known.index[0] == history.index[0]:
            initial = int(round(float(known.iloc[0])))
    if initial is None:
        first = spans[0].policies[0]
        initial = first.min_capacity
    choices, notes = choices_from_alarms(doc.get("alarms", []), spans[-1].policies[0], defaults)
    # Policies put before the window have alarms with history the replay lacks: leave out the
    # time its alarms need to fill (AlarmLow's datapoints), plus a minute for the delay.
    fresh = spans[0].from_s >= start
    warmup = 0.0 if fresh else float((choices.low_datapoints + 1) * MINUTE_S)
    return Recording(
        start_s=start,
        invocations=invocations,
        activities=tuple(a for a in activities if start <= a.start_s < start + minutes * 60),
        spans=spans,
        initial_capacity=initial,
        choices=choices,
        alarm_notes=notes,
        warmup_s=warmup,
    )
