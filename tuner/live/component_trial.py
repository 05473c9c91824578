"""A live trial on an inference component: its copies scale, the load streams tokens.

:func:`tuner.live.trial.run_trial` comes here when the candidate scales an inference component
(``inference-component/<ic>``). The same safe change as for a variant
(:func:`tuner.live.safety.live_change`: the lock tag on the endpoint that hosts the component,
the journal with the component's snapshot and desired copy count, restore on every exit): the
candidate is applied alone (target tracking on ConcurrentRequestsPerCopyHighResolution, and at
MinCopyCount 0 the scale-from-zero step policy with its CloudWatch alarm), the component is set
to the starting copy count, the streaming load plays, and everything goes back.

Copies over time come from polling DescribeInferenceComponent (``RuntimeConfig.CurrentCopyCount``
and ``DesiredCopyCount``): SageMaker publishes no copy-count metric in CloudWatch that we know of,
and the poll works the same on real AWS and on the local AWS.

``timeline.csv`` rows are 60-s periods of the profile: ``instances_in_service`` (copies in
service at mid-period, the simulator's column name), ``desired_capacity`` (desired copies),
``invocations``, ``errors``, ``no_capacity_failures`` (CloudWatch, dimension
InferenceComponentName), ``sent``, ``failed``, ``refused_no_capacity`` (the load generator's
``no_capacity`` errors), ``p50_latency_ms``, ``p99_latency_ms`` (end to end), ``ttft_p99_ms``
and ``itl_p99_ms`` (p99 of the requests' TTFT and of their own ITL p99), all in virtual ms.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from tuner.aws import AutoScaling, AwsSession, Endpoints, fetch_component_metrics
from tuner.clock import VirtualClock
from tuner.errors import TrialError, ValidationError
from tuner.live.periods import start_epoch
from tuner.live.polling import CopyPoller
from tuner.live.safety import JOURNAL_NAME, live_change
from tuner.policy import Resource

if TYPE_CHECKING:
    from tuner.live.trial import LoadDriver, TrialSpec

PERIOD_S = 60
"""Rows of the trial's timeline (the IC's 60-s metrics; the 10-s one is a Maximum)."""
COMPONENT_METRICS: dict[str, tuple[str, ...]] = {
    "Invocations": ("Sum",),
    "InvocationsPerCopy": ("Sum",),
    "NoCapacityInvocationFailures": ("Sum",),
    "Invocation4XXErrors": ("Sum",),
    "Invocation5XXErrors": ("Sum",),
    "ModelLatency": ("Average", "Maximum"),
}


def component_of(spec: TrialSpec) -> str:
    ic = spec.llm.inference_component if spec.llm is not None else None
    if not ic:
        raise ValidationError(
            f"{spec.policy.label} scales an inference component: name it with "
            "--inference-component (and stream with --stream)"
        )
    return ic


def start_copies(spec: TrialSpec) -> int:
    """Copies when the load starts: ``start_capacity``, else MinCopyCount, at least one copy
    when the profile opens with traffic (a warm start, as the simulator's)."""
    if spec.start_capacity is not None:
        return spec.start_capacity
    floor = 1 if spec.profile.opening_rps() > 0 else 0
    return min(max(spec.policy.min_capacity, floor), spec.policy.max_capacity)


def run_component_trial(
    spec: TrialSpec,
    run_dir: Path,
    session: AwsSession,
    *,
    driver: LoadDriver,
    log: Callable[[str], None],
) -> Path:
    """One trial of an inference-component candidate; returns its folder (skips a finished one)."""
    from tuner.live.trial import discover_clock, session_endpoint_url, steady_heap, trial_dir

    profile = spec.profile
    ic = component_of(spec)
    out = trial_dir(run_dir, spec.policy, profile)
    if (out / "summary.json").exists() and not (out / JOURNAL_NAME).exists():
        log(f"{out.name}: already finished, skipped (delete the folder to run it again)")
        return out
    resource = Resource.for_component(ic)
    spec.policy.check_resource(resource)
    endpoints = Endpoints(session=session)
    scaling = AutoScaling(session=session)
    hosted = endpoints.describe_component(ic).endpoint
    if hosted != spec.endpoint:
        raise ValidationError(
            f"inference component {ic} is on endpoint {hosted}, not {spec.endpoint}"
        )
    spec.guardrails.check(endpoints, spec.endpoint, spec.policy, profile.peak_rps)
    url = session_endpoint_url(session)
    clock = discover_clock(url)
    out.mkdir(parents=True, exist_ok=True)
    log(f"trial {spec.policy.label} on {profile.name} ({resource}) at speed x{clock.speed:g}")
    with live_change(scaling, endpoints, resource, out / JOURNAL_NAME, log, endpoint_url=url):
        scaling.apply_alone(spec.policy, resource)
        bring_to_copies(endpoints, ic, start_copies(spec), clock, spec.wait_timeout_s, log)
        poller = CopyPoller(endpoints, clock, every_virtual_s=10.0, component=ic)
        with poller:
            lead_s = spec.lead_real_s * clock.speed
            t0 = float(math.ceil((clock.now() + lead_s) / PERIOD_S) * PERIOD_S)
            with steady_heap():
                requests = driver(
                    profile,
                    endpoint=spec.endpoint,
                    variant=spec.variant,
                    host=url,
                    speed=clock.speed,
                    out_dir=out / "load",
                    workers=spec.workers,
                    seed=spec.seed,
                    log=log,
                    start_at_epoch_s=clock.to_real(t0),
                    llm=spec.llm,
                )
            started = start_epoch(requests, clock.speed)
            if math.isfinite(started):
                t0 = clock.to_virtual(started)
            settle = spec.settle_s if spec.settle_s is not None else 2 * PERIOD_S + 60
            end = t0 + math.ceil(profile.duration_s / PERIOD_S) * PERIOD_S
            log(f"load done; waiting {settle:g} s (virtual) for CloudWatch to settle")
            clock.sleep_until(end + settle)
        activities = scaling.describe_activities(resource)
    first = math.floor(t0 / PERIOD_S) * PERIOD_S
    metrics = fetch_component_metrics(
        session.client("cloudwatch"),
        ic,
        clock.datetime_at(first),
        clock.datetime_at(end + PERIOD_S),
        period_s=PERIOD_S,
        metrics=COMPONENT_METRICS,
    )
    summary = write_component_results(
        out, spec, ic, clock, t0, requests, metrics, poller.rows, activities
    )
    log(
        f"trial {spec.policy.label}: {summary['requests']} requests, errors "
        f"{summary['error_rate']:.2%} ({summary['refused_no_capacity']} at zero copies), TTFT "
        f"p99 {summary['ttft_p99_ms'] or math.nan:.0f} ms; results in {out}"
    )
    return out


def bring_to_copies(
    endpoints: Endpoints,
    ic: str,
    start: int,
    clock: VirtualClock,
    wait_timeout_s: float,
    log: Callable[[str], None],
) -> None:
    """Wait out any update, then set the starting copy count and wait until it serves."""
    deadline = time.monotonic() + clock.real_duration(wait_timeout_s)
    asked = False
    while True:
        state = endpoints.describe_component(ic)
        if state.status == "InService":
            if state.current == start and state.desired == start:
                return
            if not asked:
                log(f"setting inference component {ic} to {start} copies")
                endpoints.set_copy_count(ic, start)
                asked = True
        if time.monotonic() > deadline:
            raise TrialError(
                f"inference component {ic} did not reach {start} copies within "
                f"{wait_timeout_s:g} s (virtual); it is {state.status} with {state.current}"
            )
        time.sleep(max(0.1, clock.real_duration(5.0)))


def write_component_results(
    out: Path,
    spec: TrialSpec,
    ic: str,
    clock: VirtualClock,
    t0: float,
    requests: pd.DataFrame,
    metrics: pd.DataFrame,
    polls: list[tuple[float, str, int, int]],
    activities: list[dict[str, Any]],
) -> dict[str, Any]:
    """timeline.csv and the rest (see the module docstring); summary.json last."""
    profile = spec.profile
    n = int(math.ceil(profile.duration_s / PERIOD_S))
    t_s = np.arange(n) * PERIOD_S
    polls_df = pd.DataFrame(polls, columns=["virtual_s", "status", "current", "desired"])
    polls_df.insert(0, "t_s", polls_df["virtual_s"] - t0)
    idx = np.searchsorted(polls_df["t_s"].to_numpy(), t_s + PERIOD_S / 2, side="right") - 1
    ok = idx >= 0
    current = np.where(ok, polls_df["current"].to_numpy()[np.maximum(idx, 0)], np.nan)
    desired = np.where(ok, polls_df["desired"].to_numpy()[np.maximum(idx, 0)], np.nan)

    stamps = np.array([ts.timestamp() for ts in metrics.index], dtype=float)
    nearest = np.round((stamps - t0) / PERIOD_S).astype(int) * PERIOD_S
    by_t = metrics.set_axis(nearest)
    by_t = by_t[~by_t.index.duplicated(keep="first")].reindex(t_s)

    def col(name: str) -> np.ndarray:
        return np.asarray(by_t.get(name, pd.Series(0.0, index=t_s)).fillna(0.0), dtype=float)

    req = requests.copy()
    # Real client milliseconds stand for speed x as many virtual ones (the emulator's times are
    # virtual), as in a variant's trial.
    for name in ("latency_ms", "ttft_ms", "itl_p99_ms"):
        if name in req:
            req[name] = pd.to_numeric(req[name], errors="coerce") * clock.speed
    req["period"] = np.floor(req["scheduled_s"].to_numpy(dtype=float) / PERIOD_S).astype(int)
    errors = req["error"].fillna("").astype(str)
    req["failed"] = errors != ""
    req["no_capacity"] = errors == "no_capacity"
    grouped = req.groupby("period")
    good = req.loc[~req["failed"]].groupby("period")

    def per(series: pd.Series) -> np.ndarray:
        return np.asarray(series.reindex(range(n)), dtype=float)

    timeline = pd.DataFrame(
        {
            "t_s": t_s,
            "instances_in_service": current,
            "desired_capacity": desired,
            "invocations": col("Invocations:Sum"),
            "errors": col("Invocation4XXErrors:Sum") + col("Invocation5XXErrors:Sum"),
            "no_capacity_failures": col("NoCapacityInvocationFailures:Sum"),
            "sent": per(grouped.size()).astype(float),
            "failed": per(grouped["failed"].sum()),
            "refused_no_capacity": per(grouped["no_capacity"].sum()),
            "p50_latency_ms": per(good["latency_ms"].quantile(0.5)),
            "p99_latency_ms": per(good["latency_ms"].quantile(0.99)),
            "ttft_p99_ms": per(good["ttft_ms"].quantile(0.99)),
            "itl_p99_ms": per(good["itl_p99_ms"].quantile(0.99)),
        }
    )
    timeline[["sent", "failed", "refused_no_capacity"]] = timeline[
        ["sent", "failed", "refused_no_capacity"]
    ].fillna(0.0)
    ok_req = req.loc[~req["failed"]]
    total = len(req)
    changes = np.diff(desired[~np.isnan(desired)])

    def q(name: str, p: float) -> float | None:
        values = ok_req[name].dropna() if name in ok_req else pd.Series(dtype=float)
        return float(values.quantile(p)) if len(values) else None

    summary = {
        "candidate": spec.policy.label,
        "profile": profile.name,
        "endpoint": spec.endpoint,
        "inference_component": ic,
        "speed": clock.speed,
        "start_utc": clock.datetime_at(t0).isoformat(),
        "duration_s": profile.duration_s,
        "period_s": PERIOD_S,
        "requests": total,
        "failed": int(req["failed"].sum()),
        "error_rate": float(req["failed"].mean()) if total else 0.0,
        "refused_no_capacity": int(req["no_capacity"].sum()),
        "p50_latency_ms": q("latency_ms", 0.5),
        "p99_latency_ms": q("latency_ms", 0.99),
        "ttft_p99_ms": q("ttft_ms", 0.99),
        "itl_p99_ms": q("itl_p99_ms", 0.99),
        "cloudwatch_invocations": float(col("Invocations:Sum").sum()),
        "traffic_warning": None,
        "copy_hours": float(np.nansum(current)) * PERIOD_S / 3600.0,
        "instance_hours": float(np.nansum(current)) * PERIOD_S / 3600.0,
        "max_instances": int(np.nanmax(current)) if ok.any() else None,
        "zero_copy_hours": float(np.sum(current == 0)) * PERIOD_S / 3600.0,
        "scale_out_events": int((changes > 0).sum()),
        "scale_in_events": int((changes < 0).sum()),
        "scaling_activities": len(activities),
    }
    files = {
        "timeline.csv": timeline.to_csv(index=False),
        "cloudwatch.csv": metrics.to_csv(),
        "instances.csv": polls_df.to_csv(index=False),
        "activities.json": json.dumps(activities, indent=2, default=str),
        "requests.csv": requests.to_csv(index=False),
        "policy.json": spec.policy.to_json(),
        "summary.json": json.dumps(summary, indent=2) + "\n",
    }
    for name, text in files.items():
        tmp = out / f"{name}.tmp"
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(out / name)
    return summary
