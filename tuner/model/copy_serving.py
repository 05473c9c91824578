"""Serving one step of an inference component's copies, for every candidate at once.

``n`` copies in service complete at most ``n x max_rps_per_copy`` requests per second (each
copy at its concurrency limit, Little's law); the rest queue, oldest first, and fail once they
would wait past ``timeout_ms``. The sequences in flight per copy are ``x`` with ``served rate
per copy = x / duration(x)``, duration = TTFT + (output tokens - 1) x ITL (p50s: the first
token ends the TTFT, N tokens take N - 1 gaps). TTFT is the curve's at ``x`` plus the queue wait
(mean wait for p50, the longest for p99); ITL is the curve's at ``x``.

``ConcurrentRequestsPerCopy`` is the Maximum of a count: requests in flight (on the copies and
queued) at an instant, over the copies in service. [MODEL] Its peak over the step is the next
whole request above the mean, ceil(n x ``x`` + the peak queue) / n: a count whose mean is 2.3 is
3 at some instant; the mean alone reads low by up to 1 / n, which on one or two copies decides
target tracking's alarms (the local AWS measures the true Maximum).

A request violates the objective when it fails, its TTFT exceeds the TTFT objective or its ITL
p99 the ITL objective (:func:`violation_share`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tuner.model.capacity import slow_share
from tuner.model.llm_capacity import LlmCapacity

_WHOLE = 1e-9
"""A mean within this of a whole number of requests is that number (no spurious + 1)."""


@dataclass(frozen=True)
class StepServing:
    """One step's outcome per candidate (arrays of one shape)."""

    served: np.ndarray
    failed: np.ndarray
    """Requests failed: timed out in the queue, or met no copy (those are also no_capacity)."""
    no_capacity: np.ndarray
    queue_end: np.ndarray
    concurrency: np.ndarray
    """ConcurrentRequestsPerCopy (Maximum): ceil(sequences in flight + peak queue) per copy."""
    ttft_p50_ms: np.ndarray
    ttft_p99_ms: np.ndarray
    itl_p50_ms: np.ndarray
    itl_p99_ms: np.ndarray
    """NaN where nothing was served."""


def serve_step(
    capacity: LlmCapacity,
    arrivals: np.ndarray,
    copies: np.ndarray,
    queue_start: np.ndarray,
    period_s: float,
) -> StepServing:
    """Serve one step: arrivals plus the carried queue meet ``copies`` copies in service."""
    a = np.asarray(arrivals, dtype=float)
    n = np.minimum(np.asarray(copies, dtype=float), capacity.max_copies)
    q0 = np.asarray(queue_start, dtype=float)
    rate = n * capacity.max_rps_per_copy
    offered = q0 + a
    served = np.minimum(offered, rate * period_s)
    backlog = offered - served
    failed = np.maximum(backlog - rate * capacity.timeout_ms / 1000.0, 0.0)
    q1 = backlog - failed
    no_capacity = np.where(n > 0, 0.0, failed)
    per_copy = np.maximum(n, 1.0)
    x = capacity.concurrency_at(served / (period_s * per_copy))
    peak_q = np.maximum(q0, q1)
    with np.errstate(divide="ignore", invalid="ignore"):
        wait_mean = np.where(rate > 0, 500.0 * (q0 + q1) / rate, 0.0)
        wait_peak = np.where(rate > 0, 1000.0 * peak_q / rate, 0.0)
    t50, t99 = capacity.ttft_ms_at(x)
    i50, i99 = capacity.itl_ms_at(x)
    none = served <= 0
    nan = np.nan
    peak = np.ceil(np.minimum(n, per_copy) * x + peak_q - _WHOLE) / per_copy
    return StepServing(
        served,
        failed,
        no_capacity,
        q1,
        peak,
        np.where(none, nan, np.minimum(t50 + wait_mean, capacity.timeout_ms)),
        np.where(none, nan, np.minimum(t99 + wait_peak, capacity.timeout_ms)),
        np.where(none, nan, i50),
        np.where(none, nan, i99),
    )


def violation_share(out: StepServing, slo_ttft_ms: float, slo_itl_ms: float) -> np.ndarray:
    """Share of a step's served requests over the TTFT or ITL objective."""
    ttft = slow_share(out.ttft_p50_ms, out.ttft_p99_ms, slo_ttft_ms)
    itl = slow_share(out.itl_p50_ms, out.itl_p99_ms, slo_itl_ms)
    return np.asarray(np.where(out.served > 0, np.maximum(ttft, itl), 0.0))
