"""Calibration: what one instance sustains, measured with an open-loop step-rate test.

The variant is held at one instance with dynamic scaling suspended; rates rise in steps, first
geometrically to bracket the limit, then linearly inside the bracket. A step passes when the
requests scheduled in it (after a warm-up share) meet the latency objective and the error
budget; the highest rate below the first failing step is what one instance sustains. Everything
is put back afterwards: the scaling snapshot and the instance count.

A failing step is taken as the limit only when it fails the way overload does (most requests
miss the objective and the queue grows through the step). One that fails otherwise (the load
generator fell behind and sent a burst, a queue left from before drained through the step, only
a few requests were slow) is run again, a bounded number of times, once the endpoint is idle.
Idle is what a client sees: single probe requests answer about as fast as they did unloaded.
"""

from __future__ import annotations

import math
import statistics
import sys
import tempfile
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from tuner.aws import AutoScaling, AwsSession, Endpoints, Runtime
from tuner.capacity import Capacity, LatencyPoint
from tuner.emulator.clock import VirtualClock
from tuner.errors import TrialError, TunerError, ValidationError
from tuner.policy import Resource, ScalingPolicy
from tuner.trial import (
    JOURNAL_NAME,
    Guardrails,
    LoadDriver,
    default_driver,
    discover_clock,
    restoring,
    session_endpoint_url,
    steady_heap,
)

# The locustfile's default body: what every step sends, so a probe costs the model what they do.
PROBE_BODY = b'{"inputs": "tuner load test"}'
# A step whose requests left this many (virtual) seconds behind schedule took a burst of that
# much traffic at once: it did not test its rate.
LATE_S = 5.0
# Unloaded probes that set the baseline (after one more that also opens the connection).
BASELINE_PROBES = 5
# Idle again: the median of this many consecutive probes is near the baseline.
IDLE_PROBES = 3
# Virtual seconds between probes while the endpoint is still busy.
IDLE_POLL_S = 5.0
# Without a baseline (the unloaded probes failed), the pause after a failing step.
FALLBACK_PAUSE_S = 90.0

Probe = Callable[[], float]
"""One request to the endpoint; its latency in virtual ms (raises TunerError when it fails)."""


@dataclass(frozen=True)
class Step:
    """One constant-rate step of the test, in profile seconds."""

    start_s: float
    end_s: float
    rps: float


@dataclass(frozen=True, kw_only=True)
class CalibrationSpec:
    endpoint: str
    variant: str = "AllTraffic"
    slo_p99_ms: float
    max_error_rate: float = 0.001
    start_rps: float = 1.0
    max_rps: float = 2_000.0
    step_s: float = 60.0
    """Virtual seconds each rate is held."""
    factor: float = 2.0
    """Growth of the bracketing steps."""
    refine_steps: int = 10
    warmup_share: float = 0.25
    measure_boot: bool = False
    """Also time one scale-out (1 -> 2 instances) to measure boot_s."""
    hourly_usd: float = 0.23
    boot_s: float = 300.0
    seed: int = 0
    guardrails: Guardrails = Guardrails()
    reruns: int = 2
    """Failing steps that do not fail as overload does are run again, at most this many in all."""
    idle_wait_s: float = 300.0
    """Longest wait (virtual s) for the endpoint to be idle again after a failing step."""

    def __post_init__(self) -> None:
        if not self.slo_p99_ms > 0:
            raise ValidationError(f"--slo-p99-ms > 0 must hold, got {self.slo_p99_ms:g}")
        if not 0 <= self.max_error_rate < 1:
            raise ValidationError(
                f"--max-error-rate must be in [0, 1), got {self.max_error_rate:g}"
            )
        if not 0 < self.start_rps < self.max_rps:
            raise ValidationError(
                f"0 < --start-rps < --max-rps must hold, got {self.start_rps:g}, {self.max_rps:g}"
            )
        if self.factor <= 1:
            raise ValidationError(f"--factor > 1 must hold, got {self.factor:g}")
        if self.reruns < 0:
            raise ValidationError(f"reruns >= 0 must hold, got {self.reruns}")
        if not self.idle_wait_s >= 0:
            raise ValidationError(f"idle_wait_s >= 0 must hold, got {self.idle_wait_s:g}")


