"""Simulating candidates against an objective: one row per candidate, profile and seed.

``evaluate`` simulates every candidate on every profile and seed; :mod:`tuner.tune.recommend` scores
and ranks the rows. The candidate grid is :mod:`tuner.tune.grid`.

Monthly cost of one run is the run's mean billed instance count x 730 h x hourly price: a month
that repeats the profile's mix of quiet and busy time.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd

from tuner.errors import ValidationError
from tuner.model.capacity import Capacity
from tuner.model.scaling import ScheduledAction
from tuner.model.settings import SimulationSettings
from tuner.model.simulator import SimulationResult, simulate
from tuner.model.timetable import profile_start, timeline_actions
from tuner.policy.policy import ScalingPolicy
from tuner.policy.schedule import ScheduledScalingAction
from tuner.profiles.profile import TrafficProfile

HOURS_PER_MONTH = 730.0


@dataclass(frozen=True, kw_only=True)
class Objective:
    """What a policy must achieve on every profile and seed, with a safety margin."""

    slo_p99_ms: float
    """Latency objective: a request slower than this counts as an SLO violation."""
    max_error_rate: float
    """Largest acceptable share of failed requests."""
    max_slo_violation: float = 0.01
    """Largest acceptable share of requests failed or slower than ``slo_p99_ms`` (p99: 1%)."""
    margin: float = 0.8
    """The worst seed must meet each bound scaled by this factor."""

    def __post_init__(self) -> None:
        if not (math.isfinite(self.slo_p99_ms) and self.slo_p99_ms > 0):
            raise ValidationError(f"--slo-p99-ms > 0 must hold, got {self.slo_p99_ms:g}")
        for name, value in (
            ("--max-error-rate", self.max_error_rate),
            ("--max-slo-violation", self.max_slo_violation),
            ("--margin", self.margin),
        ):
            if not 0 < value <= 1:
                raise ValidationError(f"{name} must be in (0, 1], got {value:g}")

    @property
    def error_bound(self) -> float:
        return self.max_error_rate * self.margin

    @property
    def violation_bound(self) -> float:
        return self.max_slo_violation * self.margin


def simulate_candidates(
    profile: TrafficProfile,
    policies: Sequence[ScalingPolicy],
    capacity: Capacity,
    objective: Objective,
    settings: SimulationSettings,
    seed: int,
) -> SimulationResult:
    """One simulation of every candidate on ``profile`` with ``seed`` (a SimulationResult).

    Candidates with scheduled actions are simulated in groups that share them (the actions run
    on the profile's clock, :mod:`tuner.model.timetable`) and the results put back in order.
    """
    groups: dict[tuple[ScheduledScalingAction, ...], list[int]] = {}
    for i, p in enumerate(policies):
        groups.setdefault(p.scheduled_actions or (), []).append(i)
    if len(groups) == 1:
        return _simulate_group(profile, policies, capacity, objective, settings, seed)
    start = profile_start(profile)
    parts = []
    for actions, members in groups.items():
        result = _simulate_group(
            profile,
            [policies[i] for i in members],
            capacity,
            objective,
            settings,
            seed,
            timeline_actions(actions, start, profile.duration_s),
        )
        parts.append((members, result))
    return _merge(parts, len(policies))


def _simulate_group(
    profile: TrafficProfile,
    policies: Sequence[ScalingPolicy],
    capacity: Capacity,
    objective: Objective,
    settings: SimulationSettings,
    seed: int,
    scheduled: Sequence[ScheduledAction] | None = None,
) -> SimulationResult:
    if scheduled is None:
        actions = policies[0].scheduled_actions or ()
        scheduled = timeline_actions(actions, profile_start(profile), profile.duration_s)
    # [MODEL] Warm start: the endpoint served the profile's opening rate before t = 0, so each
    # candidate starts where its own policy settles for that rate (a live trial starts there
    # too), not at MinCapacity with the opening traffic already overloading it.
    initial = None
    if settings.warm_start:
        opening = profile.opening_rps()
        initial = np.array([p.steady_capacity(opening) for p in policies])
    return simulate(
        profile,
        policies,
        capacity,
        replace(settings, slo_p99_ms=objective.slo_p99_ms),
        seed=seed,
        initial_capacity=initial,
        scheduled=scheduled,
    )


def _merge(parts: list[tuple[list[int], SimulationResult]], count: int) -> SimulationResult:
    """One SimulationResult from results of candidate groups (``members`` index the whole)."""
    first = parts[0][1]
    T = len(first.demand)
    order = np.empty(count, dtype=np.intp)
    col = 0
    for members, _ in parts:
        order[members] = np.arange(col, col + len(members))
        col += len(members)

    def stack(name: str) -> np.ndarray:
        return np.concatenate([getattr(r, name) for _, r in parts], axis=1)[:, order]

    rows = np.unique(np.concatenate([r.queue_rows for _, r in parts] + [np.zeros(0, np.intp)]))
    values = np.zeros((len(rows), count))
    for members, r in parts:
        at = np.searchsorted(rows, r.queue_rows)
        for j, m in enumerate(members):
            values[at, m] = r.queue_values[:, j]
    policies: list[ScalingPolicy | None] = [None] * count
    frames = []
    for members, r in parts:
        for j, m in enumerate(members):
            policies[m] = r.policies[j]
        frame = r.summary.reset_index(drop=True).copy()
        frame.index = members
        frames.append(frame)
    summary = pd.concat(frames).sort_index().reset_index(drop=True)
    assert stack("desired").shape[0] == T
    return SimulationResult(
        tuple(p for p in policies if p is not None),
        first.period_s,
        first.capacity,
        first.slo_p99_ms,
        first.demand,
        stack("desired"),
        stack("in_service"),
        stack("alarm_high"),
        stack("alarm_low"),
        rows.astype(np.intp),
        values,
        summary,
    )


def evaluate(
    profiles: Sequence[TrafficProfile],
    policies: Sequence[ScalingPolicy],
    capacity: Capacity,
    objective: Objective,
    settings: SimulationSettings,
    progress: Callable[[str], None] | None = None,
) -> pd.DataFrame:
    """Simulate every policy on every profile and seed: one row per (candidate, profile, seed)."""
    frames = []
    total = len(profiles) * len(settings.seeds)
    for n, (profile, seed) in enumerate(itertools.product(profiles, settings.seeds), 1):
        if progress:
            progress(
                f"simulating {len(policies)} candidates on {profile.name} seed {seed} ({n}/{total})"
            )
        result = simulate_candidates(profile, policies, capacity, objective, settings, seed)
        summary = result.summary.reset_index(drop=True).copy()
        summary.insert(0, "candidate", [p.label for p in policies])
        summary.insert(1, "profile", profile.name)
        summary.insert(2, "seed", seed)
        summary["duration_s"] = float(profile.duration_s)
        frames.append(summary.drop(columns=["label"], errors="ignore"))
    results = pd.concat(frames, ignore_index=True)
    hours = results["duration_s"] / 3600.0
    results["mean_instances"] = results["instance_hours"] / hours
    results["monthly_cost_usd"] = results["cost_usd"] / hours * HOURS_PER_MONTH
    results["meets_objective"] = (results["slo_violation_rate"] <= objective.violation_bound) & (
        results["error_rate"] <= objective.error_bound
    )
    return results
