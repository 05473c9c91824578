"""Calibration: what one instance sustains, measured with an open-loop step-rate test.

The variant is held at one instance with dynamic scaling suspended; rates rise in steps, first
geometrically to bracket the limit, then linearly inside the bracket. A step passes when the
requests scheduled in it (after a warm-up share) meet the latency objective and the error
budget; the highest rate below the first failing step is what one instance sustains. Everything
is put back afterwards, on every exit (tuner.live.safety): the scaling snapshot and the
instance count.

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
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from tuner.aws import AutoScaling, AwsSession, Endpoints
from tuner.clock import VirtualClock
from tuner.errors import TrialError, TunerError, ValidationError
from tuner.live.calibration_steps import (
    BASELINE_PROBES,
    LATE_S,
    Probe,
    Step,
    analyse_steps,
    bracket_rates,
    idle_threshold_ms,
    refine_rates,
    rerun_reason,
    runtime_probe,
    step_profile,
    sustained,
    wait_until_idle,
)
from tuner.live.safety import JOURNAL_NAME, live_change
from tuner.live.trial import (
    Guardrails,
    LoadDriver,
    default_driver,
    discover_clock,
    session_endpoint_url,
    steady_heap,
)
from tuner.model.capacity import Capacity, LatencyPoint
from tuner.policy import Resource, ScalingPolicy

# Without a baseline (the unloaded probes failed), the pause after a failing step.
FALLBACK_PAUSE_S = 90.0


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
        for name in (
            "slo_p99_ms",
            "max_error_rate",
            "start_rps",
            "max_rps",
            "step_s",
            "factor",
            "warmup_share",
            "hourly_usd",
            "boot_s",
            "idle_wait_s",
        ):
            value = getattr(self, name)
            if not math.isfinite(value):
                flag = "--" + name.replace("_", "-")
                raise ValidationError(f"{flag} must be a finite number, got {value}")
        if not self.step_s > 0:
            raise ValidationError(f"--step-s > 0 must hold, got {self.step_s:g}")
        if not self.hourly_usd >= 0:
            raise ValidationError(f"--hourly-usd >= 0 must hold, got {self.hourly_usd:g}")
        if not self.boot_s >= 0:
            raise ValidationError(f"--boot-s >= 0 must hold, got {self.boot_s:g}")
        if not 0 <= self.warmup_share < 1:
            raise ValidationError(f"warmup_share must be in [0, 1), got {self.warmup_share:g}")
        if self.refine_steps < 1:
            raise ValidationError(f"refine_steps >= 1 must hold, got {self.refine_steps}")
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
    url = session_endpoint_url(session)
    with live_change(scaling, endpoints, resource, work / JOURNAL_NAME, log, endpoint_url=url):
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
        if baseline > self.spec.slo_p99_ms:
            # No rate can pass then: say so now, not after a bracket of failing steps.
            speed = f" at x{self.clock.speed:g}" if self.clock.speed != 1.0 else ""
            raise TrialError(
                f"one instance answers slower than --slo-p99-ms even unloaded: median "
                f"{baseline:.0f} ms of {BASELINE_PROBES} single requests{speed} > "
                f"{self.spec.slo_p99_ms:g} ms; relax the objective"
                + (" or lower the emulator's --speed" if speed else "")
            )
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
    profile = step_profile(f"calibrate-{phase}", rates, spec.step_s)
    log(
        f"{phase}: {len(rates)} step(s) of {spec.step_s:g} s, {rates[0]:.3g} to {rates[-1]:.3g} rps"
    )
    with steady_heap():
        requests = driver(
            profile,
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
