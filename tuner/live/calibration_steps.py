"""Calibration's steps: the rates to try, the step profile, what each step showed, idle probes.

A step is one constant rate held for ``step_s`` profile seconds. ``analyse_steps`` turns the
load generator's per-request records into one row per step; ``rerun_reason`` tells a step that
failed as overload does (its queue grows, most requests miss the objective) from one that a
disturbance failed; ``wait_until_idle`` probes the endpoint until it answers about as fast as it
did unloaded, which works against real SageMaker as well as the local emulator.
"""

from __future__ import annotations

import math
import statistics
import time
import tomllib
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from tuner.aws import AwsSession, Runtime
from tuner.clock import VirtualClock
from tuner.errors import TunerError
from tuner.profiles.profile import Profile
from tuner.profiles.profile_file import parse_profile

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
Probe = Callable[[], float]
"""One request to the endpoint; its latency in virtual ms (raises TunerError when it fails)."""


@dataclass(frozen=True)
class Step:
    """One constant-rate step of the test, in profile seconds."""

    start_s: float
    end_s: float
    rps: float


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
    """The steps as a profile TOML: one ``hold`` segment per rate (rates to 6 digits)."""
    lines = [f'name = "{name}"', ""]
    for rps in rates:
        lines += ["[[segment]]", f'hold = "{step_s:g}s"', f"rps = {rps:.6g}", ""]
    return "\n".join(lines)


def step_profile(name: str, rates: Sequence[float], step_s: float) -> Profile:
    """The steps as the profile the load generator plays (that of :func:`step_profile_toml`)."""
    return parse_profile(tomllib.loads(step_profile_toml(name, rates, step_s)), source=name)


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
