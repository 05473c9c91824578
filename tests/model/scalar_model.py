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
- the queue: what the instances cannot serve waits; beyond max rate x timeout it fails;
- step policies (reference §8): each has its own alarm, M of the newest N visible datapoints
  breaching (60-s InvocationsPerInstance, 10-s ConcurrentRequestsPerModel, or its peak per
  minute), called when it enters ALARM and every 60 s while there; the step is picked by
  value - threshold (lower bound inclusive above the threshold, upper bound inclusive below),
  value = the aggregation (Average, Minimum, Maximum) of the window; ChangeInCapacity adds,
  ExactCapacity sets, PercentChangeInCapacity adds the percentage rounded toward zero past 1 and
  away from zero under 1, at least MinAdjustmentMagnitude; its cooldown starts when its
  scale-out completes, and while it runs the policy adjusts the capacity from before that
  scale-out; scale-ins wait for its own scale-in cooldown; any scale-out ends scale-in cooldowns;
- target tracking and step policies together: the largest capacity asked for above the desired
  one scales out; failing that, the largest below it scales in (target tracking's share needing
  all its enabled policies to agree, as above).

``summarise`` then serves each period of the timeline again and totals the run as the summary
row of tuner.model.simulator is documented (cost, failures, SLO violations, surges, the run's
p99), so
the property test checks summaries too and the benchmark times the same work on both sides.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from statistics import NormalDist

from scalar_copies import CopyServing


@dataclass
class Rule:
    """One target-tracking policy as the scalar model needs it."""

    target: float
    out_cooldown_s: float = 300
    in_cooldown_s: float = 300
    disable_scale_in: bool = False
    high_resolution: bool = False  # ConcurrentRequestsPerModel (10 s) instead of Invocations


@dataclass
class StepRule:
    """One step-scaling policy and its alarm, as the scalar model needs them."""

    threshold: float
    steps: list[tuple[float | None, float | None, int]]
    """(lower, upper, adjustment) relative to the threshold; None is unbounded."""
    comparison: str = ">="
    evaluation_periods: int = 1
    datapoints_to_alarm: int = 1
    stream: str = "inv"  # "inv" (60 s), "conc" (10 s) or "conc60" (10-s peaks per minute),
    # "nocap" / "nocap10": NoCapacityInvocationFailures summed over 60 s / 10 s
    aggregation: str = "Average"
    adjustment_type: str = "ChangeInCapacity"
    min_magnitude: int = 0
    cooldown_s: float = 300


def _breaches(rule: StepRule, v: float) -> bool:
    t = rule.threshold
    return {">=": v >= t, ">": v > t, "<": v < t, "<=": v <= t}[rule.comparison]


def _step_for(rule: StepRule, value: float) -> int | None:
    delta = value - rule.threshold
    for lower, upper, adjustment in rule.steps:
        lo = -math.inf if lower is None else lower
        hi = math.inf if upper is None else upper
        above = rule.comparison in (">=", ">")
        inside = lo <= delta < hi if above else lo < delta <= hi
        if inside:
            return adjustment
    return None


