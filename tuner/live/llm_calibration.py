"""Streaming calibration: TTFT and ITL of one copy by concurrency, and its concurrency limit.

Closed loop at a fixed concurrency is the right probe here (the copy's answer to N concurrent
sequences is what the capacity file tabulates): N threads each send
InvokeEndpointWithResponseStream requests back to back for ``step_s`` seconds, SigV4-signed,
reading the event stream as it arrives (:mod:`tuner.tokenstream`). Concurrency doubles from 1
until a step fails, then rises by one from the last passing step up to the failing one.

A step fails when its error share exceeds ``max_error_rate`` or its TTFT p99 rises past
``max(ttft_factor x TTFT p99 at concurrency 1, that + ttft_slack_ms)``: a copy that runs N
sequences at once starts each within about one prefill; one more than it can run waits for a
whole answer to finish. The highest passing concurrency, divided by ``copies``, is
``max_concurrency_per_copy``; the passing steps' TTFT/ITL become the token-aware capacity file
(LLM-INTERFACES.md section 3). The endpoint is measured as it is: hold it at ``copies`` copies
(MinCopyCount = MaxCopyCount) while this runs; :func:`holding_copies` does that for an inference
component through the journaled live change of :mod:`tuner.live.safety`.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import math
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlsplit

import numpy as np
import pandas as pd

from tuner.errors import ValidationError
from tuner.profiles.tokens import TokenSpec, stream_body
from tuner.tokenstream import read_stream

if TYPE_CHECKING:
    from tuner.aws import AwsSession


@dataclass(frozen=True, kw_only=True)
class StreamCalibrationSpec:
    endpoint: str
    inference_component: str | None = None
    tokens: TokenSpec = TokenSpec()
    step_s: float = 30.0
    """Real seconds each concurrency is held."""
    warmup_share: float = 0.2
    max_concurrency: int = 256
    ttft_factor: float = 2.0
    ttft_slack_ms: float = 50.0
    max_error_rate: float = 0.01
    copies: int = 1
    """Copies serving during the test (concurrency per copy = concurrency / copies)."""
    instance_type: str = "ml.g6.2xlarge"
    hourly_usd: float = 0.9776
    copies_per_instance: int = 1
    instance_boot_s: float = 300.0
    copy_load_s: float = 258.0
    timeout_ms: float = 60_000.0
    time_scale: float = 1.0
    """Virtual ms per real ms (the local AWS's speed): measured TTFT/ITL are multiplied by it,
    so the file holds the endpoint's own (virtual) times; ``ttft_slack_ms`` is virtual too."""

    def __post_init__(self) -> None:
        if not self.endpoint:
            raise ValidationError("--endpoint must be a SageMaker endpoint name, got ''")
        for name in ("step_s", "ttft_factor", "timeout_ms"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                flag = "--" + name.replace("_", "-")
                raise ValidationError(f"{flag} > 0 must hold, got {value:g}")
        for name in ("ttft_slack_ms", "hourly_usd", "instance_boot_s", "copy_load_s"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                flag = "--" + name.replace("_", "-")
                raise ValidationError(f"{flag} >= 0 must hold, got {value:g}")
        if not 0 <= self.max_error_rate < 1:
            raise ValidationError(f"--max-error-rate must be in [0, 1), got {self.max_error_rate}")
        if not 0 <= self.warmup_share < 1:
            raise ValidationError(f"warmup_share must be in [0, 1), got {self.warmup_share}")
        for name in ("max_concurrency", "copies", "copies_per_instance"):
            if getattr(self, name) < 1:
                flag = "--" + name.replace("_", "-")
                raise ValidationError(f"{flag} >= 1 must hold, got {getattr(self, name)}")


@dataclass(frozen=True)
class StreamCalibrationResult:
    capacity: dict[str, Any]
    """The token-aware capacity file's content (``kind`` = ``llm``)."""
    steps: pd.DataFrame
    """One row per step run, in the order run."""


class _Client:
    """Signs and sends streaming invocations over one keep-alive connection per thread."""

    def __init__(self, spec: StreamCalibrationSpec, host: str, region: str, creds: Any) -> None:
        from botocore.auth import SigV4Auth  # noqa: PLC0415 - live code signs; the core does not

        self.spec, self.host = spec, host.rstrip("/")
        parts = urlsplit(self.host)
        self.https, self.netloc = parts.scheme == "https", parts.netloc
        self.path = f"/endpoints/{quote(spec.endpoint, safe='')}/invocations-response-stream"
        self.auth = SigV4Auth(creds, "sagemaker", region)

    def connection(self) -> http.client.HTTPConnection:
        cls = http.client.HTTPSConnection if self.https else http.client.HTTPConnection
        return cls(self.netloc, timeout=self.spec.timeout_ms / 1000)

    def headers(self, body: bytes) -> dict[str, str]:
        from botocore.awsrequest import AWSRequest  # noqa: PLC0415

        base = {"Content-Type": "application/json", "Accept": "application/vnd.amazon.eventstream"}
        if self.spec.inference_component:
            base["X-Amzn-SageMaker-Inference-Component"] = self.spec.inference_component
        request = AWSRequest(method="POST", url=self.host + self.path, data=body, headers=base)
        self.auth.add_auth(request)
        return dict(request.headers.items())


def _worker(client: _Client, seqs: list[int], stop_at: float, out: list[tuple[float, ...]]) -> None:
    conn = client.connection()
    prompt, output = client.spec.tokens.draw(np.asarray(seqs))
    k = 0
    try:
        while time.time() < stop_at:
            i = k % len(seqs)
            body = stream_body(int(prompt[i]), int(output[i]))
            headers = client.headers(body)
            began_epoch, began = time.time(), time.perf_counter()
            ok, ttft, itl_mean, itl_p99 = 0.0, math.nan, math.nan, math.nan
            try:
                conn.request("POST", client.path, body=body, headers=headers)
                resp = conn.getresponse()
                if resp.status == 200:
                    s = read_stream(resp.read, began)
                    ok = float(not s.error)
                    ttft, itl_mean, itl_p99 = s.ttft_ms, s.itl_mean_ms, s.itl_p99_ms
                else:
                    resp.read()
            except (OSError, http.client.HTTPException):
                conn.close()
                conn = client.connection()
            out.append((began_epoch, ok, ttft, itl_mean, itl_p99))
            k += 1
    finally:
        conn.close()


def measure_step(
    client: _Client, concurrency: int, step_s: float, warmup_share: float
) -> dict[str, float]:
    """Hold ``concurrency`` closed-loop streams for ``step_s``; TTFT/ITL of what ran after the
    warm-up share."""
    start = time.time()
    stop_at = start + step_s
    records: list[tuple[float, ...]] = []
    threads = [
        threading.Thread(
            target=_worker,
            args=(client, list(range(j, 4096 * concurrency, concurrency)), stop_at, records),
            daemon=True,
        )
        for j in range(concurrency)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=step_s + client.spec.timeout_ms / 1000 + 5)
    rows = np.array([r for r in records if r[0] >= start + warmup_share * step_s], dtype=float)
    if rows.size == 0:
        rows = np.zeros((0, 5))
    good = rows[rows[:, 1] == 1.0]

    def q(col: int, p: float) -> float:
        return float(np.percentile(good[:, col], p)) if len(good) else math.nan

    return {
        "concurrency": float(concurrency),
        "requests": float(len(rows)),
        "errors": float(len(rows) - len(good)),
        "error_rate": float(1 - len(good) / len(rows)) if len(rows) else 1.0,
        "ttft_p50_ms": q(2, 50),
        "ttft_p99_ms": q(2, 99),
        "itl_p50_ms": q(3, 50),
        "itl_p99_ms": q(4, 99),
    }


def calibrate_stream(
    spec: StreamCalibrationSpec,
    *,
    host: str,
    region: str,
    credentials: Any,
    log: Any = None,
) -> StreamCalibrationResult:
    """Find the concurrency limit and the TTFT/ITL curve (see the module docstring)."""
    client = _Client(spec, host, region, credentials)
    steps: list[dict[str, float]] = []
    limit_ms = math.inf

    def run(c: int) -> bool:
        nonlocal limit_ms
        step = measure_step(client, c, spec.step_s, spec.warmup_share)
        for key in ("ttft_p50_ms", "ttft_p99_ms", "itl_p50_ms", "itl_p99_ms"):
            step[key] *= spec.time_scale
        if not steps:
            base = step["ttft_p99_ms"]
            limit_ms = max(spec.ttft_factor * base, base + spec.ttft_slack_ms)
        passed = step["error_rate"] <= spec.max_error_rate and step["ttft_p99_ms"] <= limit_ms
        step["passed"] = float(passed)
        steps.append(step)
        if log is not None:
            log(
                f"concurrency {c}: {step['requests']:.0f} requests, TTFT p50/p99 "
                f"{step['ttft_p50_ms']:.0f}/{step['ttft_p99_ms']:.0f} ms, ITL p99 "
                f"{step['itl_p99_ms']:.1f} ms, errors {step['error_rate']:.1%}: "
                + ("pass" if passed else "fail")
            )
        return passed

    if not run(1):
        raise ValidationError(
            "concurrency 1 already fails (errors or no successful stream): is the endpoint "
            "streaming and the inference component name right?"
        )
    best, c = 1, 2
    failed: int | None = None
    while c <= spec.max_concurrency:
        if not run(c):
            failed = c
            break
        best, c = c, c * 2
    if failed is None and best < spec.max_concurrency:
        failed = spec.max_concurrency + 1
    if failed is not None:
        for c in range(best + 1, min(failed, spec.max_concurrency + 1)):
            if not run(c):
                break
            best = c
    table = pd.DataFrame(steps)
    return StreamCalibrationResult(capacity_content(spec, table, best), table)


def capacity_content(spec: StreamCalibrationSpec, steps: pd.DataFrame, best: int) -> dict[str, Any]:
    """The capacity file (LLM-INTERFACES.md section 3) from the passing steps up to ``best``."""
    ok = steps[(steps["passed"] == 1.0) & (steps["concurrency"] <= best)]
    ok = ok.sort_values("concurrency")
    per_copy = ok["concurrency"] / spec.copies

    def curve(p50: str, p99: str) -> list[dict[str, float]]:
        return [
            {"concurrency": float(c), "p50": round(float(a), 3), "p99": round(float(b), 3)}
            for c, a, b in zip(per_copy, ok[p50], ok[p99], strict=True)
        ]

    return {
        "kind": "llm",
        "instance_type": spec.instance_type,
        "hourly_usd": spec.hourly_usd,
        "copies_per_instance": spec.copies_per_instance,
        "instance_boot_s": spec.instance_boot_s,
        "copy_load_s": spec.copy_load_s,
        "max_concurrency_per_copy": max(1, math.floor(best / spec.copies)),
        "timeout_ms": spec.timeout_ms,
        "prompt_tokens": spec.tokens.prompt_tokens,
        "output_tokens": spec.tokens.output_tokens,
        "ttft_ms": curve("ttft_p50_ms", "ttft_p99_ms"),
        "itl_ms": curve("itl_p50_ms", "itl_p99_ms"),
    }


def save_capacity(content: dict[str, Any], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(content, indent=2) + "\n")


@contextlib.contextmanager
def holding_copies(
    session: AwsSession,
    component: str,
    copies: int,
    journal: Path,
    log: Callable[[str], None],
    *,
    wait_timeout_s: float = 1800.0,
) -> Iterator[None]:
    """Hold ``component`` at ``copies`` copies while the block runs, then put it back.

    Inside :func:`tuner.live.safety.live_change` (lock on the hosting endpoint, journal, restore
    on every exit): dynamic scaling of its scalable target is suspended and the copy count set;
    a registered range that does not allow ``copies`` is refused before anything changes.
    """
    from tuner.aws import AutoScaling, Endpoints
    from tuner.live.component_trial import bring_to_copies
    from tuner.live.safety import live_change
    from tuner.live.trial import discover_clock, session_endpoint_url
    from tuner.policy import Resource

    endpoints, scaling = Endpoints(session=session), AutoScaling(session=session)
    resource = Resource.for_component(component)
    target = scaling.describe_target(resource)
    if target is not None and not target["MinCapacity"] <= copies <= target["MaxCapacity"]:
        raise ValidationError(
            f"--copies {copies} is outside the copy range {target['MinCapacity']}.."
            f"{target['MaxCapacity']} registered for {resource}: pick --copies in it (the range "
            "is not changed for a calibration)"
        )
    url = session_endpoint_url(session)
    clock = discover_clock(url)
    with live_change(scaling, endpoints, resource, journal, log, endpoint_url=url):
        if target is not None:
            scaling.set_suspended(resource, scale_in=True, scale_out=True)
        bring_to_copies(endpoints, component, copies, clock, wait_timeout_s, log)
        yield
