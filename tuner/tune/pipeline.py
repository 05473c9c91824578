"""The tuning workflow as a Python API: profiles in, a frozen :class:`Tuning` out.

``tuner tune`` and ``tuner demo`` call these functions; so can a notebook::

    from tuner.tune import Objective, tune
    from tuner.profiles import load_profile

    tuning = tune([load_profile("history.toml")],
                  Objective(slo_p99_ms=500, max_error_rate=0.001))
    print(tuning.recommendation.label, tuning.recommended.to_dict())

Defaults are the CLI's: the capacity file of DESIGN.md, :class:`SimulationSettings` (three seeds,
boot jitter ±60 s, 60-s metric delay, warm start) and the default :class:`Grid`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from tuner.errors import PolicyError, ValidationError
from tuner.model.capacity import Capacity
from tuner.model.llm_capacity import LlmCapacity
from tuner.model.scaling import step_s_for
from tuner.model.settings import SimulationSettings
from tuner.model.simulator import check_size, simulate
from tuner.policy.policy import ScalingPolicy
from tuner.policy.tracking import DEFAULT_POLICY_NAME
from tuner.profiles.profile import Profile
from tuner.tune.companion import CompanionGrid, companion_candidates
from tuner.tune.grid import Grid
from tuner.tune.history import holdout_minutes, per_minute
from tuner.tune.recommend import Recommendation, recommend, score
from tuner.tune.run import Run
from tuner.tune.schedules import Rhythm, floor_reason, search_schedules
from tuner.tune.search import Objective, evaluate, simulate_candidates
from tuner.tune.walkforward import tune_history

Progress = Callable[[str], None]


def _quiet(message: str) -> None:
    """The default progress callback: say nothing."""


@dataclass(frozen=True, kw_only=True)
class Tuning:
    """What one tuning decided, and the evidence: the in-memory form of a run directory."""

    profiles: tuple[Profile, ...]
    capacity: Capacity | LlmCapacity
    """The instance's capacity file, or an LLM copy's (:mod:`tuner.tune.llm`)."""
    objective: Objective
    settings: SimulationSettings
    grid: Grid
    policies: dict[str, ScalingPolicy]
    """Every candidate simulated, by label (the grid, the rule of thumb and the current policy)."""
    rule_of_thumb: ScalingPolicy
    current: ScalingPolicy | None
    min_capacities: tuple[int, ...]
    max_capacities: tuple[int, ...]
    results: pd.DataFrame
    """One row per candidate x profile x seed (simulation summaries)."""
    candidates: pd.DataFrame
    """One row per candidate, scored and ranked (see :func:`tuner.tune.recommend.score`)."""
    recommendation: Recommendation
    recommended: ScalingPolicy
    """The recommended policy, named so that ``tuner apply`` replaces the current one."""
    timelines: dict[str, dict[str, pd.DataFrame]] = field(default_factory=dict)
    """profile name -> candidate label -> simulated timeline (first seed) of shown candidates."""
    companions: CompanionGrid | None = None
    """The step scale-out companion family's grid, if it was searched."""
    rhythm: Rhythm | None = None
    """The daily or weekly rhythm the scheduled-floor search found (None: none, or not run)."""
    validation: dict[str, Any] = field(default_factory=dict)
    """Held-out validation and stress (see :mod:`tuner.tune.walkforward`), or a ``note`` saying
    why a held-out split does not apply."""

    def ranked(self, top: int) -> list[ScalingPolicy]:
        """The ``top`` best candidates, best first."""
        return [self.policies[label] for label in list(self.candidates["candidate"])[:top]]

    def to_run(self, path: Path, manifest: dict[str, Any]) -> Run:
        """The run directory's content for ``path`` (saved by :func:`tuner.tune.run.write_run`)."""
        return Run(
            path=path,
            manifest=manifest,
            candidates=self.candidates,
            results=self.results,
            recommendation=self.recommendation,
            recommended=self.recommended,
            timelines=self.timelines,
            validation=self.validation,
        )


