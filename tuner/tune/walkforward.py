"""Tuning a history with held-out validation, stress and a finer search.

1. Coarse search on seed 0: every candidate of :func:`tuner.tune.refine.coarse` over the whole
   history, judged on each walk-forward fold's past and future.
2. Calibration (:func:`tuner.tune.holdout.calibrate`): per fold, the least rung of safety at
   which the cheapest policy tuned on its past also meets the objective on the window after it;
   the rung used is the largest the folds needed (surge folds aside, see
   :func:`tuner.tune.holdout.required_level`).
3. Refinement around the cheapest candidates that pass the gates of that rung: at x0
   (:data:`tuner.tune.holdout.POOLED`) the objective itself over the whole history as one; from
   x1 up, the objective with its margin in-sample (older part) and held-out (newest window) each,
   and under stress at that level. Every integer MinCapacity near them, every cooldown pair,
   target values bisected towards the feasibility edge.
4. Scheduled floors (with ``schedules``, where the history has a daily or weekly rhythm,
   :mod:`tuner.tune.schedules`): floor variants of the best candidates, judged by the same gates
   on the history's own clock; kept only when cheaper than the cheapest plain candidate that
   passes them, so one is recommended only when cheaper at the same held-out objective.
5. With ``companions``, step scale-out companions of the nearest misses cheaper than the best
   candidate that passes (:mod:`tuner.tune.companion`), judged by the same gates.
6. The finalists (and the baselines) on every seed; their rows go to the usual score.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import pandas as pd

from tuner.model.capacity import Capacity
from tuner.model.settings import SimulationSettings
from tuner.model.timetable import profile_start
from tuner.policy.policy import ScalingPolicy
from tuner.tune.companion import CompanionGrid, companion_candidates
from tuner.tune.grid import Grid
from tuner.tune.history import DAY_MIN, DemandProfile, Fold, per_minute, walk_forward
from tuner.tune.holdout import (
    HELD_OUT,
    HISTORY,
    IN_SAMPLE,
    POOLED,
    Evidence,
    FoldResult,
    calibrate,
    cheapest,
    required_level,
    stress_profile,
)
from tuner.tune.refine import bisect_targets, coarse, neighbours
from tuner.tune.schedules import Rhythm, detect_rhythm, extremes_keep_to, schedule_candidates
from tuner.tune.search import Objective
from tuner.tune.stress import KINDS, LEVELS, Shape

FINALISTS = 24


@dataclass(frozen=True, kw_only=True)
class HistoryTuning:
    """The finalists' rows for scoring, and the validation evidence for the report."""

    policies: list[ScalingPolicy]
    results: pd.DataFrame
    cost_profiles: tuple[str, ...]
    validation: dict[str, Any] = field(default_factory=dict)
    searched: int = 0
    evidence: Evidence | None = None
    """The simulated evidence (its first-seed runs give timelines without simulating again)."""
    objective: Objective | None = None
    """The objective the rows' ``meets_objective`` was judged against (at x0, without the
    margin: the folds showed the objective itself held on the next window)."""
    rhythm: Rhythm | None = None
    """The rhythm the scheduled-floor search found (None: none, or not searched)."""


