"""Replay a traffic profile against many candidate policies at once, fast.

A Python loop over metric periods drives one :class:`tuner.model.controller.TargetTracking`
whose state
is numpy arrays across candidates; the serving model of :mod:`tuner.model.capacity` turns demand and
instances in service into served, failed and latency. Inside the loop only what the controller
needs is computed (the metric, the queue when the endpoint is overloaded); latency, SLO
violations and the summary are computed afterwards over whole blocks of periods.

Choices, stated once:

- One period for all candidates: 10 s if any candidate tracks a high-resolution (10-s) metric,
  else 60 s; 60-s metrics are then summed from six 10-s periods by the controller.
- InvocationsPerInstance of a period = requests received in the period / instances in service
  (at least 1), so booting instances do not count; failed requests count too, as SageMaker
  counts every invocation.
- Billing: instances are billed from launch, so booting instances cost as much as serving ones:
  instance-hours = sum of desired capacity x period.
- SLO objective: ``slo_p99_ms``, by default the capacity's p99 at ``max_rps_per_instance``.
  A request violates it when it fails or is slower; a period's latency is taken as log-normal
  through its p50 and p99 to estimate the slower share.
- A period is under-provisioned when demand exceeds what the instances in service sustain
  (``max_rps_per_instance`` each). A surge is the start of a run of unhealthy periods
  (under-provisioned, failing, or p99 over the objective); ``recovery_s`` is the longest such run.
- Requests still queued when the profile ends count as served.
- Boot jitter: a scale-out decided in period k boots for ``boot_s`` + uniform(-jitter, +jitter),
  at least 0, one draw per period from ``seed`` shared by every candidate (common random numbers:
  a candidate's result does not depend on which others are simulated beside it, and candidates
  are compared under the same luck).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from tuner.errors import ValidationError
from tuner.model.capacity import Capacity, concurrency_per_instance, serve_period, slow_share
from tuner.model.controller import TargetTracking
from tuner.model.scaling import ScheduledAction, step_s_for
from tuner.model.settings import SimulationSettings
from tuner.model.summary import Runs, candidate_labels, checked_demand, common_summary
from tuner.policy.policy import ScalingPolicy
from tuner.profiles.profile import TrafficProfile

TIMELINE_COLUMNS = (
    "t_s",
    "demand_rps",
    "invocations",
    "instances_in_service",
    "desired_capacity",
    "invocations_per_instance",
    "alarm_high",
    "alarm_low",
    "errors",
    "p99_latency_ms",
    "p50_latency_ms",
    "served",
    "queued",
    "updating",
    "concurrency_per_instance",
)
SUMMARY_COLUMNS = (
    "label",
    "instance_hours",
    "cost_usd",
    "error_rate",
    "slo_violation_rate",
    "scale_out_events",
    "scale_in_events",
    "underprovisioned_minutes",
    "recovery_s",
    "surges",
    "p99_latency_ms",
    "requests",
    "failed",
    "mean_instances",
    "max_instances",
)
_BLOCK = 2048
MAX_INSTANCES = 1_000
"""Most instances a candidate may reach: the serving tables hold (block rows x instances)."""
MAX_CANDIDATE_PERIODS = 50_000_000
"""Most candidates x periods in one run: the timelines of every candidate stay in memory
(about 2.5 times the 1,000 candidates x 14 days of minutes that `make bench` times)."""
_CODE_SHIFT = 10
_BIN_MASK = (1 << _CODE_SHIFT) - 1
_EXACT_CHUNK = 16384
_P99_BINS = np.geomspace(1.0, 1e6, 400)  # 3.5% wide; the bin index fits under _CODE_SHIFT


@dataclass(frozen=True)
class SimulationResult:
    """Per-candidate timelines (compact arrays) and one summary row per candidate."""

    policies: tuple[ScalingPolicy, ...]
    period_s: int
    capacity: Capacity
    slo_p99_ms: float
    demand: np.ndarray = field(repr=False)
    """Requests per period, shared by all candidates (T,)."""
    desired: np.ndarray = field(repr=False)
    """(T, C) desired capacity after decisions at each period start."""
    in_service: np.ndarray = field(repr=False)
    alarm_high: np.ndarray = field(repr=False)
    """(T, C) bool: any AlarmHigh in ALARM after the evaluation at the period start."""
    alarm_low: np.ndarray = field(repr=False)
    queue_rows: np.ndarray = field(repr=False)
    """Periods that start with requests queued (sorted), the only ones that do."""
    queue_values: np.ndarray = field(repr=False)
    """(len(queue_rows), C) requests queued at the start of those periods."""
    summary: pd.DataFrame = field(repr=False)

    @property
    def queue_start(self) -> np.ndarray:
        """(T, C) requests queued at each period start."""
        out = np.zeros(self.desired.shape)
        out[self.queue_rows] = self.queue_values
        return out

    def window_summary(self, r0: int, r1: int) -> pd.DataFrame:
        """The summary of periods [r0, r1) only, as the run reached them (state carried in).

        A tuning validates on the newest part of a history this way without simulating it
        apart: the simulation is causal, so its prefix is what a shorter history would give.
        Scale events are counted from changes of desired capacity inside the window.
        """
        T = len(self.demand)
        if not 0 <= r0 < r1 <= T:
            raise IndexError(f"0 <= r0 < r1 <= {T} must hold, got {r0}, {r1}")
        d = self.desired[max(r0 - 1, 0) : r1].astype(np.int32)
        step = np.diff(d, axis=0)
        lo, hi = np.searchsorted(self.queue_rows, [r0, r1])
        out = _summarise(
            ((step > 0).sum(axis=0), (step < 0).sum(axis=0)),
            self.demand[r0:r1],
            self.period_s,
            self.capacity,
            self.slo_p99_ms,
            self.desired[r0:r1],
            self.in_service[r0:r1],
            self.queue_rows[lo:hi] - r0,
            self.queue_values[lo:hi],
        )
        out.insert(0, "label", [p.label for p in self.policies])
        return out

    def timeline(self, i: int) -> pd.DataFrame:
        """Candidate i, one row per period: DESIGN.md's timeline.csv columns first."""
        if not 0 <= i < len(self.policies):
            raise IndexError(f"candidate index must be in 0..{len(self.policies) - 1}, got {i}")
        p = self.period_s
        n = self.in_service[:, i].astype(float)
        d = self.desired[:, i].astype(float)
        queued = np.zeros(len(self.demand))
        queued[self.queue_rows] = self.queue_values[:, i]
        out = serve_period(self.capacity, self.demand, n, queued, p)
        return pd.DataFrame(
            {
                "t_s": np.arange(len(self.demand)) * p,
                "demand_rps": self.demand / p,
                "invocations": self.demand,
                "instances_in_service": n.astype(int),
                "desired_capacity": d.astype(int),
                "invocations_per_instance": self.demand / np.maximum(n, 1),
                "alarm_high": self.alarm_high[:, i].astype(int),
                "alarm_low": self.alarm_low[:, i].astype(int),
                "errors": out.failed,
                "p99_latency_ms": out.p99_ms,
                "p50_latency_ms": out.p50_ms,
                "served": out.served,
                "queued": out.queue_end,
                "updating": (d > n).astype(int),
                "concurrency_per_instance": out.concurrency_per_instance,
            },
            columns=list(TIMELINE_COLUMNS),
        )


