"""One live trial: snapshot, apply a candidate, drive a profile, collect, restore — always.

The same code runs against real AWS and the local AWS of ``tuner emulate``; only the endpoint URL
and the clock differ. The clock is read from ``GET {AWS_ENDPOINT_URL}/_tuner/clock`` when the
endpoint is the emulator (virtual time, ``speed`` x real), else it is the wall clock.

Files in ``RUN_DIR/trials/<candidate-label>/`` (each written atomically; ``summary.json`` last, so
its presence marks a finished trial that a re-run skips):

- ``timeline.csv``: one row per metric period, ``t_s`` in profile seconds: ``instances_in_service``,
  ``desired_capacity`` (DescribeEndpoint polls), ``invocations``, ``errors`` (CloudWatch),
  ``sent``, ``failed``, ``p50_latency_ms``, ``p99_latency_ms`` (the load generator's requests).
- ``cloudwatch.csv``: every AWS/SageMaker metric statistic per period, by virtual timestamp.
- ``instances.csv``: every DescribeEndpoint poll (``t_s``, status, current, desired).
- ``activities.json``: DescribeScalingActivities during the trial.
- ``requests.csv``: the load generator's per-request records.
- ``policy.json``, ``summary.json``.
- ``restore-journal.json`` exists only while the trial runs: the snapshot and instance count to
  put back (tuner.live.safety). After a hard kill, ``tuner restore RUN_DIR`` restores it, and a
  re-run of the same trial restores it first.

While a trial runs the candidate is the endpoint's only scaling configuration: other policies
are removed, scheduled scaling is suspended, dynamic scaling is resumed; all comes back after.
``summary.json`` compares CloudWatch's invocations with what was sent (``traffic_warning``).
"""

from __future__ import annotations

import contextlib
import gc
import json
import math
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from tuner.aws import AutoScaling, AwsSession, Endpoints, fetch_variant_metrics
from tuner.clock import VirtualClock
from tuner.errors import TrialError, ValidationError
from tuner.live.loadgen import LoadTestConfig, run_loadtest
from tuner.live.periods import start_epoch
from tuner.live.polling import VariantPoller
from tuner.live.safety import JOURNAL_NAME, live_change
from tuner.live.streaming import LlmLoad
from tuner.policy import Resource, ResourceKind, ScalingPolicy
from tuner.profiles.profile import Profile
from tuner.tune.run import trial_folder

MISMATCH_SHARE = 0.02
"""CloudWatch's invocations and the requests sent may differ by this share before it is flagged."""
# What a trial reads from CloudWatch. No percentiles: latency percentiles come from the load
# generator's own records (what clients felt), and some backends cannot compute them.
TRIAL_METRICS: dict[str, tuple[str, ...]] = {
    "Invocations": ("Sum",),
    "InvocationsPerInstance": ("Sum",),
    "ModelLatency": ("Average", "Maximum"),
    "OverheadLatency": ("Average",),
    "Invocation4XXErrors": ("Sum",),
    "Invocation5XXErrors": ("Sum",),
    "ConcurrentRequestsPerModel": ("Maximum",),
}
PRODUCTION_TAG_KEYS = ("environment", "env", "stage")
"""Tag keys read for the environment, compared case-insensitively (as are the values)."""
PRODUCTION_TAG_VALUES = {"production", "prod", "prd", "live"}


def discover_clock(endpoint_url: str | None, *, timeout_s: float = 2.0) -> VirtualClock:
    """The emulator's virtual clock at ``endpoint_url``; the wall clock for real AWS."""
    if endpoint_url:
        url = endpoint_url.rstrip("/") + "/_tuner/clock"
        try:
            with urllib.request.urlopen(url, timeout=timeout_s) as resp:  # noqa: S310 - our URL
                return VirtualClock.from_json(json.loads(resp.read()))
        except (urllib.error.URLError, OSError, ValueError, KeyError):
            pass  # not the emulator: a real (or other) AWS endpoint, so real time
    now = time.time()
    return VirtualClock(speed=1.0, real_epoch_s=now, virtual_epoch_s=now)


def session_endpoint_url(session: AwsSession) -> str | None:
    import os

    return session.endpoint_url or os.environ.get("AWS_ENDPOINT_URL")


