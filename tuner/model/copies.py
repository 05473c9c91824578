"""Replay a profile against candidate policies of an inference component: copies of a model.

The units are copies (:class:`tuner.model.llm_capacity.LlmCapacity`); one
:class:`tuner.model.controller.TargetTracking` steps every candidate at once, on 10-s steps when a
policy or alarm reads a 10-s metric (``ConcurrentRequestsPerCopy``), else 60-s. Choices, once:

- Serving a step: :mod:`tuner.model.copy_serving` (copies at their concurrency limit, a
  queue that times out, TTFT and ITL from the curves; a request's N tokens take TTFT + N - 1
  inter-token gaps).
- ``ConcurrentRequestsPerCopy`` of a step is the Maximum of a count: requests in flight (on
  the copies and queued) at an instant, over the copies in service. [MODEL] Its peak over the
  step is the next whole request above the mean: ceil(n x ``x`` + the peak queue) / n
  (:func:`tuner.model.copy_serving.serve_step`). ``InvocationsPerCopy`` = requests / copies in
  service.
- Zero copies in service: every request of the step fails at once and is a
  ``NoCapacityInvocationFailures``, which the controller's step alarms read
  (``TargetTracking.step(..., no_capacity_failures=)``). No copy publishes the per-copy metrics
  then: their datapoints are missing (NaN to the controller; a 60-s InvocationsPerCopy sums the
  steps that had copies; :class:`ModelChoices` states the rule, the emulator follows it), which
  breaks the runs of breaching datapoints, so target tracking's scale-in alarm needs its 90
  (15) fresh low datapoints after the first copy serves again and cannot remove it while its
  load is still unseen.
- A scale-out loads copies in ``copy_load_s``, plus ``instance_boot_s`` when the first copy
  added finds no room on the running instances (:meth:`LlmCapacity.boot_s_for`), ± the boot
  jitter of :class:`tuner.model.settings.SimulationSettings` (``boot_s`` there, if set,
  replaces ``copy_load_s``).
- Billing: instances = ceil(desired copies / copies_per_instance) within the managed instance
  scaling range, loading ones included; a component at zero copies costs no instance when
  ``min_instances`` is 0.
- The objective: a request violates it when it fails, its TTFT exceeds ``slo_ttft_p99_ms`` or
  its ITL p99 ``slo_itl_p99_ms``; a step's shares come from log-normal latencies through its p50
  and p99 (:func:`tuner.model.capacity.slow_share`), the larger of the two.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import numpy as np
import pandas as pd

from tuner.errors import ValidationError
from tuner.model.controller import TargetTracking
from tuner.model.copy_serving import serve_step, violation_share
from tuner.model.llm_capacity import LlmCapacity
from tuner.model.scaling import ModelChoices, step_s_for
from tuner.model.settings import SimulationSettings
from tuner.model.simulator import SUMMARY_COLUMNS, check_size
from tuner.model.summary import Runs, candidate_labels, checked_demand, common_summary
from tuner.policy.policy import ScalingPolicy
from tuner.policy.tracking import MetricType
from tuner.profiles.profile import TrafficProfile

_BLOCK = 2048
LLM_SUMMARY_COLUMNS = (
    *SUMMARY_COLUMNS,
    "ttft_p99_ms",
    "itl_p99_ms",
    "e2e_p99_ms",
    "no_capacity_failures",
    "copy_hours",
    "mean_copies",
    "zero_copy_hours",
    "cold_starts",
)
LLM_TIMELINE_COLUMNS = (
    "t_s",
    "demand_rps",
    "invocations",
    "instances_in_service",
    "desired_capacity",
    "instances_billed",
    "concurrency_per_copy",
    "errors",
    "no_capacity_failures",
    "served",
    "queued",
    "p50_latency_ms",
    "p99_latency_ms",
    "ttft_p50_ms",
    "ttft_p99_ms",
    "itl_p50_ms",
    "itl_p99_ms",
    "e2e_p99_ms",
    "updating",
)


@dataclass(frozen=True)
class CopiesResult:
    """Per-candidate state per step (compact) and one summary row per candidate."""

    policies: tuple[ScalingPolicy, ...]
    period_s: int
    capacity: LlmCapacity
    slo_ttft_p99_ms: float
    slo_itl_p99_ms: float
    demand: np.ndarray = field(repr=False)
    desired: np.ndarray = field(repr=False)
    """(T, C) desired copies after the decisions at each step start."""
    in_service: np.ndarray = field(repr=False)
    queue_start: np.ndarray = field(repr=False)
    """(T, C) requests queued at each step start."""
    summary: pd.DataFrame = field(repr=False)

    def timeline(self, i: int) -> pd.DataFrame:
        """Candidate i, one row per step. The latency columns (p50/p99_latency_ms) are TTFT's,
        the objective's latency; ``e2e_p99_ms`` is TTFT p99 + (output tokens - 1) x ITL p99."""
        if not 0 <= i < len(self.policies):
            raise IndexError(f"candidate index must be in 0..{len(self.policies) - 1}, got {i}")
        cap, p = self.capacity, self.period_s
        n = self.in_service[:, i].astype(float)
        d = self.desired[:, i].astype(float)
        out = serve_step(cap, self.demand, n, self.queue_start[:, i], p)
        x = out.concurrency
        tokens = cap.gaps
        return pd.DataFrame(
            {
                "t_s": np.arange(len(self.demand)) * p,
                "demand_rps": self.demand / p,
                "invocations": self.demand,
                "instances_in_service": n.astype(int),
                "desired_capacity": d.astype(int),
                "instances_billed": cap.instances_for(d).astype(int),
                "concurrency_per_copy": x,
                "errors": out.failed,
                "no_capacity_failures": out.no_capacity,
                "served": out.served,
                "queued": out.queue_end,
                "p50_latency_ms": out.ttft_p50_ms,
                "p99_latency_ms": out.ttft_p99_ms,
                "ttft_p50_ms": out.ttft_p50_ms,
                "ttft_p99_ms": out.ttft_p99_ms,
                "itl_p50_ms": out.itl_p50_ms,
                "itl_p99_ms": out.itl_p99_ms,
                "e2e_p99_ms": np.minimum(out.ttft_p99_ms + tokens * out.itl_p99_ms, cap.timeout_ms),
                "updating": (d > n).astype(int),
            },
            columns=list(LLM_TIMELINE_COLUMNS),
        )