def simulate(
    profile: TrafficProfile,
    policies: Sequence[ScalingPolicy] | Sequence[Sequence[ScalingPolicy]],
    capacity: Capacity,
    settings: SimulationSettings | None = None,
    *,
    seed: int = 0,
    initial_capacity: int | np.ndarray | None = None,
    scheduled: Sequence[ScheduledAction] = (),
) -> SimulationResult:
    """Replay ``profile`` (its seeded counts) against every candidate policy."""
    period_s = step_s_for(policies)
    demand = np.asarray(profile.counts(period_s, seed=seed), dtype=float)
    return simulate_demand(
        demand,
        period_s,
        policies,
        capacity,
        settings,
        seed=seed,
        initial_capacity=initial_capacity,
        scheduled=scheduled,
    )


def check_size(
    periods: int,
    policies: Sequence[ScalingPolicy] | Sequence[Sequence[ScalingPolicy]],
    initial_capacity: int | np.ndarray | None,
    scheduled: Sequence[ScheduledAction],
) -> None:
    """Refuse a run that would not fit in memory, naming the limit."""
    flat = [p for g in policies for p in ([g] if isinstance(g, ScalingPolicy) else g)]
    tops = [p.max_capacity for p in flat]
    for a in scheduled:
        for bound in (a.min_capacity, a.max_capacity):
            # a bound is one number, or one per candidate with NaN where the action leaves it
            values = np.asarray(bound if bound is not None else 0, dtype=float)
            tops.append(int(np.nanmax(values, initial=0)))
    if initial_capacity is not None:
        tops.append(int(np.max(initial_capacity)))
    top = max(tops, default=0)
    if top > MAX_INSTANCES:
        raise ValidationError(
            f"the simulator models at most {MAX_INSTANCES:,} instances (MaxCapacity, scheduled "
            f"and initial capacity), got {top:,}"
        )
    cells = periods * len(policies)
    if cells > MAX_CANDIDATE_PERIODS:
        raise ValidationError(
            f"candidates x periods must be at most {MAX_CANDIDATE_PERIODS:,} to fit in memory, "
            f"got {len(policies):,} x {periods:,} = {cells:,}; shorten the profile or the grid"
        )


