"""Calibration: what one instance sustains, measured with an open-loop step-rate test.

The variant is held at one instance with dynamic scaling suspended; rates rise in steps, first
geometrically to bracket the limit, then linearly inside the bracket. A step passes when the
requests scheduled in it (after a warm-up share) meet the latency objective and the error
budget; the highest rate below the first failing step is what one instance sustains. Everything
is put back afterwards: the scaling snapshot and the instance count.
"""

from __future__ import annotations

import math
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from tuner.aws import AutoScaling, AwsSession, Endpoints
from tuner.capacity import Capacity, LatencyPoint
from tuner.emulator.clock import VirtualClock
from tuner.errors import TrialError, ValidationError
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


def analyse_steps(
    requests: pd.DataFrame,
    steps: Sequence[Step],
    *,
    slo_p99_ms: float,
    max_error_rate: float,
    warmup_share: float = 0.25,
) -> pd.DataFrame:
    """Per step: sent, failed, error rate, p50/p99 of successes, and whether it passed."""
    scheduled = requests["scheduled_s"].to_numpy(dtype=float)
    failed = requests["error"].fillna("").astype(str).to_numpy() != ""
    latency = requests["latency_ms"].to_numpy(dtype=float)
    rows = []
    for step in steps:
        begin = step.start_s + warmup_share * (step.end_s - step.start_s)
        inside = (scheduled >= begin) & (scheduled < step.end_s)
        sent = int(inside.sum())
        n_failed = int((inside & failed).sum())
        ok_lat = latency[inside & ~failed]
        p50 = float(np.percentile(ok_lat, 50)) if ok_lat.size else math.nan
        p99 = float(np.percentile(ok_lat, 99)) if ok_lat.size else math.nan
        error_rate = n_failed / sent if sent else 1.0
        passed = sent > 0 and error_rate <= max_error_rate and p99 <= slo_p99_ms
        rows.append(
            {
                "rps": step.rps,
                "sent": sent,
                "failed": n_failed,
                "error_rate": error_rate,
                "p50_ms": p50,
                "p99_ms": p99,
                "passed": passed,
            }
        )
    return pd.DataFrame(rows)


def sustained(table: pd.DataFrame) -> tuple[float | None, float | None]:
    """(highest passing rate before the first failure, the first failing rate)."""
    good: float | None = None
    for row in table.itertuples():
        if not row.passed:
            return good, float(row.rps)
        good = float(row.rps)
    return good, None


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
    log: Callable[[str], None] = lambda m: print(m, file=sys.stderr),
) -> CalibrationResult:
    """Measure one instance of ``spec.endpoint``; the endpoint is restored afterwards."""
    resource = Resource.for_variant(spec.endpoint, spec.variant)
    endpoints = Endpoints(session=session)
    scaling = AutoScaling(session=session)
    original = endpoints.describe(spec.endpoint).variant(spec.variant)
    spec.guardrails.check(endpoints, spec.endpoint, None, spec.max_rps)
    instance_type = endpoints.instance_type(spec.endpoint, spec.variant) or "unknown"
    clock = discover_clock(session_endpoint_url(session))
    work = Path(workdir or tempfile.mkdtemp(prefix="tuner-calibrate-"))
    work.mkdir(parents=True, exist_ok=True)
    boot_s = spec.boot_s
    with restoring(scaling, resource, work / JOURNAL_NAME, log):
        if scaling.describe_target(resource) is not None:
            scaling.set_suspended(resource, scale_in=True, scale_out=True)
        _set_count(endpoints, spec, 1, clock, log)
        # Bracketing runs one step at a time and stops at the first failure: a live endpoint
        # is never driven far past its limit.
        tables = []
        for i, rate in enumerate(bracket_rates(spec.start_rps, spec.factor, spec.max_rps)):
            tables.append(
                _run_steps(spec, session, [rate], f"bracket-{i}", work, clock, driver, log)
            )
            if not tables[-1]["passed"].iloc[0]:
                break
        table = pd.concat(tables, ignore_index=True)
        good, bad = sustained(table)
        if good is None:
            raise TrialError(
                f"one instance fails the objective already at {spec.start_rps:g} rps "
                f"(p99 {table['p99_ms'].iloc[0]:.0f} ms, errors {table['error_rate'].iloc[0]:.1%})"
                ": lower --start-rps or relax --slo-p99-ms"
            )
        if bad is None:
            log(f"no step failed up to --max-rps {spec.max_rps:g}: the limit is at least that")
        else:
            _drain(clock, log)
            fine = _run_steps(
                spec,
                session,
                refine_rates(good, bad, spec.refine_steps),
                "refine",
                work,
                clock,
                driver,
                log,
            )
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
    )
    for row in table.itertuples():
        log(
            f"  {row.rps:8.2f} rps  p50 {row.p50_ms:8.1f} ms  p99 {row.p99_ms:8.1f} ms  "
            f"errors {row.error_rate:6.2%}  {'ok' if row.passed else 'FAIL'}"
        )
    return table


def _drain(clock: VirtualClock, log: Callable[[str], None]) -> None:
    # An overloaded step leaves a queue that only empties as its requests finish or time out.
    virtual_s = 90.0
    log(f"letting the queue drain for {virtual_s:g} s (virtual)")
    time.sleep(virtual_s / clock.speed)


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