def bracket_rates(start_rps: float, factor: float, max_rps: float) -> list[float]:
    """start, start x factor, ... up to and including the first rate >= max_rps (capped)."""
    rates = [start_rps]
    while rates[-1] < max_rps:
        rates.append(min(rates[-1] * factor, max_rps))
    return rates


def refine_rates(good_rps: float, bad_rps: float, n: int) -> list[float]:
    """``n`` evenly spaced rates strictly above ``good_rps`` up to ``bad_rps``."""
    return [good_rps + (bad_rps - good_rps) * i / n for i in range(1, n + 1)]


def step_profile_toml(name: str, rates: Sequence[float], step_s: float) -> str:
    lines = [f'name = "{name}"', ""]
    for rps in rates:
        lines += ["[[segment]]", f'hold = "{step_s:g}s"', f"rps = {rps:.6g}", ""]
    return "\n".join(lines)


def _median(values: np.ndarray) -> float:
    return float(np.median(values)) if values.size else math.nan


def analyse_steps(
    requests: pd.DataFrame,
    steps: Sequence[Step],
    *,
    slo_p99_ms: float,
    max_error_rate: float,
    warmup_share: float = 0.25,
    speed: float = 1.0,
) -> pd.DataFrame:
    """Per step: sent, failed, error rate, p50/p99 of successes, and whether it passed.

    Also what tells overload from a disturbance: ``missed``, the share of requests that failed
    or missed the objective; ``head_p50_ms`` and ``tail_p50_ms``, the median latency of the
    successes in the first and last quarter of the measured window (a growing queue makes the
    tail slower); and ``late_s``, how far (virtual s) the step's most belated request left
    behind its schedule, next to the run's most punctual one (NaN without ``sent_epoch_s``;
    ``speed`` turns its real seconds into profile seconds).
    """
    scheduled = requests["scheduled_s"].to_numpy(dtype=float)
    failed = requests["error"].fillna("").astype(str).to_numpy() != ""
    latency = requests["latency_ms"].to_numpy(dtype=float)
    late = np.full(len(requests), math.nan)
    if "sent_epoch_s" in requests:
        offset = requests["sent_epoch_s"].to_numpy(dtype=float) - scheduled / speed
        if np.isfinite(offset).any():
            late = (offset - np.nanmin(offset)) * speed
    rows = []
    for step in steps:
        begin = step.start_s + warmup_share * (step.end_s - step.start_s)
        inside = (scheduled >= begin) & (scheduled < step.end_s)
        sent = int(inside.sum())
        n_failed = int((inside & failed).sum())
        ok = inside & ~failed
        ok_lat = latency[ok]
        p50 = float(np.percentile(ok_lat, 50)) if ok_lat.size else math.nan
        p99 = float(np.percentile(ok_lat, 99)) if ok_lat.size else math.nan
        error_rate = n_failed / sent if sent else 1.0
        passed = sent > 0 and error_rate <= max_error_rate and p99 <= slo_p99_ms
        quarter = (step.end_s - begin) / 4
        whole = (scheduled >= step.start_s) & (scheduled < step.end_s)
        rows.append(
            {
                "rps": step.rps,
                "sent": sent,
                "failed": n_failed,
                "error_rate": error_rate,
                "p50_ms": p50,
                "p99_ms": p99,
                "passed": passed,
                "missed": (n_failed + int((ok_lat > slo_p99_ms).sum())) / sent if sent else 1.0,
                "head_p50_ms": _median(latency[ok & (scheduled < begin + quarter)]),
                "tail_p50_ms": _median(latency[ok & (scheduled >= step.end_s - quarter)]),
                "late_s": float(np.max(late[whole])) if whole.any() else math.nan,
            }
        )
    return pd.DataFrame(rows)


def rerun_reason(row: pd.Series, slo_p99_ms: float) -> str | None:
    """Why a failing step's verdict may not be its rate's, or None: it failed as overload does.

    A rate above what the instance sustains builds a queue through the step (the median at its
    end slower than at its start by half the objective or more), or keeps most requests over
    the objective without the queue shrinking. A burst from a load generator that fell behind, a
    queue left from before that drains during the step, a few slow or failed requests: each can
    pass, and a step failed by one says nothing of its rate.
    """
    if bool(row["passed"]):
        return None
    if row["late_s"] > LATE_S:
        return f"the load generator fell {row['late_s']:.0f} s behind and sent a burst"
    if row["tail_p50_ms"] - row["head_p50_ms"] >= 0.5 * slo_p99_ms:
        return None
    if row["missed"] <= 0.5:
        return f"only {row['missed']:.1%} of its requests missed the objective"
    if row["tail_p50_ms"] < row["head_p50_ms"]:
        return (
            f"its queue shrank through the step (median {row['head_p50_ms']:.0f} ms at the start, "
            f"{row['tail_p50_ms']:.0f} ms at the end), a backlog its rate did not make"
        )
    return None