@dataclass(frozen=True, kw_only=True)
class Guardrails:
    """Limits a trial or calibration refuses to cross unless told."""

    allow_production: bool = False
    """Run against an endpoint tagged environment=production (or prod, live)."""
    max_instances: int = 20
    """Refuse a policy whose MaxCapacity is above this."""
    max_rps: float = 2_000.0
    """Refuse a profile whose peak rate is above this."""

    def __post_init__(self) -> None:
        if not (math.isfinite(self.max_rps) and self.max_rps > 0):
            raise ValidationError(f"--max-rps must be a finite number > 0, got {self.max_rps}")
        if self.max_instances < 1:
            raise ValidationError(f"--max-instances >= 1 must hold, got {self.max_instances}")

    def check(
        self, endpoints: Endpoints, endpoint: str, policy: ScalingPolicy | None, peak_rps: float
    ) -> None:
        for key, value in endpoints.tags(endpoint).items():
            production = (
                key.strip().lower() in PRODUCTION_TAG_KEYS
                and value.strip().lower() in PRODUCTION_TAG_VALUES
            )
            if production and not self.allow_production:
                raise ValidationError(
                    f"endpoint {endpoint} is tagged {key}={value}: refusing to load-test "
                    "production without --allow-production"
                )
        if policy is not None and policy.max_capacity > self.max_instances:
            raise ValidationError(
                f"MaxCapacity <= --max-instances must hold, got {policy.max_capacity} > "
                f"{self.max_instances}"
            )
        if peak_rps > self.max_rps:
            raise ValidationError(
                f"profile peak rate <= --max-rps must hold, got {peak_rps:g} > {self.max_rps:g} rps"
            )


@contextlib.contextmanager
def steady_heap() -> Iterator[None]:
    """Collect garbage now, then keep full collections short while load is measured.

    A full collection of a large heap stops every thread for a few hundred milliseconds; with
    the local AWS in this process (``tuner demo``, tests) at --speed 60 that is 15 virtual
    seconds of latency no real endpoint has. Freezing what exists exempts it from collection
    for the duration; unfreezing afterwards lets it be collected again.
    """
    gc.collect()
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


LoadDriver = Callable[..., pd.DataFrame]
"""(profile, *, endpoint, variant, host, speed, out_dir, workers, seed, log,
start_at_epoch_s=None) -> the per-request records; ``profile`` is the loaded Profile."""


def default_driver(
    profile: Profile,
    *,
    endpoint: str,
    variant: str,
    host: str | None,
    speed: float,
    out_dir: Path,
    workers: int,
    seed: int,
    log: Callable[[str], None],
    start_at_epoch_s: float | None = None,
    llm: LlmLoad | None = None,
) -> pd.DataFrame:
    """Play the profile with Locust (tuner.live.loadgen) and return its per-request records."""
    config = LoadTestConfig(
        profile=profile,
        endpoint=endpoint,
        variant=variant,
        host=host,
        speed=speed,
        out_dir=Path(out_dir),
        workers=workers,
        seed=seed,
        start_at_epoch_s=start_at_epoch_s,
        stream=llm is not None and llm.stream,
        inference_component=llm.inference_component if llm else None,
        tokens=llm.tokens if llm else LoadTestConfig.tokens,
    )
    # sys.stderr as it is now, not as it was when loadgen was imported (pytest swaps it).
    return run_loadtest(config, progress=sys.stderr).requests


@dataclass(frozen=True, kw_only=True)
class TrialSpec:
    """What one live trial does."""

    endpoint: str
    variant: str = "AllTraffic"
    policy: ScalingPolicy
    profile: Profile
    """The loaded profile to play (the load generator gets its content, not a file)."""
    start_capacity: int | None = None
    """Instances when the load starts (default: where the policy settles for the profile's
    opening rate, as the simulator starts)."""
    settle_s: float | None = None
    """Virtual seconds to wait after the load for the last datapoints (default: 2 periods + lag)."""
    workers: int = 0
    seed: int = 0
    wait_timeout_s: float = 1800.0
    guardrails: Guardrails = Guardrails()
    lead_real_s: float = 3.0
    """Real seconds between launching the load generator and the profile's start (Locust's
    start-up); a stand-in driver in tests needs less."""
    llm: LlmLoad | None = None
    """Streaming / inference-component load (passed to the driver as ``llm``); None: plain."""

    def __post_init__(self) -> None:
        if self.workers < 0:
            raise ValidationError(f"--workers >= 0 must hold, got {self.workers}")
        if self.start_capacity is not None and not (
            self.policy.min_capacity <= self.start_capacity <= self.policy.max_capacity
        ):
            raise ValidationError(
                f"MinCapacity <= start capacity <= MaxCapacity must hold, got "
                f"{self.start_capacity} outside {self.policy.min_capacity}.."
                f"{self.policy.max_capacity}"
            )
        for name in ("settle_s", "wait_timeout_s", "lead_real_s"):
            value = getattr(self, name)
            if value is not None and not (math.isfinite(value) and value >= 0):
                raise ValidationError(f"{name} must be a finite number >= 0, got {value}")


