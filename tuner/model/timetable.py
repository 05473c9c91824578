"""Scheduled actions on the simulated clock: a profile's t = 0 is an absolute instant.

A replay starts where its history does (the first row played, when it plays at time_scale 1); a
profile with a top-level ``start = "2024-06-03T08:00:00Z"`` starts there; any other profile
starts at :data:`DEFAULT_START`, 00:00 UTC on Monday 1 January 2024, so a synthetic day begins
at midnight on a Monday. Each action's AWS expression (cron/at/rate, in its Timezone) is
evaluated between that instant and the profile's end; the range in force at t = 0 is the one the
actions that ran before it left (looking back :data:`LOOKBACK`), as a target that has run its
schedule for weeks would have.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import numpy as np

from tuner.model.scaling import ScheduledAction
from tuner.policy.policy import ScalingPolicy
from tuner.policy.schedule import ScheduledScalingAction
from tuner.profiles.profile import TrafficProfile

DEFAULT_START = datetime(2024, 1, 1, tzinfo=UTC)
"""t = 0 of a profile without an absolute start: Monday 2024-01-01 00:00 UTC."""
LOOKBACK = timedelta(days=31)
"""How far before t = 0 earlier runs are looked for to set the range in force at the start."""


def profile_start(profile: object) -> datetime:
    """The absolute instant of ``profile``'s t = 0 (its ``start_epoch_s``, else the default)."""
    epoch = getattr(profile, "start_epoch_s", None)
    if epoch is None:
        return DEFAULT_START
    return datetime.fromtimestamp(float(epoch), tz=UTC)


def timeline_actions(
    actions: Sequence[ScheduledScalingAction], start: datetime, duration_s: float
) -> list[ScheduledAction]:
    """The simulator's ``scheduled=`` list: each run of each action as seconds from ``start``.

    Runs before ``start`` are folded into actions at t = 0, in the order they ran, the latest run
    of each action only (an action always sets the same values, so its last run decides).
    """
    end = start + timedelta(seconds=duration_s)
    before: list[tuple[datetime, ScheduledScalingAction]] = []
    out: list[tuple[float, int, ScheduledScalingAction]] = []
    for i, action in enumerate(actions):
        earlier = action.fire_times(start - LOOKBACK, start)
        if earlier:
            before.append((earlier[-1], action))
        for t in action.fire_times(start, end):
            out.append(((t - start).total_seconds(), i, action))
    before.sort(key=lambda pair: pair[0])
    result = [
        ScheduledAction(0.0, min_capacity=a.min_capacity, max_capacity=a.max_capacity)
        for _, a in before
    ]
    # Runs at the same instant: in the order of the file (AWS gives no order; ours is stable).
    out.sort(key=lambda row: (row[0], row[1]))
    result += [
        ScheduledAction(at_s, min_capacity=a.min_capacity, max_capacity=a.max_capacity)
        for at_s, _, a in out
    ]
    return result


def candidate_actions(
    profile: TrafficProfile, policies: Sequence[ScalingPolicy]
) -> list[ScheduledAction]:
    """Every candidate's scheduled actions on the profile's clock, as one list of actions whose
    values are per candidate (NaN: that candidate's bound is left alone), so that candidates with
    different schedules run in one simulation."""
    if not any(p.scheduled_actions for p in policies):
        return []
    start = profile_start(profile)
    cache: dict[tuple[ScheduledScalingAction, ...], list[ScheduledAction]] = {}
    per: list[dict[float, list[ScheduledAction]]] = []
    for p in policies:
        key = p.scheduled_actions or ()
        if key not in cache:
            cache[key] = timeline_actions(key, start, profile.duration_s)
        by_time: dict[float, list[ScheduledAction]] = {}
        for action in cache[key]:
            by_time.setdefault(action.at_s, []).append(action)
        per.append(by_time)
    out: list[ScheduledAction] = []
    C = len(policies)
    for t in sorted({t for by_time in per for t in by_time}):
        depth = max(len(by_time.get(t, ())) for by_time in per)
        for d in range(depth):
            lo, hi = np.full(C, np.nan), np.full(C, np.nan)
            for i, by_time in enumerate(per):
                here = by_time.get(t, [])
                if d < len(here):
                    if here[d].min_capacity is not None:
                        lo[i] = float(here[d].min_capacity)  # type: ignore[arg-type]
                    if here[d].max_capacity is not None:
                        hi[i] = float(here[d].max_capacity)  # type: ignore[arg-type]
            out.append(
                ScheduledAction(
                    t,
                    min_capacity=None if np.isnan(lo).all() else lo,
                    max_capacity=None if np.isnan(hi).all() else hi,
                )
            )
    return out