def sustained(table: pd.DataFrame) -> tuple[float | None, float | None]:
    """(highest passing rate before the first failure, the first failing rate).

    Rows marked ``retried`` (a failure run again, whose rerun follows) are skipped.
    """
    good: float | None = None
    for row in table.itertuples():
        if getattr(row, "retried", False):
            continue
        if not row.passed:
            return good, float(row.rps)
        good = float(row.rps)
    return good, None


def idle_threshold_ms(baseline_ms: float, slo_p99_ms: float) -> float:
    """Probe latency within which the endpoint counts as idle: twice the unloaded latency, or a
    quarter of the objective above it if that is more (so a fast model's jitter is not a queue)."""
    return max(2.0 * baseline_ms, baseline_ms + 0.25 * slo_p99_ms)


def wait_until_idle(
    probe: Probe,
    *,
    threshold_ms: float,
    max_wait_s: float,
    clock: VirtualClock,
    log: Callable[[str], None],
    sleep: Callable[[float], None] = time.sleep,
) -> bool:
    """Probe until the median of ``IDLE_PROBES`` consecutive probes is within ``threshold_ms``.

    A failed probe counts as slow. Returns False when ``max_wait_s`` virtual seconds pass first.
    """
    started = clock.now()
    recent: deque[float] = deque(maxlen=IDLE_PROBES)
    error: TunerError | None = None
    log(
        f"waiting for the endpoint to be idle: the median of {IDLE_PROBES} probes under "
        f"{threshold_ms:.0f} ms (at most {max_wait_s:g} s)"
    )
    while True:
        try:
            recent.append(probe())
        except TunerError as e:
            recent.append(math.inf)
            error = e
        waited = clock.now() - started
        shown = ", ".join(f"{v:.0f}" for v in recent)
        if len(recent) == IDLE_PROBES and statistics.median(recent) <= threshold_ms:
            log(f"idle after {waited:.0f} s (probes {shown} ms)")
            return True
        if waited >= max_wait_s:
            why = f"; last error: {error}" if error is not None and recent[-1] == math.inf else ""
            log(
                f"still busy after {waited:.0f} s (probes {shown} ms{why}): going on, the next "
                "step may read slow"
            )
            return False
        if recent[-1] > threshold_ms:  # busy: give it time; after a fast probe, probe again
            sleep(min(IDLE_POLL_S, max(0.0, max_wait_s - waited)) / clock.speed)


def runtime_probe(session: AwsSession, endpoint: str, variant: str, speed: float) -> Probe:
    """A probe that invokes the endpoint once (SageMaker runtime); latency in virtual ms."""
    runtime = Runtime(session=session)
    return lambda: runtime.invoke_ms(endpoint, PROBE_BODY, variant=variant) * speed


@dataclass(frozen=True)
class CalibrationResult:
    capacity: Capacity
    steps: pd.DataFrame
    rule_of_thumb: ScalingPolicy


