"""Scheduled floors: where the history has a daily or weekly rhythm, a raised MinCapacity over
its busy hours instead of a high MinCapacity all day.

1. :func:`detect_rhythm` folds each long profile's per-minute demand into hours and measures the
   autocorrelation at 24 h and at 7 days; a rhythm is one at least :data:`MIN_AUTOCORRELATION`
   (the history must hold two full periods to show one).
2. The busy window is the run of hours of the day (in the rhythm's time zone, weekdays only when
   the weekly rhythm says weekends are quiet) whose mean demand is above the middle of the
   day's range, started :data:`LEAD_H` hour early so the floor's instances have booted when the
   demand comes.
3. :func:`schedule_candidates` takes the best-ranked policies and gives each a scheduled floor:
   MinCapacity at a low night level, raised over the busy window to levels that cover the
   window's demand (its 10th percentile, median and peak, and the policy's own MinCapacity).
4. The pipeline judges them with its own evaluation function, beside every other candidate;
   :func:`keep_cheaper` keeps only those cheaper than the best unscheduled candidate that meets
   the objective (or that meet it when no unscheduled one does).

On a history tuned with held-out validation a floor is also a bet on *when* the extremes come:
it is cheaper because its night level is lower, so it holds only if the surges keep to the busy
hours. :func:`extremes_keep_to` checks that bet first: each day's largest rise within one
reaction time, for the days whose rise is at least half the history's largest (the events that
decide standing capacity); if all of them fell inside the floor's window and that is not
unlikely by chance (``f ** k`` over :data:`CHANCE`, for ``k`` events and a window covering the
share ``f`` of the day, as if events came at any hour), the floors are not searched: a few
spikes that happened to land in the busy hours are no rhythm (the AMZN trace's two spikes of 18x
and 32x its median both fell inside its busy hours, 12:00-22:00 UTC: 17% by chance).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

import numpy as np
import pandas as pd

from tuner.model.timetable import profile_start
from tuner.policy.cron import timezone
from tuner.policy.policy import ScalingPolicy
from tuner.policy.schedule import ScheduledScalingAction
from tuner.profiles.profile import TrafficProfile
from tuner.tune.recommend import Recommendation

MIN_AUTOCORRELATION = 0.5
"""Autocorrelation of hourly demand at the period's lag needed to call it a rhythm."""
LEAD_H = 1
"""Hours the floor rises before the busy window (instances boot for minutes)."""
BASES = 4
"""Best-ranked policies given scheduled floors."""
DAY_H, WEEK_H = 24, 168
CHANCE = 0.05
"""Largest chance that the extremes all landed in the floor's window by accident for the floors
to be searched on a history (the conventional 5% significance level)."""
FLOOR_ON, FLOOR_OFF = "tuner-floor-on", "tuner-floor-off"

EvaluateFn = Callable[[Sequence[ScalingPolicy]], pd.DataFrame]


@dataclass(frozen=True)
class Rhythm:
    """A daily rhythm and its busy window, in hours of the day of ``zone``."""

    daily_autocorrelation: float
    weekly_autocorrelation: float
    start_h: int
    """First hour of the floor (the busy window's start minus the lead)."""
    end_h: int
    """Hour the floor ends (exclusive); may be < start_h when the window spans midnight."""
    weekdays_only: bool
    """The weekly rhythm shows quiet weekends: the floor runs Monday to Friday."""
    busy_rps: tuple[float, ...]
    """Per-minute demand inside the busy window (for floor levels)."""
    zone_name: str | None

    @property
    def description(self) -> str:
        days = "Monday-Friday" if self.weekdays_only else "every day"
        zone = self.zone_name or "UTC"
        return f"{self.start_h:02d}:00-{self.end_h:02d}:00 {zone}, {days}"


def _autocorrelation(x: np.ndarray, lag: int) -> float:
    if len(x) < 2 * lag:
        return float("nan")
    a, b = x[:-lag] - x[:-lag].mean(), x[lag:] - x[lag:].mean()
    denom = math.sqrt(float((a * a).sum() * (b * b).sum()))
    return float((a * b).sum() / denom) if denom > 0 else float("nan")