def tune_history(
    profile: Any,
    holdout_min: int,
    objective: Objective,
    capacity: Capacity,
    settings: SimulationSettings,
    grid: Grid,
    extras: Sequence[ScalingPolicy],
    *,
    stress_level: float | None,
    max_instances: int | None,
    progress: Callable[[str], None],
    schedules: bool = False,
    zone_name: str | None = None,
    companions: CompanionGrid | None = None,
) -> HistoryTuning:
    rates = per_minute(profile)
    start = profile_start(profile).timestamp()
    history = DemandProfile(profile.name, rates, start)
    D = len(rates)
    folds = walk_forward(D, holdout_min)
    newest = folds[0]
    # Disjoint blocks between the folds' cut points: every part is a union of them, so each
    # period is summarised once and the parts' sums are the blocks' sums.
    cuts = sorted({0, D, *(f.train_end for f in folds), *(f.end for f in folds)})
    parts = {f"block:{a}": (a, b) for a, b in zip(cuts, cuts[1:], strict=False)}
    ev = Evidence(capacity, objective, settings)

    def within(a: int, b: int) -> list[str]:
        return [k for k, (x, y) in parts.items() if a <= x and y <= b]

    ev.groups[IN_SAMPLE] = within(0, newest.train_end)
    ev.groups[HELD_OUT] = within(newest.train_end, D)
    ev.groups[HISTORY] = within(0, D)
    for n, f in enumerate(folds):
        ev.groups[f"fold{n}:train"] = within(0, f.train_end)
        ev.groups[f"fold{n}:valid"] = within(f.train_end, f.end)
    reaction_s = settings.boot_for(capacity) + settings.metric_lag_s + 180.0
    seed0 = settings.seeds[0]
    top_level = LEVELS[-1] if stress_level is None else max(stress_level, 1.0)
    explicit = _explicit(grid)
    first = (
        grid.candidates([history], capacity.max_rps_per_instance)
        if explicit
        else coarse(rates, capacity, grid, top_level, max_instances)
    )
    first = list({p.label: p for p in [*first, *extras]}.values())
    progress(f"coarse search: {len(first)} candidates on {D / 1440:g} days, seed {seed0}")
    ev.add(history, first, parts, [seed0], keep=True)
    if stress_level is None:
        progress(f"calibrating the stress level on {len(folds)} walk-forward folds")
        fold_results = calibrate(ev, rates, folds, first, reaction_s, seed0)
        level, why = required_level(fold_results)
    else:
        fold_results, level = [], stress_level
        why = "set with --stress-level"
    shape = Shape.of(rates, reaction_s)
    pooled = level == POOLED
    busiest = start + shape.busiest_day * DAY_MIN * 60.0
    sprof, sparts = stress_profile(shape, level, "final", busiest) if not pooled else (None, {})
    ev.dilute(sparts, holdout_min)
    pool = {p.label: p for p in first}

    def ranked(labels: Sequence[str]) -> list[str]:
        both = ev.stats([HISTORY], labels, [seed0], raw=pooled)
        ok = both["meets"]
        if sprof is not None:
            ev.add(sprof, [pool[x] for x in labels], sparts, [seed0])
            ok &= ev.stats([IN_SAMPLE], labels, [seed0])["meets"]
            ok &= ev.stats([HELD_OUT], labels, [seed0])["meets"]
            ok &= ev.worst(list(sparts), labels, [seed0])["meets"].reindex(both.index)
        return list(both[ok].sort_values("monthly_cost_usd").index)

    good = ranked(list(pool))
    if not explicit:
        progress("refining around the cheapest candidates that meet the objective")
        near = neighbours([pool[x] for x in good[:3]], first, grid)
        pool.update({p.label: p for p in near})
        ev.add(history, near, parts, [seed0], keep=True)
        good = ranked(list(pool))
        sharp = bisect_targets([pool[x] for x in good[:5]], list(pool.values()))
        pool.update({p.label: p for p in sharp})
        ev.add(history, sharp, parts, [seed0], keep=True)
        good = ranked(list(pool))
    rhythm = None
    if schedules:
        best = [pool[x] for x in good]
        w = shape.reaction_min
        rhythm, floors = _floors(profile, zone_name, best, pool, capacity, w, progress)
        if floors:
            progress(f"scheduled floors: {len(floors)} candidates")
            pool.update({p.label: p for p in floors})
            ev.add(history, floors, parts, [seed0], keep=True)
            good = ranked(list(pool))
            plain = [x for x in good if not pool[x].scheduled_actions]
            bar = (
                float(ev.stats([HISTORY], plain[:1], [seed0])["monthly_cost_usd"].min())
                if plain
                else float("inf")
            )
            cost = ev.stats([HISTORY], good, [seed0])["monthly_cost_usd"]
            # a floor only where it is cheaper than the best plain policy at the same gates
            good = [x for x in good if not pool[x].scheduled_actions or cost[x] < bar]
    if companions is not None:
        # the nearest misses cheaper than the best that passes, each with step companions
        table = ev.stats([HISTORY], list(pool), [seed0], raw=pooled).reset_index()
        table["meets_objective"] = table["candidate"].isin(good)
        family = [p for p in companion_candidates(table, pool, companions) if p.label not in pool]
        progress(f"{len(family)} candidates with a step scale-out companion")
        pool.update({p.label: p for p in family})
        ev.add(history, family, parts, [seed0], keep=True)
        good = ranked(list(pool))
    both = ev.stats([HISTORY], list(pool), [seed0], raw=pooled)
    near_miss = list(both[~both.index.isin(good)].sort_values("monthly_cost_usd").index[:8])
    finalists = list(dict.fromkeys([*good[:FINALISTS], *near_miss, *(p.label for p in extras)]))
    chosen = [pool[x] for x in finalists]
    progress(f"{len(chosen)} finalists on seeds {', '.join(map(str, settings.seeds))}")
    ev.add(history, chosen, parts, settings.seeds, keep=True)
    if sprof is not None:
        ev.add(sprof, chosen, sparts, settings.seeds)
    judged = (HISTORY,) if pooled else (IN_SAMPLE, HELD_OUT)
    results = _results(ev, finalists, history.name, sparts, settings.seeds, judged, raw=pooled)
    validation = _validation(
        ev, finalists, folds, fold_results, level, why, shape, sparts, settings.seeds, holdout_min
    )
    cost_profiles = tuple(f"{history.name} ({part})" for part in judged)
    return HistoryTuning(
        policies=chosen,
        results=results,
        cost_profiles=cost_profiles,
        validation=validation,
        searched=len(pool),
        evidence=ev,
        objective=replace(objective, margin=1.0) if pooled else objective,
        rhythm=rhythm,
    )


