"""Held-out evidence on a history: candidates simulated once over the whole history, then judged
on its parts (the older in-sample part, the newest held-out window, walk-forward folds) and on
stress scenarios; and the amount of safety calibrated on those folds.

The simulation is causal, so a candidate's prefix of the whole history is exactly what it would
do on the shorter history: one run per candidate and seed gives every fold (see
:meth:`tuner.model.simulator.SimulationResult.window_summary`).

**How much safety, from evidence.** Each fold asks: had we tuned on its past, how much safety
would the pick have needed to meet the objective itself (not the tuner's margin) on the window
after it? The rungs, least first:

- ``x0`` (:data:`POOLED`): no safety bought. The cheapest policy that meets the objective itself
  over the past as a whole, the way the objective is stated: a share of all the window's
  requests, every event weighted by how often it came.
- ``x1``, ``x1.1``, ... (:data:`tuner.tune.stress.LEVELS`): the tuner's margin on the bounds,
  the past's parts judged each on their own, and the stress scenarios at that level.

A fold whose next window peaks above everything in its past is a *surge* fold: it shows the
future outgrowing the past once, not how much margin the kind of traffic already seen needs.
One surge, of whatever size, does not say how large the next will be: a level fitted to it buys
margin against a repeat of that one event in every window, and judged against a short
validation window the event counts as if it came every few days. So surge folds are reported
but calibrate the level only when every fold is one (demand keeps outgrowing its past: a trend,
which the levels above x1 are for). A fold
that stays within its past's range yet was missed by the ``x0`` pick shows that this traffic's
ordinary ramps need margin, and it lifts the level (the ELB trace: its seventh day peaks at 0.97x
the first six days' peak, yet the pick tuned on them misses it).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from tuner.model.capacity import Capacity
from tuner.model.settings import SimulationSettings
from tuner.model.simulator import SimulationResult
from tuner.policy.policy import ScalingPolicy
from tuner.tune.history import DemandProfile, Fold
from tuner.tune.search import HOURS_PER_MONTH, Objective, simulate_candidates
from tuner.tune.stress import LEVELS, Shape

IN_SAMPLE = "in-sample"
HELD_OUT = "held-out"
HISTORY = "whole history"
"""The in-sample part and the held-out window pooled: the whole history, judged as one."""
POOLED = 0.0
"""The calibration's lowest rung: no margin, no stress, the history judged as one (see above)."""
_SUMS = ("requests", "failed", "bad", "instance_hours", "minutes")