def detect_rhythm(profile: TrafficProfile, zone_name: str | None = None) -> Rhythm | None:
    """The daily rhythm of ``profile``'s demand and its busy window, or None if there is none."""
    per_minute = np.asarray(profile.counts(60.0), dtype=float) / 60.0
    hours = len(per_minute) // 60
    if hours < 2 * DAY_H:
        return None
    hourly = per_minute[: hours * 60].reshape(hours, 60).mean(axis=1)
    daily = _autocorrelation(hourly, DAY_H)
    weekly = _autocorrelation(hourly, WEEK_H)
    if not (daily >= MIN_AUTOCORRELATION or weekly >= MIN_AUTOCORRELATION):
        return None
    zone = timezone(zone_name)
    start = profile_start(profile)
    stamps = [(start + timedelta(hours=h)).astimezone(zone) for h in range(hours)]
    hour_of_day = np.array([s.hour for s in stamps])
    weekday = np.array([s.weekday() < 5 for s in stamps])
    weekdays_only = False
    if weekly >= MIN_AUTOCORRELATION and weekday.any() and (~weekday).any():
        # quiet weekends: their peak hour well below the weekdays' (half)
        peak_week = max(hourly[weekday & (hour_of_day == h)].mean() for h in set(hour_of_day))
        weekend = hourly[~weekday]
        weekdays_only = bool(weekend.max() < 0.5 * peak_week)
    mask = weekday if weekdays_only else np.ones(hours, dtype=bool)
    by_hour = np.array(
        [
            hourly[mask & (hour_of_day == h)].mean() if (mask & (hour_of_day == h)).any() else 0.0
            for h in range(DAY_H)
        ]
    )
    lo, hi = float(by_hour.min()), float(by_hour.max())
    if hi <= 0 or hi - lo < 0.25 * hi:
        return None  # too flat: a floor would cost as much as a static MinCapacity
    busy = by_hour > (lo + hi) / 2
    if busy.all():
        return None
    # the busy run of hours (circular): start after a quiet hour, end at the next quiet one
    first = next(h for h in range(DAY_H) if busy[h] and not busy[h - 1])
    length = 0
    while busy[(first + length) % DAY_H] and length < DAY_H:
        length += 1
    start_h = (first - LEAD_H) % DAY_H
    end_h = (first + length) % DAY_H
    in_window = np.zeros(hours, dtype=bool)
    for k in range(length + LEAD_H):
        in_window |= hour_of_day == (start_h + k) % DAY_H
    in_window &= mask
    minutes = np.repeat(in_window, 60)
    busy_rps = per_minute[: hours * 60][minutes]
    return Rhythm(daily, weekly, start_h, end_h, weekdays_only, tuple(busy_rps), zone_name)


def floor_actions(rhythm: Rhythm, floor: int, night_min: int) -> tuple[ScheduledScalingAction, ...]:
    """The two actions of a scheduled floor: Min ``floor`` at the window's start, back after."""
    days = "MON-FRI" if rhythm.weekdays_only else "*"
    dom = "?" if rhythm.weekdays_only else "*"
    dow = days if rhythm.weekdays_only else "?"
    return (
        ScheduledScalingAction(
            name=FLOOR_ON,
            schedule=f"cron(0 {rhythm.start_h} {dom} * {dow} *)",
            timezone=rhythm.zone_name,
            min_capacity=floor,
        ),
        ScheduledScalingAction(
            name=FLOOR_OFF,
            schedule=f"cron(0 {rhythm.end_h} {dom} * {dow} *)",
            timezone=rhythm.zone_name,
            min_capacity=night_min,
        ),
    )


def schedule_candidates(
    rhythm: Rhythm,
    ranked: Sequence[ScalingPolicy],
    min_levels: Sequence[int],
    max_rps_per_instance: float,
) -> list[ScalingPolicy]:
    """Scheduled-floor variants of the best ``BASES`` policies of ``ranked``."""
    busy = np.asarray(rhythm.busy_rps)
    window_levels = {
        max(1, math.ceil(float(np.percentile(busy, q)) / max_rps_per_instance - 1e-9))
        for q in (10, 50, 100)
    }
    out: dict[str, ScalingPolicy] = {}
    for base in [p for p in ranked if not p.scheduled_actions][:BASES]:
        nights = sorted(
            {m for m in min_levels if m <= base.min_capacity}
            | {max(1, base.kind.min_capacity_floor)}
        )
        floors = sorted(
            (window_levels | {base.min_capacity}) & set(range(1, base.max_capacity + 1))
        )
        for night in nights:
            for floor in floors:
                if floor <= night:
                    continue
                p = base.replace(
                    min_capacity=night, scheduled_actions=floor_actions(rhythm, floor, night)
                )
                out.setdefault(p.label, p)
    return list(out.values())


def keep_cheaper(
    results: pd.DataFrame, policies: Sequence[ScalingPolicy]
) -> tuple[list[ScalingPolicy], pd.DataFrame]:
    """Scheduled candidates (and their rows) cheaper than the best unscheduled one that meets
    the objective; all that meet it when no unscheduled one does."""
    per = results.groupby("candidate", sort=False).agg(
        cost=("monthly_cost_usd", "mean"), meets=("meets_objective", "all")
    )
    scheduled = {p.label for p in policies if p.scheduled_actions}
    plain = per[~per.index.isin(scheduled) & per["meets"]]
    bar = float(plain["cost"].min()) if len(plain) else math.inf
    keep = {
        label
        for label in scheduled
        if label in per.index and bool(per.loc[label, "meets"]) and per.loc[label, "cost"] < bar
    }
    kept = [p for p in policies if p.label in keep]
    return kept, results[results["candidate"].isin(keep)]