def calibrate(
    spec: CalibrationSpec,
    session: AwsSession,
    *,
    workdir: Path | None = None,
    driver: LoadDriver = default_driver,
    probe: Probe | None = None,
    log: Callable[[str], None] = lambda m: print(m, file=sys.stderr),
) -> CalibrationResult:
    """Measure one instance of ``spec.endpoint``; the endpoint is restored afterwards.

    ``probe`` (default: one InvokeEndpoint) tells when the endpoint is idle again.
    """
    resource = Resource.for_variant(spec.endpoint, spec.variant)
    endpoints = Endpoints(session=session)
    scaling = AutoScaling(session=session)
    original = endpoints.describe(spec.endpoint).variant(spec.variant)
    spec.guardrails.check(endpoints, spec.endpoint, None, spec.max_rps)
    instance_type = endpoints.instance_type(spec.endpoint, spec.variant) or "unknown"
    clock = discover_clock(session_endpoint_url(session))
    work = Path(workdir or tempfile.mkdtemp(prefix="tuner-calibrate-"))
    work.mkdir(parents=True, exist_ok=True)
    probe = probe or runtime_probe(session, spec.endpoint, spec.variant, clock.speed)
    boot_s = spec.boot_s
    with restoring(scaling, resource, work / JOURNAL_NAME, log):
        if scaling.describe_target(resource) is not None:
            scaling.set_suspended(resource, scale_in=True, scale_out=True)
        _set_count(endpoints, spec, 1, clock, log)
        steps = _StepRunner(spec, session, work, clock, driver, probe, log)
        # Bracketing runs one step at a time and stops at the first failure: a live endpoint
        # is never driven far past its limit.
        tables = []
        for i, rate in enumerate(bracket_rates(spec.start_rps, spec.factor, spec.max_rps)):
            tables.append(steps.run([rate], f"bracket-{i}"))
            if not tables[-1]["passed"].iloc[-1]:
                break
        table = pd.concat(tables, ignore_index=True)
        good, bad = sustained(table)
        if good is None:
            raise TrialError(
                f"one instance fails the objective already at {spec.start_rps:g} rps "
                f"(p99 {table['p99_ms'].iloc[-1]:.0f} ms, errors "
                f"{table['error_rate'].iloc[-1]:.1%}): lower --start-rps or relax --slo-p99-ms"
            )
        if bad is None:
            log(f"no step failed up to --max-rps {spec.max_rps:g}: the limit is at least that")
        else:
            steps.settle()
            fine = steps.run(refine_rates(good, bad, spec.refine_steps), "refine")
            table = pd.concat([table, fine], ignore_index=True)
            refined, _ = sustained(fine)
            good = refined if refined is not None else good
        if spec.measure_boot:
            boot_s = _measure_boot(endpoints, spec, clock, log)
        _set_count(endpoints, spec, original.desired, clock, log)
    passing = table[table["passed"]].sort_values("rps").drop_duplicates("rps")
    points = tuple(
        LatencyPoint(rps=float(r.rps), p50_ms=float(r.p50_ms), p99_ms=float(r.p99_ms))
        for r in passing.itertuples()
    )
    capacity = Capacity(
        instance_type=instance_type,
        hourly_usd=spec.hourly_usd,
        boot_s=round(boot_s, 1),
        max_rps_per_instance=round(float(good), 3),
        timeout_ms=60_000,
        latency=points,
    )
    rule = ScalingPolicy.aws_rule_of_thumb(
        capacity.max_rps_per_instance, min_capacity=1, max_capacity=max(1, original.desired) * 4
    )
    return CalibrationResult(capacity=capacity, steps=table, rule_of_thumb=rule)


class _StepRunner:
    """Runs steps with the load driver; re-runs a failure that is not overload, once idle."""

    def __init__(
        self,
        spec: CalibrationSpec,
        session: AwsSession,
        work: Path,
        clock: VirtualClock,
        driver: LoadDriver,
        probe: Probe,
        log: Callable[[str], None],
    ) -> None:
        self.spec, self.session, self.work, self.clock = spec, session, work, clock
        self.driver, self.probe, self.log = driver, probe, log
        self.reruns_left = spec.reruns
        self.threshold_ms = self._baseline()

    def _baseline(self) -> float | None:
        """The idle threshold from unloaded probes; None (fixed pauses) when they fail."""
        try:
            self.probe()  # also opens the connection: not counted
            latencies = [self.probe() for _ in range(BASELINE_PROBES)]
        except TunerError as e:
            self.log(
                f"the unloaded probe failed ({e}): after a failing step, pausing "
                f"{FALLBACK_PAUSE_S:g} s instead of probing until idle"
            )
            return None
        baseline = statistics.median(latencies)
        threshold = idle_threshold_ms(baseline, self.spec.slo_p99_ms)
        self.log(f"unloaded probe latency: median {baseline:.0f} ms of {BASELINE_PROBES}")
        return threshold

    def settle(self) -> None:
        """After a failing step: wait until its queue is gone."""
        if self.threshold_ms is None:
            self.log(f"pausing {FALLBACK_PAUSE_S:g} s for the queue to drain")
            time.sleep(FALLBACK_PAUSE_S / self.clock.speed)
            return
        wait_until_idle(
            self.probe,
            threshold_ms=self.threshold_ms,
            max_wait_s=self.spec.idle_wait_s,
            clock=self.clock,
            log=self.log,
        )

    def run(self, rates: Sequence[float], phase: str) -> pd.DataFrame:
        """The steps' table; a failure that is not overload is run again (with what followed)."""
        parts = []
        name = phase
        while True:
            table = _run_steps(
                self.spec, self.session, rates, name, self.work, self.clock, self.driver, self.log
            )
            failing = np.flatnonzero(~table["passed"].to_numpy(dtype=bool))
            first = table.iloc[failing[0]] if failing.size else None
            reason = None if first is None else rerun_reason(first, self.spec.slo_p99_ms)
            if reason is None or not self.reruns_left:
                parts.append(table)
                return pd.concat(parts, ignore_index=True)
            i = int(failing[0])
            self.reruns_left -= 1
            used = self.spec.reruns - self.reruns_left
            self.log(
                f"{name}: the {rates[i]:.3g} rps step failed, but {reason}: running it again "
                f"(re-run {used} of at most {self.spec.reruns})"
            )
            # What ran after the failure met its queue: only the failure itself is kept, marked.
            parts.append(table.iloc[: i + 1].assign(retried=[False] * i + [True]))
            self.settle()
            rates = rates[i:]
            name = f"{phase}-rerun{used}"