def simulate_demand(
    demand: np.ndarray,
    period_s: int,
    policies: Sequence[ScalingPolicy] | Sequence[Sequence[ScalingPolicy]],
    capacity: Capacity,
    settings: SimulationSettings | None = None,
    *,
    seed: int = 0,
    initial_capacity: int | np.ndarray | None = None,
    scheduled: Sequence[ScheduledAction] = (),
) -> SimulationResult:
    """Replay ``demand`` (requests per period from t = 0) against every candidate policy.

    A candidate is one policy, or a list of policies on one target. ``settings`` defaults to
    :class:`SimulationSettings` (the CLI's defaults); its ``seeds`` are ignored here: ``seed``
    chooses the boot-jitter draws.
    """
    settings = settings or SimulationSettings()
    demand = checked_demand(demand, period_s, policies)
    boot = settings.boot_for(capacity)
    slo = settings.slo_for(capacity)
    check_size(len(demand), policies, initial_capacity, scheduled)
    tt = TargetTracking(
        policies,
        choices=settings.model_choices(capacity),
        initial_capacity=initial_capacity,
        scheduled=scheduled,
        step_s=period_s,
        record_events=False,
    )
    desired, in_service, high, low, q_rows, q_values = _run(
        tt, demand, capacity, boot, settings.boot_jitter_s, seed
    )
    candidates, labels = candidate_labels(policies)
    summary = _summarise(
        (tt.scale_out_count, tt.scale_in_count),
        demand,
        period_s,
        capacity,
        slo,
        desired,
        in_service,
        q_rows,
        q_values,
    )
    summary.insert(0, "label", labels)
    return SimulationResult(
        candidates,
        period_s,
        capacity,
        slo,
        demand,
        desired,
        in_service,
        high,
        low,
        q_rows,
        q_values,
        summary,
    )