def _floors(
    profile: Any,
    zone_name: str | None,
    ranked: Sequence[ScalingPolicy],
    pool: dict[str, ScalingPolicy],
    capacity: Capacity,
    reaction_min: int,
    progress: Callable[[str], None],
) -> tuple[Rhythm | None, list[ScalingPolicy]]:
    """The history's rhythm and the scheduled-floor variants of its best candidates not yet
    simulated (none without a rhythm or a candidate that passes the gates)."""
    rhythm = detect_rhythm(profile, zone_name)
    if rhythm is None or not ranked:
        return rhythm, []
    ok, why = extremes_keep_to(rhythm, per_minute(profile), profile_start(profile), reaction_min)
    progress(f"scheduled floors over {rhythm.description}: {why}")
    if not ok:
        return rhythm, []
    mins = sorted({p.min_capacity for p in pool.values()})
    found = schedule_candidates(rhythm, ranked, mins, capacity.max_rps_per_instance)
    return rhythm, [p for p in found if p.label not in pool]


def _explicit(grid: Grid) -> bool:
    """A grid file that names candidates is taken as the whole search (the TOML override)."""
    return grid != Grid()


def _results(
    ev: Evidence,
    labels: Sequence[str],
    name: str,
    sparts: dict[str, tuple[int, int]],
    seeds: Sequence[int],
    judged: Sequence[str],
    *,
    raw: bool = False,
) -> pd.DataFrame:
    """Rows shaped like :func:`tuner.tune.search.evaluate`'s, one per candidate x part x seed:
    the ``judged`` parts of the history and the stress scenarios; ``meets_objective`` against
    the objective's bounds with its margin (``raw``: the bounds themselves)."""
    assert ev.rows is not None
    r = ev.rows[ev.rows["candidate"].isin(list(labels)) & ev.rows["seed"].isin(list(seeds))]
    frames = [r[r["part"].isin(list(sparts))]]
    for part in judged:
        g = r[r["part"].isin(ev.groups[part])].groupby(["candidate", "seed"], sort=False)
        sums = ["requests", "failed", "bad", "instance_hours", "minutes"]
        whole = g[[*sums, "scale_out_events", "scale_in_events"]].sum()
        whole[["p99_latency_ms", "recovery_s"]] = g[["p99_latency_ms", "recovery_s"]].max()
        frames.append(whole.reset_index().assign(part=part))
    r = pd.concat(frames, ignore_index=True)
    keep = {part: f"{name} ({part})" for part in judged}
    keep.update({k: k.split(":", 1)[1] for k in sparts})
    # a stress scenario's rates are against a held-out window's traffic (Evidence.dilution)
    weighted = r["requests"] * r["part"].map(ev.dilution).fillna(1.0)
    req = weighted.where(weighted > 0, 1.0)
    hours = r["minutes"] / 60.0
    out = pd.DataFrame(
        {
            "candidate": r["candidate"],
            "profile": r["part"].map(keep),
            "seed": r["seed"],
            "instance_hours": r["instance_hours"],
            "cost_usd": r["instance_hours"] * ev.capacity.hourly_usd,
            "error_rate": r["failed"] / req,
            "slo_violation_rate": r["bad"] / req,
            "scale_out_events": r["scale_out_events"],
            "scale_in_events": r["scale_in_events"],
            "recovery_s": r["recovery_s"],
            "p99_latency_ms": r["p99_latency_ms"],
            "requests": r["requests"],
            "failed": r["failed"],
            "duration_s": r["minutes"] * 60.0,
        }
    )
    out["mean_instances"] = out["instance_hours"] / hours
    out["monthly_cost_usd"] = out["cost_usd"] / hours * 730.0
    o = ev.objective
    v_bound, e_bound = (
        (o.max_slo_violation, o.max_error_rate) if raw else (o.violation_bound, o.error_bound)
    )
    out["meets_objective"] = (out["slo_violation_rate"] <= v_bound) & (out["error_rate"] <= e_bound)
    return out.reset_index(drop=True)