def _run_steps(
    spec: CalibrationSpec,
    session: AwsSession,
    rates: Sequence[float],
    phase: str,
    work: Path,
    clock: VirtualClock,
    driver: LoadDriver,
    log: Callable[[str], None],
) -> pd.DataFrame:
    steps = [Step(i * spec.step_s, (i + 1) * spec.step_s, r) for i, r in enumerate(rates)]
    path = work / f"calibrate-{phase}.toml"
    path.write_text(step_profile_toml(f"calibrate-{phase}", rates, spec.step_s), encoding="utf-8")
    log(
        f"{phase}: {len(rates)} step(s) of {spec.step_s:g} s, {rates[0]:.3g} to {rates[-1]:.3g} rps"
    )
    with steady_heap():
        requests = driver(
            path,
            endpoint=spec.endpoint,
            variant=spec.variant,
            host=session_endpoint_url(session),
            speed=clock.speed,
            out_dir=work / phase,
            workers=0,
            seed=spec.seed,
            log=log,
        )
    # Real milliseconds stand for speed x as many virtual ones on an accelerated clock.
    requests = requests.assign(latency_ms=requests["latency_ms"] * clock.speed)
    table = analyse_steps(
        requests,
        steps,
        slo_p99_ms=spec.slo_p99_ms,
        max_error_rate=spec.max_error_rate,
        warmup_share=spec.warmup_share,
        speed=clock.speed,
    )
    table.insert(0, "phase", phase)
    table["retried"] = False
    for row in table.itertuples():
        late = f"  sent up to {row.late_s:.0f} s late" if row.late_s > LATE_S else ""
        log(
            f"  {row.rps:8.2f} rps  p50 {row.p50_ms:8.1f} ms  p99 {row.p99_ms:8.1f} ms  "
            f"errors {row.error_rate:6.2%}  {'ok' if row.passed else 'FAIL'}{late}"
        )
    return table


def _set_count(
    endpoints: Endpoints,
    spec: CalibrationSpec,
    count: int,
    clock: VirtualClock,
    log: Callable[[str], None],
) -> float:
    """Set the instance count and wait until InService with it; return virtual seconds taken."""
    counts = endpoints.describe(spec.endpoint).variant(spec.variant)
    if counts.current == count and counts.desired == count:
        return 0.0
    log(f"setting {spec.endpoint}/{spec.variant} to {count} instance(s)")
    started = clock.now()
    endpoints.set_desired_count(spec.endpoint, spec.variant, count)
    deadline = time.monotonic() + 3600 / clock.speed
    while True:
        state = endpoints.describe(spec.endpoint)
        if state.status == "InService" and state.variant(spec.variant).current == count:
            return float(clock.now() - started)
        if time.monotonic() > deadline:
            raise TrialError(f"{spec.endpoint} did not reach {count} instance(s) in an hour")
        time.sleep(max(0.05, 2.0 / clock.speed))


def _measure_boot(
    endpoints: Endpoints, spec: CalibrationSpec, clock: VirtualClock, log: Callable[[str], None]
) -> float:
    taken = _set_count(endpoints, spec, 2, clock, log)
    log(f"a new instance took {taken:.0f} s (virtual) to come in service")
    _set_count(endpoints, spec, 1, clock, log)
    return taken