def _run(
    tt: TargetTracking,
    demand: np.ndarray,
    capacity: Capacity,
    boot_s: float,
    jitter_s: float,
    seed: int,
) -> tuple[np.ndarray, ...]:
    """The period loop: record state, serve (queue only when overloaded), step the controller."""
    T, C, P = len(demand), tt.C, tt.step_s
    high = np.empty((T, C), dtype=bool)
    low = np.empty((T, C), dtype=bool)
    q_rows: list[int] = []
    q_values: list[np.ndarray] = []
    per_step = capacity.max_rps_per_instance * P
    queue_room = capacity.max_rps_per_instance * capacity.timeout_ms / 1000.0
    conc = tt.tracks_concurrency
    rng = np.random.default_rng(seed) if jitter_s > 0 else None
    q = zero = np.zeros(C)
    queued = False
    dtype = np.int16 if float(tt.max_capacity.max(initial=0)) < 32_000 else np.int32
    desired = np.empty((T, C), dtype=dtype)
    in_service = np.empty((T, C), dtype=dtype)
    n_prev = None
    n_min = 0.0
    divisor = zero
    arrivals = demand.tolist()  # Python floats: scalar arithmetic on numpy scalars costs more
    for k in range(T):
        a = arrivals[k]
        n = tt.in_service
        desired[k] = tt.desired
        in_service[k] = n
        if n is not n_prev:  # replaced, never modified in place, when capacity changes
            n_prev = n
            n_min = float(n.min())
            # per-instance metrics divide by at least 1 (inference components may reach 0)
            divisor = n if n_min >= 1 else np.maximum(n, 1.0)
        if tt.J == 1:
            high[k] = tt.alarm_high_on[:, 0]
            low[k] = tt.alarm_low_on[:, 0]
        else:
            high[k] = tt.alarm_high_on.any(axis=1)
            low[k] = (tt.alarm_low_on & tt.active).any(axis=1)
        q0 = q
        if queued or a > per_step * n_min:
            if queued:
                q_rows.append(k)
                q_values.append(q)
            offered = q + a
            backlog = offered - np.minimum(offered, n * per_step)
            q = np.minimum(backlog, n * queue_room)
            queued = bool(np.count_nonzero(q))
        concurrency = None
        if conc:
            load = np.minimum(a + q0 - q, n * per_step) / (P * divisor)
            concurrency = concurrency_per_instance(capacity, load, q0, q, n)
        if rng is not None:
            tt.boot_s = np.full(C, max(boot_s + rng.uniform(-jitter_s, jitter_s), 0.0))
        tt.advance(k, a / divisor, concurrency, copy=False)
        if not queued:
            q = zero
    rows = np.array(q_rows, dtype=np.intp)
    values = np.stack(q_values) if q_values else np.zeros((0, C))
    return desired, in_service, high, low, rows, values


