"""The finer search on a history: a coarse lattice first, then every integer MinCapacity and
every cooldown pair near the best, then target values bisected towards the feasibility edge.

MinCapacity runs from the lowest useful level (what the 10th percentile of per-minute demand
needs) to the level that covers the stressed peak; the coarse pass takes a geometric ladder of
those levels and the refinement fills in every integer between the rungs around the cheapest
candidates. MaxCapacity is the level that carries the stressed peak at the candidate's own
target, with headroom, capped by ``--max-instances`` (the account quota).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import replace

import numpy as np

from tuner.model.capacity import Capacity
from tuner.policy.policy import ScalingPolicy
from tuner.tune.grid import Grid

LADDER = 1.5
"""Ratio between coarse MinCapacity rungs."""
HEADROOM = 1.25
TARGET_STEP = 0.1
BISECT_POINTS = 3


def min_levels(rates_rps: np.ndarray, max_rps: float, level: float) -> tuple[int, int]:
    """(lowest useful MinCapacity, the level covering the stressed peak)."""
    low = max(1, math.ceil(float(np.percentile(rates_rps, 10)) / max_rps - 1e-9))
    high = max(low, math.ceil(float(rates_rps.max()) * level / max_rps - 1e-9))
    return low, high


def ladder(low: int, high: int) -> list[int]:
    out, x = [low], float(low)
    while out[-1] < high:
        x = max(x * LADDER, out[-1] + 1)
        out.append(min(high, round(x)))
    return out


def _policy(
    mn: int,
    target: float,
    out_s: int,
    in_s: int,
    peak_rps: float,
    cap: int | None,
) -> ScalingPolicy:
    need = math.ceil(peak_rps * 60.0 / target * HEADROOM - 1e-9)
    mx = max(mn, need if cap is None else min(need, cap))
    return ScalingPolicy(
        min_capacity=mn,
        max_capacity=mx,
        target_value=round(target, 1),
        scale_out_cooldown_s=out_s,
        scale_in_cooldown_s=in_s,
    )


def coarse(
    rates_rps: np.ndarray,
    capacity: Capacity,
    grid: Grid,
    level: float,
    max_instances: int | None,
) -> list[ScalingPolicy]:
    """The coarse lattice: targets every 0.1 of the grid's range, MinCapacity rungs, the
    extreme cooldowns of the grid."""
    max_rps = capacity.max_rps_per_instance
    low, high = min_levels(rates_rps, max_rps, level)
    if max_instances is not None:
        high = min(high, max_instances)
        low = min(low, high)
    lo_f, hi_f = min(grid.target_fractions), max(grid.target_fractions)
    n = max(1, round((hi_f - lo_f) / TARGET_STEP))
    fractions = np.linspace(lo_f, hi_f, n + 1)
    outs = sorted({min(grid.scale_out_cooldowns_s), max(grid.scale_out_cooldowns_s)})
    ins = sorted({min(grid.scale_in_cooldowns_s), max(grid.scale_in_cooldowns_s)})
    peak = float(rates_rps.max()) * level
    return [
        _policy(mn, max_rps * 60 * f, o, i, peak, max_instances)
        for mn in ladder(low, high)
        for f in fractions
        for o in outs
        for i in ins
    ]


def neighbours(
    best: Sequence[ScalingPolicy], pool: Sequence[ScalingPolicy], grid: Grid
) -> list[ScalingPolicy]:
    """Around each of ``best``: every integer MinCapacity between its rung neighbours, every
    cooldown pair of the grid, and target values one half-step either side."""
    mins = sorted({p.min_capacity for p in pool})
    out: dict[str, ScalingPolicy] = {}
    for b in best:
        i = mins.index(b.min_capacity) if b.min_capacity in mins else 0
        lo = mins[i - 1] + 1 if i > 0 else b.min_capacity
        hi = mins[i + 1] - 1 if i + 1 < len(mins) else b.min_capacity
        for mn in range(lo, hi + 1):
            p = replace(b, min_capacity=mn, max_capacity=max(b.max_capacity, mn))
            out[p.label] = p
        for o in grid.scale_out_cooldowns_s:
            for i_s in grid.scale_in_cooldowns_s:
                p = replace(b, scale_out_cooldown_s=int(o), scale_in_cooldown_s=int(i_s))
                out[p.label] = p
        if b.target_value is None:  # step policies alone: no target to move
            continue
        step = b.target_value * TARGET_STEP / 2
        for t in (b.target_value - step, b.target_value + step):
            if t > 0:
                p = replace(b, target_value=round(t, 1))
                out[p.label] = p
    return list(out.values())


def bisect_targets(
    best: Sequence[ScalingPolicy], pool: Sequence[ScalingPolicy]
) -> list[ScalingPolicy]:
    """Target values between each of ``best`` and the next higher target tried with the same
    other settings (the feasibility edge lies between them): ``BISECT_POINTS`` evenly spaced."""
    out: dict[str, ScalingPolicy] = {}
    for b in best:
        if b.target_value is None:
            continue
        higher = [
            p.target_value
            for p in pool
            if p.target_value is not None
            and p.target_value > b.target_value
            and (p.min_capacity, p.scale_out_cooldown_s, p.scale_in_cooldown_s)
            == (b.min_capacity, b.scale_out_cooldown_s, b.scale_in_cooldown_s)
        ]
        top = min(higher) if higher else b.target_value * (1 + TARGET_STEP)
        for k in range(1, BISECT_POINTS + 1):
            t = b.target_value + (top - b.target_value) * k / (BISECT_POINTS + 1)
            p = replace(b, target_value=round(t, 1))
            out[p.label] = p
    return list(out.values())