def _rows(
    profile: DemandProfile,
    policies: Sequence[ScalingPolicy],
    parts: dict[str, tuple[int, int]],
    capacity: Capacity,
    objective: Objective,
    settings: SimulationSettings,
    seed: int,
) -> tuple[pd.DataFrame, SimulationResult]:
    """One row per candidate and part (minute ranges of ``profile``) for one seed."""
    result = simulate_candidates(profile, policies, capacity, objective, settings, seed)
    per_min = int(60 // result.period_s)
    frames = []
    for part, (a, b) in parts.items():
        w = result.window_summary(a * per_min, b * per_min)
        frames.append(
            pd.DataFrame(
                {
                    "candidate": [p.label for p in policies],
                    "part": part,
                    "seed": seed,
                    "requests": w["requests"].to_numpy(),
                    "failed": w["failed"].to_numpy(),
                    "bad": (w["slo_violation_rate"] * w["requests"]).to_numpy(),
                    "instance_hours": w["instance_hours"].to_numpy(),
                    "minutes": float(b - a),
                    "p99_latency_ms": w["p99_latency_ms"].to_numpy(),
                    "scale_out_events": w["scale_out_events"].to_numpy(),
                    "scale_in_events": w["scale_in_events"].to_numpy(),
                    "recovery_s": w["recovery_s"].to_numpy(),
                }
            )
        )
    return pd.concat(frames, ignore_index=True), result


@dataclass
class Evidence:
    """Rows of (candidate, part, seed) sums, grown as the search simulates more candidates."""

    capacity: Capacity
    objective: Objective
    settings: SimulationSettings
    rows: pd.DataFrame | None = None
    kept: dict[str, tuple[SimulationResult, int]] = field(default_factory=dict)
    """label -> (run, column) of each candidate's first-seed run of the history: its timeline
    for the report without simulating it again."""
    groups: dict[str, list[str]] = field(default_factory=dict)
    """part -> the disjoint blocks it is made of (each period is summarised once; sums add)."""
    dilution: dict[str, float] = field(default_factory=dict)
    """part -> factor on its request count when judging rates: a stress scenario stands for
    one event inside a held-out window, so its failures count against that window's traffic."""

    def add(
        self,
        profile: DemandProfile,
        policies: Sequence[ScalingPolicy],
        parts: dict[str, tuple[int, int]],
        seeds: Sequence[int],
        *,
        keep: bool = False,
    ) -> None:
        """Simulate the policies not yet seen on ``profile`` with ``seeds``, keep their parts
        (and with ``keep``, the first seed's runs, for timelines)."""
        have = set()
        if self.rows is not None:
            have = set(
                zip(
                    self.rows["candidate"],
                    self.rows["part"],
                    self.rows["seed"],
                    strict=True,
                )
            )
        first = next(iter(parts))
        for seed in seeds:
            todo = [p for p in policies if (p.label, first, seed) not in have]
            todo = list({p.label: p for p in todo}.values())
            if not todo:
                continue
            new, result = _rows(
                profile, todo, parts, self.capacity, self.objective, self.settings, seed
            )
            if keep and seed == self.settings.seeds[0]:
                self.kept.update({p.label: (result, i) for i, p in enumerate(todo)})
            self.rows = new if self.rows is None else pd.concat([self.rows, new], ignore_index=True)

    def timeline(self, label: str) -> pd.DataFrame | None:
        """The first seed's timeline of ``label`` on the history, if it was kept."""
        if label not in self.kept:
            return None
        result, i = self.kept[label]
        return result.timeline(i)

    def blocks(self, parts: Sequence[str]) -> list[str]:
        """The blocks of ``parts`` (a part not grouped is its own block)."""
        return [b for p in parts for b in self.groups.get(p, [p])]

    def dilute(self, parts: dict[str, tuple[int, int]], window_min: int) -> None:
        """Judge each of ``parts`` as one event inside a window of ``window_min`` minutes."""
        for part, (a, b) in parts.items():
            self.dilution[part] = max(1.0, window_min / max(b - a, 1))

    def stats(
        self,
        parts: Sequence[str],
        labels: Sequence[str] | None = None,
        seeds: Sequence[int] = (),
        *,
        raw: bool = False,
    ) -> pd.DataFrame:
        """Per candidate over ``parts`` pooled: worst-seed rates, mean-seed monthly cost, meets
        (the objective's bounds with its margin; ``raw``: the bounds themselves)."""
        assert self.rows is not None
        r = self.rows[self.rows["part"].isin(self.blocks(parts))]
        if seeds:
            r = r[r["seed"].isin(list(seeds))]
        if labels is not None:
            r = r[r["candidate"].isin(list(labels))]
        if self.dilution:
            r = r.assign(weighted=r["requests"] * r["part"].map(self.dilution).fillna(1.0))
        else:
            r = r.assign(weighted=r["requests"])
        g = r.groupby(["candidate", "seed"], sort=False)[[*_SUMS, "weighted"]].sum()
        req = g["weighted"].where(g["weighted"] > 0, 1.0)
        per = pd.DataFrame(
            {
                "error_rate": g["failed"] / req,
                "slo_violation_rate": g["bad"] / req,
                "monthly_cost_usd": g["instance_hours"]
                / (g["minutes"] / 60.0)
                * HOURS_PER_MONTH
                * self.capacity.hourly_usd,
            }
        )
        out = per.groupby(level=0, sort=False).agg(
            error_rate=("error_rate", "max"),
            slo_violation_rate=("slo_violation_rate", "max"),
            monthly_cost_usd=("monthly_cost_usd", "mean"),
        )
        o = self.objective
        v_bound, e_bound = (
            (o.max_slo_violation, o.max_error_rate) if raw else (o.violation_bound, o.error_bound)
        )
        out["meets"] = (out["slo_violation_rate"] <= v_bound) & (out["error_rate"] <= e_bound)
        return out

    def worst(
        self, parts: Sequence[str], labels: Sequence[str] | None = None, seeds: Sequence[int] = ()
    ) -> pd.DataFrame:
        """Per candidate, each part judged alone (stress scenarios): the worst part's rates."""
        each = [self.stats([part], labels, seeds) for part in parts]
        out = each[0].copy()
        for other in each[1:]:
            for col in ("error_rate", "slo_violation_rate"):
                out[col] = np.maximum(out[col], other[col].reindex(out.index))
            out["meets"] &= other["meets"].reindex(out.index, fill_value=False)
        return out


def cheapest(
    cost: pd.DataFrame, *gates: pd.DataFrame, among: Sequence[str] | None = None
) -> str | None:
    """The cheapest candidate (by ``cost``) that meets every gate, or None."""
    ok = cost["meets"].copy()
    for gate in gates:
        ok &= gate["meets"].reindex(ok.index, fill_value=False)
    if among is not None:
        ok &= ok.index.isin(list(among))
    hits = cost[ok]
    if hits.empty:
        return None
    return str(hits.sort_values(["monthly_cost_usd", "slo_violation_rate"]).index[0])


@dataclass(frozen=True)
class FoldResult:
    """What one walk-forward fold showed: the level it needed and the policy it would pick."""

    fold: Fold
    level: float | None
    """Least rung (:data:`POOLED` or a stress level) whose pick met the objective on the
    validation window (None: none)."""
    in_sample_pick: str | None
    """The cheapest candidate meeting the objective on the fold's training part alone."""
    in_sample_pick_meets: bool
    pick: str | None
    """The pick at ``level``."""
    surge: bool = False
    """The validation window peaks above everything in the fold's past."""
    peak_ratio: float = float("nan")
    """The validation window's peak over the past's peak (per-minute demand)."""


def calibrate(
    evidence: Evidence,
    rates_rps: np.ndarray,
    folds: Sequence[Fold],
    policies: Sequence[ScalingPolicy],
    reaction_s: float,
    seed: int,
    levels: Sequence[float] = LEVELS,
    chunk: int = 40,
) -> list[FoldResult]:
    """For each fold, the least rung at which tuning on its past meets its future.

    The rungs are :data:`POOLED` (the past as one, the objective itself, no stress), then
    ``levels`` (margin, the past's parts and stress at that level). The next window is judged
    by the objective itself: what the tuner has to predict, not its own margin.
    """
    by_label = {p.label: p for p in policies}
    out = []
    for n, fold in enumerate(folds):
        train, valid = f"fold{n}:train", f"fold{n}:valid"
        tr = evidence.stats([train], list(by_label), seeds=[seed])
        va = evidence.stats([valid], list(by_label), seeds=[seed], raw=True)
        plain = cheapest(tr)
        past = float(rates_rps[: fold.train_end].max(initial=0.0))
        ahead = float(rates_rps[fold.train_end : fold.end].max(initial=0.0))
        ratio = ahead / past if past > 0 else float("inf")
        surge = ahead > past
        pooled = cheapest(evidence.stats([train], list(by_label), seeds=[seed], raw=True))
        if pooled is not None and bool(va.loc[pooled, "meets"]):
            out.append(FoldResult(fold, POOLED, plain, _meets(va, plain), pooled, surge, ratio))
            continue
        shape = Shape.of(rates_rps[: fold.train_end], reaction_s)
        order = list(tr[tr["meets"]].sort_values("monthly_cost_usd").index)
        found: FoldResult | None = None
        for level in levels:
            profile, parts = stress_profile(shape, level, f"fold{n}")
            evidence.dilute(parts, fold.end - fold.train_end)
            pick = None
            for i in range(0, len(order), chunk):
                batch = [by_label[label] for label in order[i : i + chunk]]
                evidence.add(profile, batch, parts, [seed])
                st = evidence.worst(list(parts), [p.label for p in batch], seeds=[seed])
                pick = cheapest(tr, st, among=[p.label for p in batch])
                if pick is not None:
                    break
            if pick is None:
                break  # no candidate survives this level: higher ones are harder still
            if bool(va.loc[pick, "meets"]):
                found = FoldResult(fold, level, plain, _meets(va, plain), pick, surge, ratio)
                break
        out.append(found or FoldResult(fold, None, plain, _meets(va, plain), None, surge, ratio))
    return out


def _meets(stats: pd.DataFrame, label: str | None) -> bool:
    return label is not None and bool(stats.loc[label, "meets"])


def stress_profile(
    shape: Shape, level: float, prefix: str, start_epoch_s: float | None = None
) -> tuple[DemandProfile, dict[str, tuple[int, int]]]:
    """The four scenarios played one after another, and their parts (minute ranges).

    Their failures are judged against a held-out window's traffic (see ``Evidence.dilution``).
    ``start_epoch_s`` is the clock of the first scenario's minute 0 (the busiest day's midnight,
    for scheduled floors); every scenario lasts whole days, so each keeps its time of day.
    """
    scenarios = shape.scenarios(level)
    parts: dict[str, tuple[int, int]] = {}
    at = 0
    for s in scenarios:
        parts[f"{prefix}:{s.name}"] = (at, at + len(s.rates_rps))
        at += len(s.rates_rps)
    rates = np.concatenate([s.rates_rps for s in scenarios])
    return DemandProfile(f"{prefix}:stress x{level:g}", rates, start_epoch_s), parts


def _levels(xs: Sequence[float]) -> str:
    return ", ".join(f"x{x:g}" for x in xs)


def required_level(results: Sequence[FoldResult]) -> tuple[float, str]:
    """The rung to tune with, and the reason in words.

    The largest any fold needed, counting only folds whose next window stayed within their
    past's peak, unless every fold is a surge (see the module's docstring); a fold no rung fixes
    does not force the top level either.
    """
    if not results:
        return 1.0, "no walk-forward fold fits in the history; stress at x1 (as observed)"
    within = [r for r in results if not r.surge]
    counted = within or list(results)
    needed = [r.level for r in counted if r.level is not None]
    surges = [r for r in results if r.surge]
    note = (
        f"; {len(surges)} of {len(results)} folds met a surge (their next window peaked at "
        + ", ".join(f"{r.peak_ratio:.2f}x" for r in surges)
        + " their past's peak), which says the future once outgrew the past, not how much "
        "margin the traffic seen needs, so they do not set the level"
        if surges and within
        else ""
    )
    if not needed:
        return 1.0, (
            f"no level up to x{LEVELS[-1]:g} made any of the {len(counted)} walk-forward folds "
            "meet the objective on the window after it: stress cannot buy that safety, so the "
            "scenarios stay at x1 (as observed)" + note
        )
    level = max(needed)
    kind = "within their past's peak " if within and surges else ""
    head = (
        f"the largest level the {len(needed)} of {len(counted)} walk-forward folds {kind}that "
        f"any level fixed needed (levels: {_levels(needed)}); the others were not met at any "
        f"level up to x{LEVELS[-1]:g}"
        if len(needed) < len(counted)
        else f"the largest level any of the {len(counted)} walk-forward folds {kind}needed for a "
        f"policy tuned on its past to meet the objective on the window after it (levels: "
        f"{_levels(needed)})"
    )
    if level == POOLED:
        head += (
            "; x0: the cheapest policy meeting the objective itself over its past as a whole "
            "met it on the next window too, so no margin or stress is bought and the "
            "recommendation meets the objective over the whole history (in-sample and "
            "held-out together)"
        )
    return level, head + note