def _summarise(
    events: tuple[np.ndarray, np.ndarray],
    demand: np.ndarray,
    period_s: int,
    capacity: Capacity,
    slo_ms: float,
    desired: np.ndarray,
    in_service: np.ndarray,
    q_rows: np.ndarray,
    q_values: np.ndarray,
) -> pd.DataFrame:
    """Totals over the run, computed over blocks of periods (memory stays bounded).

    Without a queue a period's outcome depends only on its demand and the instances in service,
    so it is tabulated per (period, instance count) and gathered; overloaded or queued cells are
    served exactly.
    """
    T, C = desired.shape
    sustain = capacity.max_rps_per_instance * period_s
    nbins = len(_P99_BINS) + 1
    width = int(in_service.max(initial=0)) + 1
    counts = np.arange(width, dtype=float)
    failed = np.zeros(C)
    slow = np.zeros(C)
    under = np.zeros(C, dtype=np.int64)
    hist = np.zeros(C * nbins)
    runs = Runs(C)
    col_bins = np.arange(C) * nbins
    # Block-sized work arrays are allocated once and filled with out=: fresh 16-MB temporaries per
    # block cost more in page faults than the gathers that fill them.
    B = min(T, _BLOCK)
    idx_buf = np.empty((B, C), dtype=np.intp)
    packed_buf = np.empty((B, C), dtype=np.int16)
    slow_buf = np.empty((B, C))
    bins_buf = np.empty((B, C), dtype=np.intp)
    weights_buf = np.empty((B, C))
    q_buf = np.empty((B, C))
    for r0 in range(0, T, _BLOCK):
        r1 = min(T, r0 + _BLOCK)
        m = r1 - r0
        # Tables over (demand of a period, instances in service), as if nothing were queued;
        # request counts repeat, so once per distinct demand.
        levels, level_of = np.unique(demand[r0:r1], return_inverse=True)
        a = levels[:, None]
        load = a / (period_s * np.maximum(counts, 1.0))
        p50, p99 = capacity.latency_ms_at(load)
        short_tab = a > counts * sustain
        slow_tab = np.where(short_tab, 0.0, a * slow_share(p50, p99, slo_ms)).ravel()
        # code (0 healthy, 1 p99 over the objective, 2 under-provisioned: served exactly below)
        # and p99 histogram bin, packed in one int16 so that one gather fetches both
        code_tab = (short_tab | ((a > 0) & (p99 > slo_ms))).astype(np.int16) + short_tab
        packed_tab = ((code_tab << _CODE_SHIFT) | np.searchsorted(_P99_BINS, p99)).ravel()
        row_base = (level_of * width).astype(np.intp)[:, None]
        idx = np.add(in_service[r0:r1], row_base, out=idx_buf[:m])
        # indices are in range by construction; mode="clip" lets take() write into out unbuffered
        packed = np.take(packed_tab, idx, out=packed_buf[:m], mode="clip")
        slow_cells = np.take(slow_tab, idx, out=slow_buf[:m], mode="clip").ravel()
        bins = np.add(packed & _BIN_MASK, col_bins, out=bins_buf[:m]).ravel()
        code = packed >> _CODE_SHIFT
        short = code == 2
        # a bool counted as uint8 into int16 (a block has < 32768 rows): same count, less work
        under += short.view(np.uint8).sum(axis=0, dtype=np.int16)
        bad = code > 0
        lo, hi = np.searchsorted(q_rows, [r0, r1])
        q = q_buf[:m]
        q.fill(0.0)
        if hi > lo:
            q[q_rows[lo:hi] - r0] = q_values[lo:hi]
            exact = short | (q > 0)
        else:
            exact = short
        weights = weights_buf[:m]  # exact cells overwrite theirs
        weights[:] = demand[r0:r1, None]
        weights = weights.ravel()
        flat = np.flatnonzero(exact)
        fails = np.empty(len(flat))
        n_flat, q_flat, short_flat, bad_flat = (
            in_service[r0:r1].ravel(),
            q.ravel(),
            short.ravel(),
            bad.ravel(),
        )
        # Exact cells are served in chunks: elementwise, so the same values, but the temporaries
        # of serve_period and slow_share stay in cache instead of being allocated 2M at a time.
        for c0 in range(0, len(flat), _EXACT_CHUNK):
            f = flat[c0 : c0 + _EXACT_CHUNK]
            rows, cols = np.divmod(f, C)
            out = serve_period(
                capacity,
                demand[r0 + rows],
                n_flat[f],
                q_flat[f],
                period_s,
                with_concurrency=False,
            )
            slow_cells[f] = out.served * slow_share(out.p50_ms, out.p99_ms, slo_ms)
            fails[c0 : c0 + _EXACT_CHUNK] = out.failed
            p99x = np.nan_to_num(out.p99_ms)
            bad_flat[f] = (out.failed > 0) | (p99x > slo_ms) | short_flat[f]
            bins[f] = np.searchsorted(_P99_BINS, p99x) + cols * nbins
            weights[f] = out.served + out.failed
        # one bincount per block, as the failures of a column are summed in row order
        failed += np.bincount(flat % C, fails, C)
        slow += slow_cells.reshape(m, C).sum(axis=0)
        hist += np.bincount(bins, weights, C * nbins)
        runs.add(r0, bad)
    requests = float(demand.sum())
    billed = desired.sum(axis=0, dtype=np.int64).astype(float)
    hours = billed * period_s / 3600.0
    cdf = np.cumsum(hist.reshape(C, nbins), axis=1)
    total = cdf[:, -1:]
    k99 = np.argmax(cdf >= 0.99 * np.maximum(total, 1e-12), axis=1)
    edges = np.concatenate([_P99_BINS, [_P99_BINS[-1]]])
    # a bin's upper edge, but no request outlives the timeout
    p99_run = np.where(total[:, 0] > 0, np.minimum(edges[k99], capacity.timeout_ms), np.nan)
    return pd.DataFrame(
        common_summary(
            period_s=period_s,
            hours=hours,
            hourly_usd=capacity.hourly_usd,
            requests=requests,
            failed=failed,
            slow=slow,
            events=events,
            under_periods=under,
            runs=runs.finish(T),
            p99_ms=p99_run,
            mean_instances=billed / max(T, 1),
            max_instances=desired.max(axis=0, initial=0).astype(int),
        )
    )