def trial_dir(run_dir: Path, policy: ScalingPolicy, profile: Profile) -> Path:
    return trial_folder(run_dir, policy.label, profile.name)


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)


def run_trial(
    spec: TrialSpec,
    run_dir: Path,
    session: AwsSession,
    *,
    driver: LoadDriver = default_driver,
    log: Callable[[str], None] = lambda m: print(m, file=sys.stderr),
) -> Path:
    """Run one trial; return its folder. Skips (and returns) a trial already finished."""
    if spec.policy.kind is ResourceKind.INFERENCE_COMPONENT:
        from tuner.live.component_trial import run_component_trial

        return run_component_trial(spec, run_dir, session, driver=driver, log=log)
    profile = spec.profile
    out = trial_dir(run_dir, spec.policy, profile)
    if (out / "summary.json").exists() and not (out / JOURNAL_NAME).exists():
        log(f"{out.name}: already finished, skipped (delete the folder to run it again)")
        return out
    resource = Resource.for_variant(spec.endpoint, spec.variant)
    spec.policy.check_resource(resource)
    endpoints = Endpoints(session=session)
    scaling = AutoScaling(session=session)
    endpoints.describe(spec.endpoint).variant(spec.variant)
    spec.guardrails.check(endpoints, spec.endpoint, spec.policy, profile.peak_rps)
    clock = discover_clock(session_endpoint_url(session))
    period_s = spec.policy.metric_period_s
    out.mkdir(parents=True, exist_ok=True)
    log(f"trial {spec.policy.label} on {profile.name} at speed x{clock.speed:g}")
    url = session_endpoint_url(session)
    with live_change(scaling, endpoints, resource, out / JOURNAL_NAME, log, endpoint_url=url):
        # The candidate alone: its range first (registering moves the capacity into range [DOC],
        # and a starting count outside the old range would otherwise be clamped back), the other
        # policies removed, scheduled scaling suspended.
        scaling.apply_alone(spec.policy, resource)
        start = spec.start_capacity or spec.policy.steady_capacity(profile.opening_rps())
        _bring_to_capacity(endpoints, spec, start, clock, log)
        poller = VariantPoller(
            endpoints,
            clock,
            every_virtual_s=min(10.0, period_s / 2),
            endpoint=spec.endpoint,
            variant=spec.variant,
        )
        with poller:
            # Start the profile on a period boundary so CloudWatch periods are profile periods,
            # far enough ahead (3 s real by default) for Locust to start.
            lead_s = spec.lead_real_s * clock.speed
            t0 = float(math.ceil((clock.now() + lead_s) / period_s) * period_s)
            with steady_heap():
                requests = driver(
                    profile,
                    endpoint=spec.endpoint,
                    variant=spec.variant,
                    host=session_endpoint_url(session),
                    speed=clock.speed,
                    out_dir=out / "load",
                    workers=spec.workers,
                    seed=spec.seed,
                    log=log,
                    start_at_epoch_s=clock.to_real(t0),
                    **({"llm": spec.llm} if spec.llm is not None else {}),
                )
            # Profile time 0 as it really was: Locust starts a moment after it is launched.
            started = start_epoch(requests, clock.speed)
            if math.isfinite(started):
                t0 = clock.to_virtual(started)
            settle = spec.settle_s if spec.settle_s is not None else 2 * period_s + 60
            end = t0 + math.ceil(profile.duration_s / period_s) * period_s
            log(f"load done; waiting {settle:g} s (virtual) for CloudWatch to settle")
            clock.sleep_until(end + settle)
        activities = scaling.describe_activities(resource)
    # After the restore: summary.json (a finished trial, skipped by a re-run) is written only
    # once the endpoint is back as it was.
    first = math.floor(t0 / period_s) * period_s
    metrics = fetch_variant_metrics(
        session.client("cloudwatch"),
        spec.endpoint,
        spec.variant,
        clock.datetime_at(first),
        clock.datetime_at(end + period_s),
        period_s=period_s,
        metrics=TRIAL_METRICS,
    )
    summary = _write_results(
        out, spec, profile, clock, t0, period_s, requests, metrics, poller.rows, activities
    )
    if summary["traffic_warning"]:
        log(f"WARNING: {summary['traffic_warning']}")
    log(f"trial {spec.policy.label}: results in {out}")
    return out