def search_schedules(
    profiles: Sequence[TrafficProfile],
    ranked: Sequence[ScalingPolicy],
    results: pd.DataFrame,
    *,
    min_levels: Sequence[int],
    max_rps_per_instance: float,
    evaluate: EvaluateFn,
    zone_name: str | None = None,
    progress: Callable[[str], None] | None = None,
) -> tuple[Rhythm | None, list[ScalingPolicy], pd.DataFrame]:
    """The search stage: (rhythm found, scheduled candidates kept, their result rows).

    ``ranked`` are the candidates best first; ``evaluate`` is the pipeline's evaluation of a
    list of candidates (rows as :func:`tuner.tune.search.evaluate` gives them).
    """
    long = max(profiles, key=lambda p: p.duration_s)
    rhythm = detect_rhythm(long, zone_name)
    if rhythm is None:
        if progress:
            progress(f"scheduled floors: no daily or weekly rhythm in {long.name}")
        return None, [], results.iloc[0:0]
    candidates = schedule_candidates(rhythm, ranked, min_levels, max_rps_per_instance)
    if progress:
        progress(
            f"scheduled floors: rhythm in {long.name} (autocorrelation 24 h "
            f"{rhythm.daily_autocorrelation:.2f}, 7 d {rhythm.weekly_autocorrelation:.2f}); "
            f"busy {rhythm.description}; {len(candidates)} scheduled candidates"
        )
    if not candidates:
        return rhythm, [], results.iloc[0:0]
    rows = evaluate(candidates)
    kept, kept_rows = keep_cheaper(
        pd.concat([results, rows], ignore_index=True), [*ranked, *candidates]
    )
    return rhythm, kept, kept_rows


def extremes_keep_to(
    rhythm: Rhythm, rates_rps: np.ndarray, start: datetime, reaction_min: int
) -> tuple[bool, str]:
    """Whether the history's extremes keep to the floor's window beyond chance (see the module
    docstring), and the figures in words."""
    r = np.asarray(rates_rps, dtype=float)
    w = max(1, reaction_min)
    if len(r) <= w:
        return True, "too short to tell"
    rise = r[w:] - r[:-w]
    days = math.ceil(len(rise) / 1440)
    ends = [d * 1440 + int(np.argmax(rise[d * 1440 : (d + 1) * 1440])) + w for d in range(days)]
    top = float(rise.max())
    events = [i for i in ends if top > 0 and r[i] - r[i - w] >= 0.5 * top]
    zone = timezone(rhythm.zone_name)
    length = (rhythm.end_h - rhythm.start_h) % DAY_H or DAY_H
    inside = 0
    for i in events:
        t = (start + timedelta(minutes=i)).astimezone(zone)
        hit = (t.hour - rhythm.start_h) % DAY_H < length
        inside += hit and (t.weekday() < 5 or not rhythm.weekdays_only)
    share = length / DAY_H * (5 / 7 if rhythm.weekdays_only else 1.0)
    chance = share ** len(events)
    words = (
        f"{inside} of the {len(events)} days' largest rises fell inside the floor's hours "
        f"({share:.0%} of the week); by chance: {chance:.0%}"
    )
    return inside < len(events) or chance <= CHANCE, words


def floor_reason(
    recommendation: Recommendation,
    table: pd.DataFrame,
    by_label: dict[str, ScalingPolicy],
    rhythm: Rhythm | None,
    objective: str,
) -> Recommendation:
    """The recommendation with a sentence on its scheduled floor, if it carries one."""
    chosen = by_label[recommendation.label]
    if rhythm is None or not chosen.scheduled_actions:
        return recommendation
    on = next(a for a in chosen.scheduled_actions if a.name == FLOOR_ON)
    plain = table[~table["candidate"].map(lambda c: bool(by_label[c].scheduled_actions))]
    plain = plain[plain["meets_objective"]]
    versus = (
        f"the best policy without one ({plain.iloc[0]['candidate']}, "
        f"${plain.iloc[0]['monthly_cost_usd']:,.0f}/month)"
        if len(plain)
        else "every policy without one, none of which meets the objective"
    )
    return dataclasses.replace(
        recommendation,
        reasons=(
            *recommendation.reasons,
            f"It carries a scheduled floor: MinCapacity {on.min_capacity} over "
            f"{rhythm.description} (the busy hours of the history, one hour early), "
            f"{chosen.min_capacity} otherwise (scheduled actions {FLOOR_ON} and "
            f"{FLOOR_OFF}); cheaper than {versus} at the same {objective}.",
        ),
    )