def _validation(
    ev: Evidence,
    labels: Sequence[str],
    folds: Sequence[Fold],
    fold_results: Sequence[FoldResult],
    level: float,
    why: str,
    shape: Shape,
    sparts: dict[str, tuple[int, int]],
    seeds: Sequence[int],
    holdout_min: int,
) -> dict[str, Any]:
    """What the report's held-out section shows (also saved as validation.json)."""
    pooled = level == POOLED
    ins = ev.stats([IN_SAMPLE], labels, seeds, raw=pooled)
    held = ev.stats([HELD_OUT], labels, seeds, raw=pooled)
    whole = ev.stats([HISTORY], labels, seeds, raw=pooled)
    stress = {k.rsplit(":", 1)[1].split(" ")[0]: ev.stats([k], labels, seeds) for k in sparts}
    table = {
        label: {
            "in_sample": _fig(ins, label),
            "held_out": _fig(held, label),
            "history": _fig(whole, label),
            "stress": {kind: _fig(st, label) for kind, st in stress.items()},
        }
        for label in labels
    }
    naive = cheapest(ins)
    # what meets the history's both parts when nothing meets them and the stress scenarios too
    without_stress = cheapest(ins, held)
    return {
        "holdout_days": holdout_min / 1440,
        "in_sample_days": folds[0].train_end / 1440,
        "stress_level": level,
        "stress_level_reason": why,
        "judged": "history as one, the objective itself"
        if pooled
        else "in-sample and held-out each with the margin, and stress",
        "stress_scenarios": {} if pooled else shape.describe(level),
        "stress_kinds": list(KINDS),
        "folds": [
            {
                "fold": r.fold.describe(),
                "level": r.level,
                "in_sample_pick": r.in_sample_pick,
                "in_sample_pick_meets_next_window": r.in_sample_pick_meets,
                "pick": r.pick,
                "surge": r.surge,
                "peak_ratio": round(r.peak_ratio, 4),
            }
            for r in fold_results
        ],
        "in_sample_only_pick": naive,
        "in_sample_only_pick_meets_held_out": bool(naive is not None and held.loc[naive, "meets"]),
        "cheapest_meeting_in_sample_and_held_out": without_stress,
        "candidates": table,
    }


def _fig(stats: pd.DataFrame, label: str) -> dict[str, Any]:
    row = stats.loc[label]
    return {
        "slo_violation_rate": float(row["slo_violation_rate"]),
        "error_rate": float(row["error_rate"]),
        "monthly_cost_usd": float(row["monthly_cost_usd"]),
        "meets": bool(row["meets"]),
    }