def _bring_to_capacity(
    endpoints: Endpoints,
    spec: TrialSpec,
    start: int,
    clock: VirtualClock,
    log: Callable[[str], None],
) -> None:
    """Wait out any update, then set the starting count and wait until it is in service."""
    deadline = time.monotonic() + clock.real_duration(spec.wait_timeout_s)
    asked = False
    while True:
        state = endpoints.describe(spec.endpoint)
        counts = state.variant(spec.variant)
        # SageMaker refuses capacity changes while the endpoint is Updating [OBS].
        if state.status == "InService":
            if counts.current == start and counts.desired == start:
                return
            if not asked:
                log(f"setting {spec.endpoint}/{spec.variant} to {start} instance(s)")
                endpoints.set_desired_count(spec.endpoint, spec.variant, start)
                asked = True
        if time.monotonic() > deadline:
            raise TrialError(
                f"{spec.endpoint} did not reach {start} instance(s) InService within "
                f"{spec.wait_timeout_s:g} s (virtual); it is {state.status} with {counts.current}"
            )
        time.sleep(max(0.1, clock.real_duration(5.0)))


def _write_results(
    out: Path,
    spec: TrialSpec,
    profile: Profile,
    clock: VirtualClock,
    t0: float,
    period_s: int,
    requests: pd.DataFrame,
    metrics: pd.DataFrame,
    polls: list[tuple[float, str, int, int]],
    activities: list[dict[str, Any]],
) -> dict[str, Any]:
    n = int(math.ceil(profile.duration_s / period_s))
    t_s = np.arange(n) * period_s
    polls_df = pd.DataFrame(polls, columns=["virtual_s", "status", "current", "desired"])
    polls_df.insert(0, "t_s", polls_df["virtual_s"] - t0)
    # The count in force at mid-period stands for the period (the simulator's row convention).
    idx = np.searchsorted(polls_df["t_s"].to_numpy(), t_s + period_s / 2, side="right") - 1
    ok = idx >= 0
    current = np.where(ok, polls_df["current"].to_numpy()[np.maximum(idx, 0)], np.nan)
    desired = np.where(ok, polls_df["desired"].to_numpy()[np.maximum(idx, 0)], np.nan)

    # CloudWatch periods start on period boundaries; profile periods start at t0. Each profile
    # period takes the CloudWatch period that overlaps it most.
    stamps = np.array([ts.timestamp() for ts in metrics.index], dtype=float)
    nearest = np.round((stamps - t0) / period_s).astype(int) * period_s
    by_t = metrics.set_axis(nearest)
    by_t = by_t[~by_t.index.duplicated(keep="first")].reindex(t_s)
    invocations = by_t.get("Invocations:Sum", pd.Series(0.0, index=t_s)).fillna(0.0)
    error_cols = [c for c in ("Invocation4XXErrors:Sum", "Invocation5XXErrors:Sum") if c in by_t]
    errors = by_t[error_cols].fillna(0.0).sum(axis=1)

    req = requests.copy()
    # Locust measures real milliseconds; on an accelerated clock they stand for speed x as many
    # virtual ones (the emulator's service times are virtual). Real client overhead is scaled
    # too, so at high speeds latencies read a little high.
    req["latency_ms"] = req["latency_ms"] * clock.speed
    k = np.floor(req["scheduled_s"].to_numpy(dtype=float) / period_s).astype(int)
    req["period"] = k
    failed = req["error"].fillna("").astype(str) != ""
    req["failed"] = failed
    grouped = req.groupby("period")
    sent = grouped.size().reindex(range(n), fill_value=0)
    nfail = grouped["failed"].sum().reindex(range(n), fill_value=0)
    ok_lat = req.loc[~failed].groupby("period")["latency_ms"]
    p50 = ok_lat.quantile(0.5).reindex(range(n))
    p99 = ok_lat.quantile(0.99).reindex(range(n))
    timeline = pd.DataFrame(
        {
            "t_s": t_s,
            "instances_in_service": current,
            "desired_capacity": desired,
            "invocations": invocations.to_numpy(),
            "errors": errors.to_numpy(),
            "sent": sent.to_numpy(),
            "failed": nfail.to_numpy(),
            "p50_latency_ms": p50.to_numpy(),
            "p99_latency_ms": p99.to_numpy(),
        }
    )
    total = len(req)
    cloudwatch = float(metrics.get("Invocations:Sum", pd.Series(dtype=float)).sum())
    # Requests the generator really sent (those its in-flight cap dropped never left).
    sent_total = int((req["error"].fillna("").astype(str) != "inflight_cap").sum())
    mismatch = abs(cloudwatch - sent_total) / max(sent_total, 1)
    warning = None
    if mismatch > MISMATCH_SHARE:
        warning = (
            f"CloudWatch counted {cloudwatch:.0f} invocations but the trial sent {sent_total} "
            f"({mismatch:.1%} apart, over {MISMATCH_SHARE:.0%}): foreign traffic or lost requests"
        )
    hours = float(np.nansum(current)) * period_s / 3600.0
    changes = np.diff(desired[~np.isnan(desired)])
    latency = req.loc[~failed, "latency_ms"]
    summary = {
        "candidate": spec.policy.label,
        "profile": profile.name,
        "endpoint": spec.endpoint,
        "variant": spec.variant,
        "speed": clock.speed,
        "start_utc": clock.datetime_at(t0).isoformat(),
        "duration_s": profile.duration_s,
        "period_s": period_s,
        "requests": total,
        "failed": int(failed.sum()),
        "error_rate": float(failed.mean()) if total else 0.0,
        "p50_latency_ms": float(latency.quantile(0.5)) if len(latency) else None,
        "p99_latency_ms": float(latency.quantile(0.99)) if len(latency) else None,
        # Over the whole window: edge periods straddle the profile's start and end.
        "cloudwatch_invocations": cloudwatch,
        "sent": sent_total,
        "invocations_mismatch": mismatch,
        "traffic_warning": warning,
        "instance_hours": hours,
        "max_instances": int(np.nanmax(current)) if ok.any() else None,
        "scale_out_events": int((changes > 0).sum()),
        "scale_in_events": int((changes < 0).sum()),
        "scaling_activities": len(activities),
    }
    _atomic_write(out / "timeline.csv", timeline.to_csv(index=False))
    _atomic_write(out / "cloudwatch.csv", metrics.to_csv())
    _atomic_write(out / "instances.csv", polls_df.to_csv(index=False))
    _atomic_write(out / "activities.json", json.dumps(activities, indent=2, default=str))
    _atomic_write(out / "requests.csv", requests.to_csv(index=False))
    _atomic_write(out / "policy.json", spec.policy.to_json())
    _atomic_write(out / "summary.json", json.dumps(summary, indent=2) + "\n")
    return summary


def run_trials(
    run_dir: Path,
    *,
    candidates: list[ScalingPolicy],
    profiles: Sequence[Profile],
    endpoint: str,
    session: AwsSession,
    variant: str = "AllTraffic",
    guardrails: Guardrails = Guardrails(),
    workers: int = 0,
    seed: int = 0,
    driver: LoadDriver = default_driver,
    log: Callable[[str], None] = lambda m: print(m, file=sys.stderr),
    llm: LlmLoad | None = None,
) -> list[Path]:
    """Every candidate on every profile, one after the other; finished trials are skipped."""
    done = []
    for i, policy in enumerate(candidates, 1):
        for profile in profiles:
            log(f"[{i}/{len(candidates)}] {policy.label} x {profile.name}")
            spec = TrialSpec(
                endpoint=endpoint,
                variant=variant,
                policy=policy,
                profile=profile,
                workers=workers,
                seed=seed,
                guardrails=guardrails,
                llm=llm,
            )
            done.append(run_trial(spec, run_dir, session, driver=driver, log=log))
    return done