def unmodelled(policy: ScalingPolicy, profile: Profile, capacity: Capacity) -> str:
    """Why the simulator cannot model ``policy`` (e.g. a customized metric), or ""."""
    try:
        simulate(profile, [policy], capacity)
    except PolicyError as e:
        return str(e)
    return ""


def tune(
    profiles: Sequence[Profile],
    objective: Objective,
    *,
    capacity: Capacity | LlmCapacity | None = None,
    settings: SimulationSettings | None = None,
    grid: Grid | None = None,
    current: ScalingPolicy | None = None,
    timelines_top: int = 0,
    schedules: bool = True,
    schedule_timezone: str | None = None,
    progress: Progress = _quiet,
    companions: CompanionGrid | None = None,
    holdout: float | None = None,
    stress_level: float | None = None,
    max_instances: int | None = None,
) -> Tuning:
    """Simulate the grid (plus AWS's rule of thumb and ``current``) and recommend one policy.

    ``current`` is the endpoint's live policy, evaluated beside the grid; a policy the simulator
    cannot model is left out (say so with :func:`unmodelled` first). Timelines are kept for the
    recommendation, its alternatives, the rule of thumb, the current policy and the
    ``timelines_top`` best-ranked candidates (those a live trial will compare against).
    ``companions`` adds the family "target tracking plus a step scale-out companion"
    (:mod:`tuner.tune.companion`), simulated after the grid and ranked with it.
    ``schedules``: search scheduled floors where the longest profile has a daily or weekly
    rhythm (:mod:`tuner.tune.schedules`, cron in ``schedule_timezone``, default UTC).

    One profile of two days or more is a history: it is tuned with held-out validation, stress
    and the finer search (:func:`tuner.tune.walkforward.tune_history`); ``holdout`` is
    :func:`tuner.tune.history.parse_holdout`'s value (None: a quarter, in whole days; 0: off),
    ``stress_level`` None calibrates the level on walk-forward folds (0: no margin or stress,
    the objective itself over the whole history; see :mod:`tuner.tune.holdout`),
    ``max_instances`` caps MaxCapacity.
    Scheduled floors and step companions are searched on both paths (on a history, judged by
    its held-out gates).

    An :class:`LlmCapacity` tunes an inference component's copies instead
    (:func:`tuner.tune.llm.tune_llm`: TTFT/ITL objectives, MinCopyCount 0 searched);
    ``current`` is evaluated beside the copy grid and names the recommendation; schedules,
    companions and held-out validation do not apply there;
    ``max_instances`` caps MaxCopyCount at that many instances' copies.
    """
    if isinstance(capacity, LlmCapacity):
        from tuner.tune.llm import tune_llm  # it builds on this module

        if companions is not None:
            raise ValidationError(
                "an LLM capacity file tunes copies of an inference component: step "
                "companions are not searched there"
            )
        return tune_llm(
            profiles,
            objective,
            capacity=capacity,
            settings=settings,
            grid=grid,
            timelines_top=timelines_top,
            progress=progress,
            max_instances=max_instances,
            current=current,
        )
    capacity = capacity or Capacity.default()
    settings = settings or SimulationSettings()
    grid = grid or Grid()
    profiles = tuple(profiles)
    if not profiles:
        raise ValidationError("at least one profile must be given")
    names = [p.name for p in profiles]
    if len(set(names)) != len(names):
        raise ValidationError(f"profile names must be unique, got {names}")
    if max_instances is not None and max_instances < 1:
        raise ValidationError(f"--max-instances >= 1 must hold, got {max_instances}")
    if stress_level is not None and not (stress_level == 0 or 1 <= stress_level <= 10):
        raise ValidationError(f"--stress-level must be 0 or in [1, 10], got {stress_level:g}")
    held = holdout_minutes(holdout, len(per_minute(profiles[0]))) if len(profiles) == 1 else 0
    if held:
        return _tune_history(
            profiles[0],
            held,
            objective,
            capacity=capacity,
            settings=settings,
            grid=grid,
            current=current,
            timelines_top=timelines_top,
            progress=progress,
            stress_level=stress_level,
            max_instances=max_instances,
            schedules=schedules,
            schedule_timezone=schedule_timezone,
            companions=companions,
        )
    levels, high = grid.capacity_bounds(profiles, capacity.max_rps_per_instance)
    mins, maxes = grid.min_capacities or levels, grid.max_capacities or (high,)
    grid_policies = grid.candidates(profiles, capacity.max_rps_per_instance)
    # The rule of thumb gets the grid's lowest Min and highest Max: only its target is AWS's.
    rule = ScalingPolicy.aws_rule_of_thumb(
        capacity.max_rps_per_instance,
        min_capacity=min(mins),
        max_capacity=max(max(maxes), min(mins)),
    )
    by_label = {p.label: p for p in grid_policies}
    for extra in (rule, current):
        if extra is not None:
            by_label.setdefault(extra.label, extra)
    policies = list(by_label.values())
    for profile in profiles:  # refuse a run that cannot fit before any work or output
        check_size(math.ceil(profile.duration_s / step_s_for(policies)), policies, None, ())
    progress(
        f"{len(policies)} candidates x {len(profiles)} profiles x {len(settings.seeds)} seeds "
        f"(Min {'/'.join(map(str, mins))}, Max {'/'.join(map(str, maxes))})"
    )
    results = evaluate(profiles, policies, capacity, objective, settings, progress)
    rhythm = None
    if schedules:
        ranked = score(results, policies, objective)["candidate"]
        rhythm, found, rows = search_schedules(
            profiles,
            [by_label[label] for label in ranked],
            results,
            min_levels=mins,
            max_rps_per_instance=capacity.max_rps_per_instance,
            evaluate=lambda ps: evaluate(profiles, ps, capacity, objective, settings, progress),
            zone_name=schedule_timezone,
            progress=progress,
        )
        for sp in found:
            by_label.setdefault(sp.label, sp)
        policies += found
        results = pd.concat([results, rows], ignore_index=True)
    table = score(
        results,
        policies,
        objective,
        rule_of_thumb=rule.label,
        current=current.label if current else None,
    )
    if companions is not None:
        family = [
            p for p in companion_candidates(table, by_label, companions) if p.label not in by_label
        ]
        if family:
            progress(f"{len(family)} candidates with a step scale-out companion")
            extra = evaluate(profiles, family, capacity, objective, settings, progress)
            results = pd.concat([results, extra], ignore_index=True)
            by_label.update((p.label, p) for p in family)
            policies = list(by_label.values())
            table = score(
                results,
                policies,
                objective,
                rule_of_thumb=rule.label,
                current=current.label if current else None,
            )
    recommendation = floor_reason(
        recommend(table, results, objective), table, by_label, rhythm, "objective"
    )
    shown = [
        recommendation.label,
        *recommendation.alternatives,
        rule.label,
        *([current.label] if current else []),
        *list(table["candidate"])[:timelines_top],
    ]
    shown = list(dict.fromkeys(shown))
    timelines = _timelines(
        profiles, [by_label[label] for label in shown], capacity, objective, settings
    )
    best = by_label[recommendation.label]
    # Keep the live policy's name so `tuner apply` replaces it instead of adding a second one.
    recommended = best.replace(name=current.name if current else DEFAULT_POLICY_NAME)
    return Tuning(
        profiles=profiles,
        capacity=capacity,
        objective=objective,
        settings=settings,
        grid=grid,
        policies=by_label,
        rule_of_thumb=rule,
        current=current,
        min_capacities=tuple(mins),
        max_capacities=tuple(maxes),
        results=results,
        candidates=table,
        recommendation=recommendation,
        recommended=recommended,
        timelines=timelines,
        companions=companions,
        rhythm=rhythm,
        validation={"note": _no_holdout(profiles, holdout)},
    )