def steady_copies(policy: ScalingPolicy, capacity: LlmCapacity, rps: float) -> int:
    """Copies ``policy`` settles on for a steady ``rps`` (the warm start), within its range."""
    if rps <= 0 or policy.target_value is None:  # step policies alone: start at Min
        return policy.min_capacity
    if policy.metric_type is MetricType.CONCURRENT_REQUESTS_PER_COPY:
        target = min(policy.target_value, float(capacity.max_concurrency_per_copy))
        per_copy = target / float(capacity.duration_s_at(np.array([target]))[0])
    else:  # InvocationsPerCopy: requests per copy per minute
        per_copy = policy.target_value / 60.0
    need = math.ceil(rps / per_copy - 1e-9)
    return int(min(max(need, policy.min_capacity), policy.max_capacity))


def simulate_copies(
    profile: TrafficProfile,
    policies: Sequence[ScalingPolicy] | Sequence[Sequence[ScalingPolicy]],
    capacity: LlmCapacity,
    settings: SimulationSettings | None = None,
    *,
    seed: int = 0,
    initial_capacity: int | np.ndarray | None = None,
    slo_ttft_p99_ms: float | None = None,
    slo_itl_p99_ms: float | None = None,
) -> CopiesResult:
    """Replay ``profile`` (its seeded counts) against every candidate policy of a component."""
    period_s = step_s_for(policies)
    demand = np.asarray(profile.counts(period_s, seed=seed), dtype=float)
    return simulate_copies_demand(
        demand,
        period_s,
        policies,
        capacity,
        settings,
        seed=seed,
        initial_capacity=initial_capacity,
        slo_ttft_p99_ms=slo_ttft_p99_ms,
        slo_itl_p99_ms=slo_itl_p99_ms,
    )


