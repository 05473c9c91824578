"""The inference-component case of the scalar reference model, written from the docstrings alone.

Copies of a model serve requests; one copy holds at most ``limit`` sequences. A request lasts
TTFT + output tokens x ITL (p50 curves); at a served rate per copy the sequences in flight x
solve x = rate x duration(x) (found here by bisection). Queueing, the no-capacity failures at
zero copies, the ConcurrentRequestsPerCopy metric, the load time of a copy (plus an instance's
boot when the next copy finds no room) and billing by instances follow tuner.model.copies's
module docstring. ``scalar_model.run(..., copies=CopyServing(...))`` uses it step by step;
``summarise`` totals a run as tuner.model.copies.summarise documents it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from statistics import NormalDist


def _interp(pts: list[tuple[float, float]], x: float) -> float:
    if x <= pts[0][0]:
        return pts[0][1]
    for (x0, y0), (x1, y1) in zip(pts, pts[1:], strict=False):
        if x <= x1:
            return y0 + (y1 - y0) * (x - x0) / (x1 - x0)
    return pts[-1][1]


@dataclass
class CopyServing:
    ttft: list[tuple[float, float, float]] = field(
        default_factory=lambda: [(1, 200.0, 300.0), (4, 350.0, 600.0), (8, 700.0, 1300.0)]
    )
    """(concurrency, p50 ms, p99 ms)."""
    itl: list[tuple[float, float, float]] = field(
        default_factory=lambda: [(1, 55.0, 65.0), (4, 60.0, 75.0), (8, 70.0, 95.0)]
    )
    limit: int = 8
    output_tokens: float = 256.0
    timeout_s: float = 60.0
    copies_per_instance: int = 1
    copy_load_s: float = 258.0
    instance_boot_s: float = 300.0
    hourly_usd: float = 1.2224

    def ttft_ms(self, x: float) -> tuple[float, float]:
        return (
            _interp([(c, p50) for c, p50, _ in self.ttft], x),
            _interp([(c, p99) for c, _, p99 in self.ttft], x),
        )

    def itl_ms(self, x: float) -> tuple[float, float]:
        return (
            _interp([(c, p50) for c, p50, _ in self.itl], x),
            _interp([(c, p99) for c, _, p99 in self.itl], x),
        )

    def duration_s(self, x: float) -> float:
        # N tokens: the first ends the TTFT, then N - 1 inter-token gaps
        return (self.ttft_ms(x)[0] + (self.output_tokens - 1) * self.itl_ms(x)[0]) / 1000.0

    @property
    def max_rate(self) -> float:
        """Requests per second one copy completes at the limit."""
        return self.limit / self.duration_s(self.limit)

    def in_flight(self, rate: float) -> float:
        """x with x = rate x duration(x), by bisection on [0, limit]."""
        if rate <= 0:
            return 0.0
        if rate >= self.max_rate:
            return float(self.limit)
        lo, hi = 0.0, float(self.limit)
        for _ in range(56):
            mid = (lo + hi) / 2
            if mid / self.duration_s(mid) < rate:
                lo = mid
            else:
                hi = mid
        return (lo + hi) / 2

    def instances(self, copies: int) -> int:
        return math.ceil(copies / self.copies_per_instance)

    def boot_s(self, desired: int) -> float:
        """Load time of a scale-out from ``desired`` copies."""
        room = self.instances(desired) * self.copies_per_instance
        return self.copy_load_s + (self.instance_boot_s if desired + 1 > room else 0.0)

    def serve(
        self, arrivals: float, n: int, queue: float, step_s: int
    ) -> tuple[float, float, float, float, float]:
        """(served, failed, queue at the end, ConcurrentRequestsPerCopy, no-capacity failures)."""
        rate = n * self.max_rate
        offered = queue + arrivals
        served = min(offered, rate * step_s)
        backlog = offered - served
        failed = max(backlog - rate * self.timeout_s, 0.0)
        new_queue = backlog - failed
        x = self.in_flight(served / (step_s * n)) if n > 0 else 0.0
        # the Maximum of a count of requests: the next whole request above the mean
        metric = math.ceil(n * x + max(queue, new_queue) - 1e-9) / max(n, 1)
        return served, failed, new_queue, metric, failed if n == 0 else 0.0


@dataclass
class CopySummary:
    cost_usd: float
    instance_hours: float
    failed: float
    no_capacity: float
    slo_violation_rate: float
    error_rate: float
    underprovisioned_minutes: float
    surges: int
    recovery_s: float
    ttft_p99_ms: float
    zero_copy_hours: float
    cold_starts: int


def summarise(
    demand: list[float],
    step_s: int,
    desired: list[int],
    in_service: list[int],
    queue_start: list[float],
    slo_ttft_ms: float,
    slo_itl_ms: float,
    copies: CopyServing,
) -> CopySummary:
    z99 = NormalDist().inv_cdf(0.99)

    def slower(p50: float, p99: float, objective: float) -> float:
        sigma = math.log(p99 / p50) / z99
        if sigma <= 1e-12:
            return 1.0 if p50 > objective else 0.0
        return 0.5 * math.erfc((math.log(objective) - math.log(p50)) / sigma / math.sqrt(2.0))

    timeout_ms = copies.timeout_s * 1000.0
    failed_total = slow_total = nocap_total = 0.0
    under = surges = run = longest = 0
    weighted: list[tuple[float, float]] = []
    for k, arrivals in enumerate(demand):
        n, queue = in_service[k], queue_start[k]
        served, failed, queue_end, _, nocap = copies.serve(arrivals, n, queue, step_s)
        rate = n * copies.max_rate
        short = arrivals > rate * step_s + 1e-9
        t99 = i99 = 0.0
        if served > 0:
            x = copies.in_flight(served / (step_s * n))
            t50, t99 = copies.ttft_ms(x)
            i50, i99 = copies.itl_ms(x)
            t50 = min(t50 + 500.0 * (queue + queue_end) / rate, timeout_ms)
            t99 = min(t99 + 1000.0 * max(queue, queue_end) / rate, timeout_ms)
            share = max(slower(t50, t99, slo_ttft_ms), slower(i50, i99, slo_itl_ms))
            slow_total += served * share
            weighted.append((t99, served))
        failed_total += failed
        nocap_total += nocap
        under += short
        if short or failed > 0 or t99 > slo_ttft_ms or i99 > slo_itl_ms:
            run += 1
            surges += run == 1
            longest = max(longest, run)
        else:
            run = 0
    weighted.append((timeout_ms, failed_total))
    total = sum(w for _, w in weighted)
    ttft_run = math.nan
    seen = 0.0
    for value, w in sorted(weighted):
        seen += w
        if total > 0 and seen >= 0.99 * total:
            ttft_run = value
            break
    requests = sum(demand) or 1.0
    hours = sum(copies.instances(d) for d in desired) * step_s / 3600.0
    zero = [d == 0 for d in desired]
    return CopySummary(
        cost_usd=hours * copies.hourly_usd,
        instance_hours=hours,
        failed=failed_total,
        no_capacity=nocap_total,
        slo_violation_rate=(failed_total + slow_total) / requests,
        error_rate=failed_total / requests,
        underprovisioned_minutes=under * step_s / 60.0,
        surges=surges,
        recovery_s=longest * float(step_s),
        ttft_p99_ms=ttft_run,
        zero_copy_hours=sum(zero) * step_s / 3600.0,
        cold_starts=sum(a and not b for a, b in zip(zero, zero[1:], strict=False)),
    )
