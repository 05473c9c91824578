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
from typing import TypeVar

import numpy as np
import pandas as pd

from tuner.errors import ValidationError
from tuner.model.capacity import Capacity
from tuner.model.settings import SimulationSettings
from tuner.model.simulator import SimulationResult, simulate
from tuner.model.timetable import candidate_actions
from tuner.policy.policy import ScalingPolicy
from tuner.profiles.profile import TrafficProfile

P = TypeVar("P", bound=TrafficProfile)

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
    slo_ttft_p99_ms: float | None = None
    """LLM endpoints (:mod:`tuner.tune.llm`): time-to-first-token objective; None elsewhere."""
    slo_itl_p99_ms: float | None = None
    """LLM endpoints: inter-token latency (p99 per request) objective; None elsewhere."""

    def __post_init__(self) -> None:
        if not (math.isfinite(self.slo_p99_ms) and self.slo_p99_ms > 0):
            raise ValidationError(f"--slo-p99-ms > 0 must hold, got {self.slo_p99_ms:g}")
        for flag, ms in (
            ("--slo-ttft-p99-ms", self.slo_ttft_p99_ms),
            ("--slo-itl-p99-ms", self.slo_itl_p99_ms),
        ):
            if ms is not None and not (math.isfinite(ms) and ms > 0):
                raise ValidationError(f"{flag} > 0 must hold, got {ms:g}")
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

    A candidate's scheduled actions run on the profile's clock (:mod:`tuner.model.timetable`);
    candidates with different schedules share the run (per-candidate action values).
    """
    scheduled = candidate_actions(profile, policies)
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


def evaluate(
    profiles: Sequence[TrafficProfile],
    policies: Sequence[ScalingPolicy],
    capacity: Capacity,
    objective: Objective,
    settings: SimulationSettings,
    progress: Callable[[str], None] | None = None,
) -> pd.DataFrame:
    """Simulate every policy on every profile and seed: one row per (candidate, profile, seed)."""

    def summary_of(profile: TrafficProfile, seed: int) -> pd.DataFrame:
        return simulate_candidates(profile, policies, capacity, objective, settings, seed).summary

    results = results_table(
        profiles, policies, objective, settings, summary_of, "candidates", progress
    )
    results["mean_instances"] = results["instance_hours"] / (results["duration_s"] / 3600.0)
    return results


def results_table(
    profiles: Sequence[P],
    policies: Sequence[ScalingPolicy],
    objective: Objective,
    settings: SimulationSettings,
    summary_of: Callable[[P, int], pd.DataFrame],
    what: str,
    progress: Callable[[str], None] | None = None,
) -> pd.DataFrame:
    """``summary_of(profile, seed)`` (one row per policy) on every profile and seed, as one row
    per (candidate, profile, seed) with the monthly cost and whether it meets the objective;
    ``what`` names the policies in the progress lines."""
    frames = []
    total = len(profiles) * len(settings.seeds)
    for n, (profile, seed) in enumerate(itertools.product(profiles, settings.seeds), 1):
        if progress:
            progress(
                f"simulating {len(policies)} {what} on {profile.name} seed {seed} ({n}/{total})"
            )
        summary = summary_of(profile, seed).reset_index(drop=True).copy()
        summary.insert(0, "candidate", [p.label for p in policies])
        summary.insert(1, "profile", profile.name)
        summary.insert(2, "seed", seed)
        summary["duration_s"] = float(profile.duration_s)
        frames.append(summary.drop(columns=["label"], errors="ignore"))
    results = pd.concat(frames, ignore_index=True)
    hours = results["duration_s"] / 3600.0
    results["monthly_cost_usd"] = results["cost_usd"] / hours * HOURS_PER_MONTH
    results["meets_objective"] = (results["slo_violation_rate"] <= objective.violation_bound) & (
        results["error_rate"] <= objective.error_bound
    )
    return results