def simulate_copies_demand(
    demand: np.ndarray,
    period_s: int,
    policies: Sequence[ScalingPolicy] | Sequence[Sequence[ScalingPolicy]],
    capacity: LlmCapacity,
    settings: SimulationSettings | None = None,
    *,
    seed: int = 0,
    initial_capacity: int | np.ndarray | None = None,
    slo_ttft_p99_ms: float | None = None,
    slo_itl_p99_ms: float | None = None,
) -> CopiesResult:
    """Replay ``demand`` (requests per step from t = 0); objectives default to the p99s at the
    concurrency limit. ``settings.seeds`` is ignored: ``seed`` draws the boot jitter."""
    settings = settings or SimulationSettings()
    demand = checked_demand(demand, period_s, policies)
    ttft_slo = capacity.ttft_p99_at_max_ms if slo_ttft_p99_ms is None else slo_ttft_p99_ms
    itl_slo = capacity.itl_p99_at_max_ms if slo_itl_p99_ms is None else slo_itl_p99_ms
    for flag, value in (("--slo-ttft-p99-ms", ttft_slo), ("--slo-itl-p99-ms", itl_slo)):
        if not (math.isfinite(value) and value > 0):
            raise ValidationError(f"{flag} > 0 must hold, got {value:g}")
    check_size(len(demand), policies, initial_capacity, ())
    if settings.boot_s is not None:
        capacity = replace(capacity, copy_load_s=float(settings.boot_s))
    choices = ModelChoices(metric_lag_s=settings.metric_lag_s, boot_s=capacity.copy_load_s)
    tt = TargetTracking(
        policies,
        choices=choices,
        initial_capacity=initial_capacity,
        step_s=period_s,
        record_events=False,
    )
    desired, in_service, queue = _run(tt, demand, capacity, settings.boot_jitter_s, seed)
    flat, labels = candidate_labels(policies)
    summary = summarise(
        capacity,
        demand,
        period_s,
        desired,
        in_service,
        queue,
        (tt.scale_out_count, tt.scale_in_count),
        ttft_slo,
        itl_slo,
    )
    summary.insert(0, "label", labels)
    return CopiesResult(
        flat,
        period_s,
        capacity,
        float(ttft_slo),
        float(itl_slo),
        demand,
        desired,
        in_service,
        queue,
        summary,
    )