def _no_holdout(profiles: Sequence[Profile], holdout: float | None) -> str:
    """Why this tuning has no held-out split, in one sentence for the report."""
    if holdout == 0:
        return "Held-out validation is off (--holdout off)."
    if len(profiles) > 1:
        return (
            "Held-out validation does not apply: several profiles were given, each a scenario "
            "to survive rather than a history with a future to hold out; give one recorded "
            "history of two days or more to tune on its past and validate on its newest window."
        )
    return (
        f"Held-out validation does not apply: {profiles[0].name} lasts "
        f"{profiles[0].duration_s / 3600:g} h, under the two days (or twice --holdout) a "
        "history needs to hold its newest window out; it is a scenario, not a history."
    )


def _tune_history(
    profile: Profile,
    held: int,
    objective: Objective,
    *,
    capacity: Capacity,
    settings: SimulationSettings,
    grid: Grid,
    current: ScalingPolicy | None,
    timelines_top: int,
    progress: Progress,
    stress_level: float | None,
    max_instances: int | None,
    schedules: bool,
    schedule_timezone: str | None,
    companions: CompanionGrid | None,
) -> Tuning:
    """The history path of :func:`tune`: search, validation and stress, then the usual score."""
    levels, high = grid.capacity_bounds([profile], capacity.max_rps_per_instance)
    rule = ScalingPolicy.aws_rule_of_thumb(
        capacity.max_rps_per_instance, min_capacity=min(levels), max_capacity=max(high, 1)
    )
    extras = [rule, *([current] if current else [])]
    found = tune_history(
        profile,
        held,
        objective,
        capacity,
        settings,
        grid,
        extras,
        stress_level=stress_level,
        max_instances=max_instances,
        progress=progress,
        schedules=schedules,
        zone_name=schedule_timezone,
        companions=companions,
    )
    by_label = {p.label: p for p in found.policies}
    judged = found.objective or objective
    table = score(
        found.results,
        found.policies,
        judged,
        rule_of_thumb=rule.label,
        current=current.label if current else None,
        cost_profiles=found.cost_profiles,
    )
    recommendation = floor_reason(
        recommend(table, found.results, judged),
        table,
        by_label,
        found.rhythm,
        "held-out objective",
    )
    best = by_label[recommendation.label]
    recommended = best.replace(name=current.name if current else DEFAULT_POLICY_NAME)
    shown = [recommendation.label, *recommendation.alternatives, rule.label]
    shown += [*([current.label] if current else []), *list(table["candidate"])[:timelines_top]]
    shown = list(dict.fromkeys(shown))
    kept = {label: found.evidence.timeline(label) if found.evidence else None for label in shown}
    missing = [by_label[x] for x in shown if kept[x] is None]
    timelines = (
        _timelines([profile], missing, capacity, objective, settings)
        if missing
        else {profile.name: {}}
    )
    # in the order shown (the report's colours follow it)
    timelines[profile.name] = {
        x: frame if frame is not None else timelines[profile.name][x] for x, frame in kept.items()
    }
    validation = {
        **found.validation,
        "recommended": recommendation.label,
        "rule_of_thumb": rule.label,
        "current": current.label if current else None,
        "searched": found.searched,
    }
    return Tuning(
        profiles=(profile,),
        capacity=capacity,
        objective=objective,
        settings=settings,
        grid=grid,
        policies=by_label,
        rule_of_thumb=rule,
        current=current,
        min_capacities=tuple(sorted({p.min_capacity for p in found.policies})),
        max_capacities=tuple(sorted({p.max_capacity for p in found.policies})),
        results=found.results,
        candidates=table,
        recommendation=recommendation,
        recommended=recommended,
        timelines=timelines,
        companions=companions,
        rhythm=found.rhythm,
        validation=validation,
    )


def _timelines(
    profiles: Sequence[Profile],
    chosen: Sequence[ScalingPolicy],
    capacity: Capacity,
    objective: Objective,
    settings: SimulationSettings,
) -> dict[str, dict[str, pd.DataFrame]]:
    """Timelines of the chosen candidates on every profile, first seed.

    Only these are simulated again: a candidate's result does not depend on the others simulated
    beside it (boot jitter is shared per period), so they match results.csv.
    """
    out: dict[str, dict[str, pd.DataFrame]] = {}
    for profile in profiles:
        result = simulate_candidates(
            profile, chosen, capacity, objective, settings, settings.seeds[0]
        )
        out[profile.name] = {p.label: result.timeline(i) for i, p in enumerate(chosen)}
    return out
