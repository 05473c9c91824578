"""What the two simulators (instances, :mod:`tuner.model.simulator`; copies,
:mod:`tuner.model.copies`) share: the demand check, candidate labels, the summary's common
columns and the runs of unhealthy periods behind ``surges`` and ``recovery_s``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from tuner.errors import ValidationError
from tuner.model.scaling import step_s_for
from tuner.policy.policy import ScalingPolicy

Candidates = Sequence[ScalingPolicy] | Sequence[Sequence[ScalingPolicy]]


def checked_demand(demand: np.ndarray, period_s: int, policies: Candidates) -> np.ndarray:
    """``demand`` as floats, refused unless 1-D, finite and >= 0 and ``period_s`` is the step
    these policies run on."""
    demand = np.asarray(demand, dtype=float)
    if demand.ndim != 1 or not np.isfinite(demand).all() or (demand < 0).any():
        raise ValidationError("demand must be a 1-D array of request counts >= 0")
    finest = step_s_for(policies)
    if period_s != finest:
        raise ValidationError(f"period_s must be {finest} s for these policies, got {period_s}")
    return demand


def candidate_labels(policies: Candidates) -> tuple[tuple[ScalingPolicy, ...], list[str]]:
    """Each candidate's first policy, and its label (a list of policies joins theirs by +)."""
    first = tuple(p if isinstance(p, ScalingPolicy) else p[0] for p in policies)
    labels = [
        p.label if isinstance(p, ScalingPolicy) else "+".join(q.label for q in p) for p in policies
    ]
    return first, labels


def common_summary(
    *,
    period_s: int,
    hours: np.ndarray,
    hourly_usd: float,
    requests: float,
    failed: np.ndarray,
    slow: np.ndarray,
    events: tuple[np.ndarray, np.ndarray],
    under_periods: np.ndarray,
    runs: tuple[np.ndarray, np.ndarray],
    p99_ms: np.ndarray,
    mean_instances: np.ndarray,
    max_instances: np.ndarray,
) -> dict[str, Any]:
    """The summary columns both simulators report (SUMMARY_COLUMNS without the label), one value
    per candidate: rates over the requests, ``runs`` the (surges, longest run in periods)."""
    denom = requests if requests > 0 else 1.0
    surges, longest = runs
    return {
        "instance_hours": hours,
        "cost_usd": hours * hourly_usd,
        "error_rate": failed / denom,
        "slo_violation_rate": (failed + slow) / denom,
        "scale_out_events": np.asarray(events[0]).astype(int),
        "scale_in_events": np.asarray(events[1]).astype(int),
        "underprovisioned_minutes": under_periods * period_s / 60.0,
        "recovery_s": longest * float(period_s),
        "surges": surges,
        "p99_latency_ms": p99_ms,
        "requests": requests,
        "failed": failed,
        "mean_instances": mean_instances,
        "max_instances": max_instances,
    }


class Runs:
    """Runs of True down each column of a (T, C) bool array that arrives in blocks of rows.

    Only the transitions are kept (few), so the whole array is never stored or transposed.
    """

    def __init__(self, C: int) -> None:
        self.C = C
        self._last = np.zeros(C, dtype=bool)  # the row before the next block
        self._starts: list[np.ndarray] = []  # flat (row x C + column) of a run's first row
        self._ends: list[np.ndarray] = []  # flat index of the first row after a run

    def add(self, r0: int, block: np.ndarray) -> None:
        """Rows r0.. of the array (the blocks come in order)."""
        before = np.empty_like(block)
        before[0] = self._last
        before[1:] = block[:-1]
        offset = r0 * self.C
        self._starts.append(np.flatnonzero(block > before) + offset)
        self._ends.append(np.flatnonzero(block < before) + offset)
        self._last = block[-1].copy()

    def finish(self, T: int) -> tuple[np.ndarray, np.ndarray]:
        """Per column: how many runs, and the longest (in rows)."""
        C = self.C
        starts = np.concatenate([*self._starts, np.zeros(0, dtype=np.intp)])
        ends = np.concatenate([*self._ends, T * C + np.flatnonzero(self._last)])
        # flat indices grow with the row; a stable sort by column keeps each column's in order,
        # so a column's i-th start pairs with its i-th end
        s_col, e_col = starts % C, ends % C
        s_order = np.argsort(s_col, kind="stable")
        e_order = np.argsort(e_col, kind="stable")
        surges = np.bincount(s_col, minlength=C)
        longest = np.zeros(C, dtype=np.int64)
        if len(starts):
            lengths = (ends[e_order] - starts[s_order]) // C
            has = surges > 0
            first = np.concatenate([[0], np.cumsum(surges)[:-1]])[has]
            longest[has] = np.maximum.reduceat(lengths, first)
        return surges, longest