def _run(
    tt: TargetTracking, demand: np.ndarray, capacity: LlmCapacity, jitter_s: float, seed: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The step loop: serve, feed the controller its three metrics, redraw the boot time."""
    T, C, P = len(demand), tt.C, tt.step_s
    desired = np.empty((T, C), dtype=np.int32)
    in_service = np.empty((T, C), dtype=np.int32)
    queue = np.zeros((T, C))
    rng = np.random.default_rng(seed) if jitter_s > 0 else None
    q = np.zeros(C)
    for k in range(T):
        n = tt.in_service
        desired[k] = tt.desired
        in_service[k] = n
        queue[k] = q
        out = serve_step(capacity, np.full(C, demand[k]), n, q, P)
        q = out.queue_end
        boot = capacity.boot_s_for(tt.desired)
        if rng is not None:
            boot = boot + rng.uniform(-jitter_s, jitter_s)
        tt.boot_s = np.maximum(boot, 0.0)
        served_by = np.where(n > 0, n, np.nan)  # per-copy metrics: missing at zero copies
        tt.advance(
            k,
            demand[k] / served_by,
            out.concurrency * (served_by / served_by),
            no_capacity_failures=out.no_capacity,
        )
    return desired, in_service, queue


def summarise(
    capacity: LlmCapacity,
    demand: np.ndarray,
    period_s: int,
    desired: np.ndarray,
    in_service: np.ndarray,
    queue: np.ndarray,
    events: tuple[np.ndarray, np.ndarray],
    slo_ttft_ms: float,
    slo_itl_ms: float,
) -> pd.DataFrame:
    """Totals over the run, one row per candidate (LLM_SUMMARY_COLUMNS without the label)."""
    T, C = desired.shape
    failed = np.zeros(C)
    slow = np.zeros(C)
    no_capacity = np.zeros(C)
    under_steps = np.zeros(C)
    runs = Runs(C)
    # per step p99s and weights, kept as float32 for the run's percentiles
    ttft99 = np.zeros((T, C), dtype=np.float32)
    itl99 = np.zeros((T, C), dtype=np.float32)
    e2e99 = np.zeros((T, C), dtype=np.float32)
    weight = np.zeros((T, C), dtype=np.float32)
    for r0 in range(0, T, _BLOCK):
        r1 = min(T, r0 + _BLOCK)
        n = in_service[r0:r1]
        out = serve_step(capacity, demand[r0:r1, None], n, queue[r0:r1], period_s)
        share = violation_share(out, slo_ttft_ms, slo_itl_ms)
        failed += out.failed.sum(axis=0)
        slow += (out.served * share).sum(axis=0)
        no_capacity += out.no_capacity.sum(axis=0)
        sustain = np.minimum(n, capacity.max_copies) * capacity.max_rps_per_copy * period_s
        under = demand[r0:r1, None] > sustain + 1e-9
        under_steps += under.sum(axis=0)
        t99, i99 = np.nan_to_num(out.ttft_p99_ms), np.nan_to_num(out.itl_p99_ms)
        runs.add(r0, under | (out.failed > 0) | (t99 > slo_ttft_ms) | (i99 > slo_itl_ms))
        ttft99[r0:r1] = t99
        itl99[r0:r1] = i99
        e2e99[r0:r1] = np.minimum(t99 + capacity.gaps * i99, capacity.timeout_ms)
        weight[r0:r1] = np.where(out.served > 0, out.served, 0.0)
    requests = float(demand.sum())
    instances = capacity.instances_for(desired)
    hours = instances.sum(axis=0) * period_s / 3600.0
    copy_hours = desired.sum(axis=0, dtype=np.int64) * period_s / 3600.0
    zero = desired == 0
    cold = (zero[:-1] & ~zero[1:]).sum(axis=0) if T > 1 else np.zeros(C, dtype=int)
    ttft_run = _weighted_p99(ttft99, weight, failed, capacity.timeout_ms)
    itl_run = _weighted_p99(itl99, weight, np.zeros(C), 0.0)
    return pd.DataFrame(
        {
            **common_summary(
                period_s=period_s,
                hours=hours,
                hourly_usd=capacity.hourly_usd,
                requests=requests,
                failed=failed,
                slow=slow,
                events=events,
                under_periods=under_steps,
                runs=runs.finish(T),
                p99_ms=ttft_run,
                mean_instances=instances.mean(axis=0) if T else np.zeros(C),
                max_instances=instances.max(axis=0, initial=0).astype(int),
            ),
            "ttft_p99_ms": ttft_run,
            "itl_p99_ms": itl_run,
            "e2e_p99_ms": _weighted_p99(e2e99, weight, failed, capacity.timeout_ms),
            "no_capacity_failures": no_capacity,
            "copy_hours": copy_hours,
            "mean_copies": desired.mean(axis=0) if T else np.zeros(C),
            "zero_copy_hours": zero.sum(axis=0) * period_s / 3600.0,
            "cold_starts": cold,
        }
    )


def _weighted_p99(
    values: np.ndarray, weight: np.ndarray, failed: np.ndarray, failed_at: float
) -> np.ndarray:
    """Per column, the 99th percentile over requests of per-step p99s (the ``failed`` requests
    at ``failed_at``): the run's p99 as the summary reports it; NaN without requests."""
    C = values.shape[1]
    v = np.concatenate([values.astype(float), np.full((1, C), failed_at)])
    w = np.concatenate([weight.astype(float), np.asarray(failed, dtype=float)[None, :]])
    order = np.argsort(v, axis=0, kind="stable")
    v_sorted = np.take_along_axis(v, order, axis=0)
    cum = np.cumsum(np.take_along_axis(w, order, axis=0), axis=0)
    total = cum[-1]
    k = np.argmax(cum >= 0.99 * np.maximum(total, 1e-12), axis=0)
    p99 = v_sorted[k, np.arange(C)]
    return np.asarray(np.where(total > 0, p99, np.nan))