def _adjusted(rule: StepRule, base: int, adjustment: int) -> int:
    if rule.adjustment_type == "ExactCapacity":
        return adjustment
    if rule.adjustment_type == "ChangeInCapacity":
        return base + adjustment
    raw = base * adjustment / 100.0
    if abs(raw) > 1:
        change = int(abs(raw))  # toward zero
    elif raw != 0:
        change = 1
    else:
        change = 0
    change = max(change, rule.min_magnitude) if adjustment != 0 else 0
    return base + (change if adjustment > 0 else -change)


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
    step_rules: list[StepRule] = (),  # type: ignore[assignment]
    copies: CopyServing | None = None,
) -> Timeline:
    """Simulate one candidate; ``boot_s`` may be a list: the boot time drawn at each step.

    With ``copies`` the target is an inference component: ``serving`` is not used, and
    ``boot_s`` is the jitter added to the copy's load time (tuner.model.copies).
    """
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
    step_since: list[float | None] = [None] * len(step_rules)
    step_out_end = [-math.inf] * len(step_rules)
    step_out_base = [0] * len(step_rules)
    step_pending: list[int | None] = [None] * len(step_rules)  # base of the scale-out it asked
    step_in_end = [-math.inf] * len(step_rules)
    minute_peaks: list[float] = []
    partial_seen = False

    def boot_at(k: int) -> float:
        drawn = boot_s[k] if isinstance(boot_s, list) else boot_s
        if copies is None:
            return drawn
        # the load time of a scale-out decided at the end of step k: from the copies desired
        # when step k began (the simulator sets it before the decisions)
        return max(copies.boot_s(desired_at_start) + drawn, 0.0)

    nocap_partial = 0.0
    nocap_waiting: dict[str, list[tuple[float, float]]] = {"nocap": [], "nocap10": []}
    nocap_seen: dict[str, list[float]] = {"nocap": [], "nocap10": []}

    def boundary_at_or_after(x: float) -> float:
        return math.ceil(x / step_s - 1e-9) * step_s

    for k, arrivals in enumerate(demand):
        start = k * step_s
        t = start + step_s
        out.desired.append(desired)
        desired_at_start = desired
        out.in_service.append(in_service)
        out.alarm_high.append(any(s is not None for s in high_since))
        out.alarm_low.append(any(s is not None for s in low_since))
        out.queue_start.append(queue)
        # serve the step
        n = in_service
        if copies is not None:
            _, _, new_queue, copy_metric, nocap = copies.serve(arrivals, n, queue, step_s)
            nocap_partial += nocap
            nocap_waiting["nocap10"].append((boundary_at_or_after(t + lag_s), nocap))
            if t % 60 == 0:
                nocap_waiting["nocap"].append((boundary_at_or_after(t + lag_s), nocap_partial))
                nocap_partial = 0.0
        else:
            offered = queue + arrivals
            served = min(offered, n * serving.max_rps * step_s)
            backlog = offered - served
            new_queue = min(backlog, n * serving.max_rps * serving.timeout_s)
        old_queue, queue = queue, new_queue
        # metrics: 60-s InvocationsPerInstance sums the steps of its minute (an inference
        # component publishes no per-copy datapoint for a step without a copy: the minute sums
        # the steps that had one, and is missing, NaN, when none had)
        if copies is None or n > 0:
            partial += arrivals / max(n, 1)
            partial_seen = True
        if t % 60 == 0:
            waiting[False].append(
                (boundary_at_or_after(t + lag_s), partial if partial_seen else math.nan)
            )
            partial, partial_seen = 0.0, False
        if step_s == 10 and copies is not None:
            copy_metric = copy_metric if n > 0 else math.nan
            waiting[True].append((boundary_at_or_after(t + lag_s), copy_metric))
        elif step_s == 10:
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
            for s, rule in enumerate(step_rules):
                if step_pending[s] is not None:
                    step_out_end[s] = t + rule.cooldown_s
                    step_out_base[s] = step_pending[s]  # type: ignore[assignment]
                    step_pending[s] = None
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
                    step_pending = [None] * len(step_rules)
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
        nocap_new = {"nocap": False, "nocap10": False}
        for name, queued_points in nocap_waiting.items():
            while queued_points and queued_points[0][0] <= t:
                nocap_seen[name].append(queued_points.pop(0)[1])
                nocap_new[name] = True
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
        # 3b. step alarms
        peaks_before = len(minute_peaks)
        whole = len(seen[True]) // 6
        while len(minute_peaks) < whole:
            i = len(minute_peaks) * 6
            minute_peaks.append(max(seen[True][i : i + 6]))
        streams = {"inv": seen[False], "conc": seen[True], "conc60": minute_peaks, **nocap_seen}
        fresh = {"inv": new_data[False], "conc": new_data[True], "conc60": whole > peaks_before}
        fresh.update(nocap_new)
        step_value: list[float | None] = []
        for s, rule in enumerate(step_rules):
            window = streams[rule.stream][-rule.evaluation_periods :]
            if fresh[rule.stream]:
                breaching = sum(_breaches(rule, v) for v in window)
                if breaching >= rule.datapoints_to_alarm:
                    if step_since[s] is None:
                        step_since[s] = t
                else:
                    step_since[s] = None
            since = step_since[s]
            if since is None or (t - since) % 60 != 0:
                step_value.append(None)
                continue
            agg = {"Average": sum(window) / len(window), "Minimum": min(window)}
            agg["Maximum"] = max(window)
            step_value.append(agg[rule.aggregation])
        step_new: list[int | None] = []
        step_adj: list[int | None] = []
        for s, rule in enumerate(step_rules):
            value = step_value[s]
            adjustment = None if value is None else _step_for(rule, value)
            step_adj.append(adjustment)
            if adjustment is None:
                step_new.append(None)
                continue
            cooling = t < step_out_end[s] and adjustment > 0
            base_s = step_out_base[s] if cooling else desired
            step_new.append(min(max(_adjusted(rule, base_s, adjustment), lo), hi))
        step_out, step_in = [], []
        for s, rule in enumerate(step_rules):
            v, adj = step_new[s], step_adj[s]
            exact = rule.adjustment_type == "ExactCapacity"
            if v is None or adj is None:
                continue
            if v > desired and (adj > 0 or exact):
                step_out.append(s)
            if v < desired and (adj < 0 or exact) and t >= step_in_end[s]:
                step_in.append(s)
        # 4. required capacity per policy
        base = out_base if t < out_cooldown_end else desired
        required = []
        for rule in rules:
            data = seen[rule.high_resolution]
            if not data or math.isnan(data[-1]):
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
        wants_out = bool(asking or step_out)
        if wants_out and not updating:
            if asking:
                pending_base = base
                pending_cooldown = max(rules[j].out_cooldown_s for j in asking)
            else:
                pending_cooldown = None
            for s in range(len(step_rules)):
                cooling = t < step_out_end[s]
                step_pending[s] = (
                    (step_out_base[s] if cooling else desired) if s in step_out else None
                )
            desired = max([required[j] for j in asking] + [step_new[s] for s in step_out])  # type: ignore[type-var]
            updating = True
            complete_at = t + max(1, math.ceil(boot_at(k) / step_s - 1e-9)) * step_s
            in_cooldown_end = -math.inf
            step_in_end = [-math.inf] * len(step_rules)
            out.scale_outs += 1
            continue
        if wants_out or updating:
            continue
        # 6. scale in: the largest of target tracking's (if all its enabled policies agree) and
        # the step policies' that ask
        enabled = [j for j, rule in enumerate(rules) if not rule.disable_scale_in]
        offers: list[int] = []
        tt_in = (
            enabled
            and t >= in_cooldown_end
            and any(low_call[j] for j in enabled)
            and all(low_now[j] and required[j] < desired for j in enabled)
        )
        if tt_in:
            offers.append(max(required[j] for j in enabled))  # type: ignore[type-var]
        offers += [step_new[s] for s in step_in]  # type: ignore[misc]
        if offers:
            desired = max(offers)
            in_service = desired
            if tt_in:
                in_cooldown_end = t + max(rules[j].in_cooldown_s for j in enabled)
            for s in step_in:
                step_in_end[s] = t + step_rules[s].cooldown_s
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
