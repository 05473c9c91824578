"""A plain, one-candidate implementation of target-tracking.md, written from the text alone.

It shares no code with tuner.model.controller or tuner.model.simulator: time in seconds, lists
of datapoints,
one policy at a time in ordinary loops. The property test runs both and compares timelines.
It follows the model choices the package documents (tuner.model.scaling.ModelChoices):

- datapoint of [s, s + P) is visible at the first decision boundary >= s + P + lag;
- a boot started at t completes at the first boundary >= t + boot, at least one step later;
- AlarmHigh: the last 3 visible datapoints > T; AlarmLow: the last 15 (90 for 10-s metrics)
  < 0.9 T; an alarm calls scaling when it enters ALARM and every 60 s while it stays there;
- cooldowns belong to the target: a scale-out opens the longest ScaleOutCooldown of the policies
  that asked, when it completes; a scale-in the longest ScaleInCooldown of the enabled policies;
- InvocationsPerInstance of a step = requests / max(instances in service, 1), summed to 60 s;
  ConcurrentRequestsPerModel = served rate x p50 latency + peak queue, per instance;
- the queue: what the instances cannot serve waits; beyond max rate x timeout it fails.

``summarise`` then serves each period of the timeline again and totals the run as the summary
row of tuner.model.simulator is documented (cost, failures, SLO violations, surges, the run's
p99), so
the property test checks summaries too and the benchmark times the same work on both sides.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from statistics import NormalDist


@dataclass
class Rule:
    """One target-tracking policy as the scalar model needs it."""

    target: float
    out_cooldown_s: float = 300
    in_cooldown_s: float = 300
    disable_scale_in: bool = False
    high_resolution: bool = False  # ConcurrentRequestsPerModel (10 s) instead of Invocations


@dataclass
class Serving:
    max_rps: float = 20.0
    timeout_s: float = 60.0
    curve: list[tuple[float, float]] = field(default_factory=lambda: [(5, 40.0), (20, 60.0)])
    """(rps per instance, p50 ms) points."""
    p99_curve: list[tuple[float, float]] = field(default_factory=lambda: [(5, 80.0), (20, 150.0)])
    """(rps per instance, p99 ms) points."""
    hourly_usd: float = 0.23

    def p50_ms(self, rps: float) -> float:
        return _interpolate(self.curve, rps)

    def p99_ms(self, rps: float) -> float:
        return _interpolate(self.p99_curve, rps)


def _interpolate(pts: list[tuple[float, float]], rps: float) -> float:
    """Linear between points, flat beyond both ends."""
    if rps <= pts[0][0]:
        return pts[0][1]
    for (x0, y0), (x1, y1) in zip(pts, pts[1:], strict=False):
        if rps <= x1:
            return y0 + (y1 - y0) * (rps - x0) / (x1 - x0)
    return pts[-1][1]


@dataclass
class Timeline:
    desired: list[int] = field(default_factory=list)
    in_service: list[int] = field(default_factory=list)
    alarm_high: list[bool] = field(default_factory=list)
    alarm_low: list[bool] = field(default_factory=list)
    queue_start: list[float] = field(default_factory=list)
    scale_outs: int = 0
    scale_ins: int = 0


def run(
    demand: list[float],
    step_s: int,
    rules: list[Rule],
    min_capacity: int,
    max_capacity: int,
    *,
    lag_s: float,
    boot_s: float | list[float],
    initial: int | None = None,
    scheduled: list[tuple[float, int | None, int | None]] = (),  # type: ignore[assignment]
    serving: Serving | None = None,
) -> Timeline:
    """Simulate one candidate; ``boot_s`` may be a list: the boot time drawn at each step."""
    serving = serving or Serving()
    lo, hi = min_capacity, max_capacity
    schedule = sorted(scheduled)
    while schedule and schedule[0][0] <= 0:
        _, new_lo, new_hi = schedule.pop(0)
        lo = lo if new_lo is None else new_lo
        hi = hi if new_hi is None else new_hi
    desired = min(max(lo if initial is None else initial, lo), hi)
    in_service = desired
    updating = False
    complete_at = math.inf
    pending_base = 0
    pending_cooldown: float | None = None
    out_cooldown_end = -math.inf
    out_base = 0
    in_cooldown_end = -math.inf
    # per metric kind: datapoints (visible_at, value) waiting, and the ones already visible
    waiting: dict[bool, list[tuple[float, float]]] = {False: [], True: []}
    partial = 0.0
    seen: dict[bool, list[float]] = {False: [], True: []}
    high_since: list[float | None] = [None] * len(rules)
    low_since: list[float | None] = [None] * len(rules)
    queue = 0.0
    out = Timeline()

    def boot_at(k: int) -> float:
        return boot_s[k] if isinstance(boot_s, list) else boot_s

    def boundary_at_or_after(x: float) -> float:
        return math.ceil(x / step_s - 1e-9) * step_s

    for k, arrivals in enumerate(demand):
        start = k * step_s
        t = start + step_s
        out.desired.append(desired)
        out.in_service.append(in_service)
        out.alarm_high.append(any(s is not None for s in high_since))
        out.alarm_low.append(any(s is not None for s in low_since))
        out.queue_start.append(queue)
        # serve the step
        n = in_service
        offered = queue + arrivals
        served = min(offered, n * serving.max_rps * step_s)
        backlog = offered - served
        new_queue = min(backlog, n * serving.max_rps * serving.timeout_s)
        old_queue, queue = queue, new_queue
        # metrics: 60-s InvocationsPerInstance sums the steps of its minute
        partial += arrivals / max(n, 1)
        if t % 60 == 0:
            waiting[False].append((boundary_at_or_after(t + lag_s), partial))
            partial = 0.0
        if step_s == 10:
            load = served / (step_s * max(n, 1))
            concurrency = load * serving.p50_ms(load) / 1000 + max(old_queue, queue) / max(n, 1)
            waiting[True].append((boundary_at_or_after(t + lag_s), concurrency))
        # 1. boots complete
        if updating and complete_at <= t:
            updating = False
            complete_at = math.inf
            in_service = desired
            if pending_cooldown is not None:
                out_cooldown_end = t + pending_cooldown
                out_base = pending_base
                pending_cooldown = None
        # 2. scheduled actions
        while schedule and schedule[0][0] <= t:
            _, new_lo, new_hi = schedule.pop(0)
            lo = lo if new_lo is None else new_lo
            hi = hi if new_hi is None else new_hi
            moved = min(max(desired, lo), hi)
            if moved < desired:
                out.scale_ins += 1
                desired = moved
                in_service = min(in_service, desired)
                if updating and in_service >= desired:
                    updating, complete_at, pending_cooldown = False, math.inf, None
            elif moved > desired:
                out.scale_outs += 1
                if not updating:
                    pending_cooldown = None
                desired = moved
                updating = True
                complete_at = t + max(1, math.ceil(boot_at(k) / step_s - 1e-9)) * step_s
        # 3. visible datapoints, alarm states
        new_data = {False: False, True: False}
        for kind in (False, True):
            while waiting[kind] and waiting[kind][0][0] <= t:
                seen[kind].append(waiting[kind].pop(0)[1])
                new_data[kind] = True
        high_now, low_now, high_call, low_call = [], [], [], []
        for j, rule in enumerate(rules):
            data = seen[rule.high_resolution]
            need_low = 90 if rule.high_resolution else 15
            is_high = len(data) >= 3 and all(v > rule.target for v in data[-3:])
            is_low = len(data) >= need_low and all(v < 0.9 * rule.target for v in data[-need_low:])
            if new_data[rule.high_resolution]:
                if is_high and high_since[j] is None:
                    high_since[j] = t
                if not is_high:
                    high_since[j] = None
                if is_low and low_since[j] is None:
                    low_since[j] = t
                if not is_low:
                    low_since[j] = None
            is_high = high_since[j] is not None
            is_low = low_since[j] is not None
            high_now.append(is_high)
            low_now.append(is_low)
            high_call.append(is_high and (t - high_since[j]) % 60 == 0)
            low_call.append(is_low and (t - low_since[j]) % 60 == 0)
        # 4. required capacity per policy
        base = out_base if t < out_cooldown_end else desired
        required = []
        for rule in rules:
            data = seen[rule.high_resolution]
            if not data:
                required.append(None)
                continue
            r = math.ceil(base * data[-1] / rule.target - 1e-9)
            required.append(min(max(r, lo), hi))
        # 5. scale out
        asking = [
            j
            for j in range(len(rules))
            if high_call[j] and required[j] is not None and required[j] > desired
        ]
        if asking and not updating:
            pending_base = base
            pending_cooldown = max(rules[j].out_cooldown_s for j in asking)
            desired = max(required[j] for j in asking)
            updating = True
            complete_at = t + max(1, math.ceil(boot_at(k) / step_s - 1e-9)) * step_s
            in_cooldown_end = -math.inf
            out.scale_outs += 1
        # 6. scale in
        enabled = [j for j, rule in enumerate(rules) if not rule.disable_scale_in]
        if (
            enabled
            and not updating
            and t >= in_cooldown_end
            and any(low_call[j] for j in enabled)
            and all(low_now[j] and required[j] < desired for j in enabled)
        ):
            desired = max(required[j] for j in enabled)
            in_service = desired
            in_cooldown_end = t + max(rules[j].in_cooldown_s for j in enabled)
            out.scale_ins += 1
    return out


@dataclass
class Summary:
    """The run's totals for one candidate, as tuner.model.simulator's summary row defines them."""

    instance_hours: float
    cost_usd: float
    requests: float
    failed: float
    slow: float
    error_rate: float
    slo_violation_rate: float
    underprovisioned_minutes: float
    surges: int
    recovery_s: float
    p99_latency_ms: float
    mean_instances: float
    max_instances: int


def summarise(
    demand: list[float],
    step_s: int,
    timeline: Timeline,
    slo_ms: float,
    serving: Serving | None = None,
) -> Summary:
    """Serve every period of ``timeline`` again, one at a time, and total the run.

    Per period: the instances in service serve at most max_rps x step; the rest waits, and what
    would wait past the timeout fails. Latency is the curve's at the served load per instance
    plus the queue wait (mean wait for p50, the longest for p99), capped at the timeout; the
    share slower than ``slo_ms`` comes from a log-normal through p50 and p99. A period is
    unhealthy when it is under-provisioned (demand above what the instances sustain), fails
    requests, or its p99 exceeds the objective; a surge is a run of unhealthy periods. The run's
    p99 is the 99th percentile of the periods' p99, weighted by requests served or failed.
    """
    serving = serving or Serving()
    z99 = NormalDist().inv_cdf(0.99)
    timeout_ms = serving.timeout_s * 1000.0
    failed_total = slow_total = 0.0
    under = 0
    surges = longest = run = 0
    weighted: list[tuple[float, float]] = []  # (p99 of the period, requests)
    for k, arrivals in enumerate(demand):
        n = timeline.in_service[k]
        queue = timeline.queue_start[k]
        rate = n * serving.max_rps
        offered = queue + arrivals
        served = min(offered, rate * step_s)
        backlog = offered - served
        failed = max(backlog - rate * serving.timeout_s, 0.0)
        queue_end = backlog - failed
        short = arrivals > rate * step_s
        p99 = 0.0
        if served > 0:
            load = served / (step_s * n)
            wait_mean_ms = 500.0 * (queue + queue_end) / rate
            wait_peak_ms = 1000.0 * max(queue, queue_end) / rate
            p50 = min(serving.p50_ms(load) + wait_mean_ms, timeout_ms)
            p99 = min(serving.p99_ms(load) + wait_peak_ms, timeout_ms)
            sigma = math.log(p99 / p50) / z99
            if sigma > 1e-12:
                z = (math.log(slo_ms) - math.log(p50)) / sigma
                slower = 0.5 * math.erfc(z / math.sqrt(2.0))
            else:
                slower = 1.0 if p50 > slo_ms else 0.0
            slow_total += served * slower
        failed_total += failed
        under += short
        weighted.append((p99, served + failed))
        if short or failed > 0 or p99 > slo_ms:
            run += 1
            surges += run == 1
            longest = max(longest, run)
        else:
            run = 0
    requests = sum(demand)
    total = sum(w for _, w in weighted)
    p99_run = math.nan
    if total > 0:
        seen = 0.0
        for value, w in sorted(weighted):
            seen += w
            if seen >= 0.99 * total:
                p99_run = value
                break
    hours = sum(timeline.desired) * step_s / 3600.0
    denom = requests if requests > 0 else 1.0
    return Summary(
        instance_hours=hours,
        cost_usd=hours * serving.hourly_usd,
        requests=requests,
        failed=failed_total,
        slow=slow_total,
        error_rate=failed_total / denom,
        slo_violation_rate=(failed_total + slow_total) / denom,
        underprovisioned_minutes=under * step_s / 60.0,
        surges=surges,
        recovery_s=longest * float(step_s),
        p99_latency_ms=p99_run,
        mean_instances=sum(timeline.desired) / max(len(demand), 1),
        max_instances=max(timeline.desired, default=0),
    )
