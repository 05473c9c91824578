"""Drive a traffic profile against an endpoint with Locust (a subprocess) and read the results.

The package never imports locust (it patches the whole process with gevent): ``run_loadtest``
starts ``python -m locust -f locustfiles/sagemaker_endpoint.py`` headless, alone or as a master
plus N workers on 127.0.0.1, shows progress on stderr, and turns the per-request records into one
row per period.

Per-request CSV (``requests.csv``), one row per request the profile scheduled, sorted by seq:

=============  =====  ====================================================================
column         type   meaning
=============  =====  ====================================================================
seq            int    index of the request in the profile's schedule, from 0
scheduled_s    float  profile time it was due (virtual seconds from profile start)
sent_epoch_s   float  wall-clock epoch when it left (when it was due, if never sent)
latency_ms     float  from sending to the full response; empty if not sent
status         int    HTTP status; 0 for no response (connection failure, timeout, not sent)
error          str    empty on success, else one of ERROR_KINDS
worker         int    Locust process that sent it (0 without workers)
=============  =====  ====================================================================

With ``--speed S`` a request due at profile time t leaves at start + t/S, so profile time of a
send is ``(sent_epoch_s - start_epoch_s) * S``. Latencies are wall-clock milliseconds everywhere
(requests, periods, summary); against the emulator's virtual clock, x S gives virtual ms.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TextIO

import numpy as np
import pandas as pd

from tuner.errors import LoadTestError, ValidationError
from tuner.profiles.profile import Profile, load_profile
from tuner.records import REQUEST_COLUMNS

LOCUSTFILE = Path(__file__).resolve().parents[2] / "locustfiles" / "sagemaker_endpoint.py"
ERROR_KINDS = (
    "throttled",
    "model_error",
    "not_ready",
    "unavailable",
    "server_error",
    "client_error",
    "timeout",
    "connection",
    "inflight_cap",
)


@dataclass(frozen=True, kw_only=True)
class LoadTestConfig:
    """One load test: what to play, against what, with how many Locust processes."""

    profile_path: Path
    endpoint: str
    out_dir: Path
    host: str | None = None
    """Base URL of the runtime API; None: AWS_ENDPOINT_URL or the region's runtime URL."""
    variant: str | None = None
    region: str | None = None
    aws_profile: str | None = None
    workers: int = 0
    """0: one Locust process; N: a master plus N workers on 127.0.0.1."""
    speed: float = 1.0
    seed: int | None = None
    payload: Path | None = None
    content_type: str = "application/json"
    payload_order: str = "cycle"
    max_inflight: int = 1000
    start_at_epoch_s: float | None = None
    """Wall-clock epoch of profile time 0 (None: as soon as Locust is ready)."""
    request_timeout_s: float = 70.0
    period_s: float = 60.0
    locustfile: Path = LOCUSTFILE
    env: Mapping[str, str] = field(default_factory=dict)
    """Extra environment for the Locust processes (e.g. credentials)."""

    def validate(self) -> Profile:
        """Check every input before starting anything; returns the loaded profile."""
        profile = load_profile(self.profile_path)
        if not self.endpoint:
            raise ValidationError("--endpoint must be a SageMaker endpoint name, got ''")
        if not self.speed > 0:
            raise ValidationError(f"--speed must be > 0, got {self.speed}")
        if not 0 <= self.workers <= 64:
            raise ValidationError(f"--workers must be between 0 and 64, got {self.workers}")
        if self.max_inflight < 1:
            raise ValidationError(f"--max-inflight must be >= 1, got {self.max_inflight}")
        if not self.period_s > 0:
            raise ValidationError(f"--period must be > 0 seconds, got {self.period_s}")
        if self.payload is not None and not self.payload.exists():
            raise ValidationError(f"--payload: file or folder not found: {self.payload}")
        if self.payload_order not in ("cycle", "random"):
            raise ValidationError(
                f"--payload-order must be cycle or random, got {self.payload_order!r}"
            )
        return profile


@dataclass(frozen=True)
class LoadTestResult:
    """What a load test produced: the records, one row per period, and the headline numbers."""

    out_dir: Path
    requests: pd.DataFrame
    periods: pd.DataFrame
    summary: dict[str, Any]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def locust_commands(config: LoadTestConfig, profile: Profile) -> list[list[str]]:
    """The Locust command lines: one, or a master followed by its workers."""
    out = config.out_dir.resolve()
    budget_s = profile.duration_s / config.speed + config.request_timeout_s + 30
    if config.start_at_epoch_s:
        budget_s += max(0.0, config.start_at_epoch_s - time.time())
    common = [sys.executable, "-m", "locust", "-f", str(config.locustfile)]
    custom = [
        "--profile", str(Path(config.profile_path).resolve()),
        "--endpoint-name", config.endpoint,
        "--speed", repr(config.speed),
        "--requests-csv", str(out / "requests.csv"),
        "--max-inflight", str(config.max_inflight),
        "--request-timeout", repr(config.request_timeout_s),
        "--content-type", config.content_type,
        "--payload-order", config.payload_order,
        "--loglevel", "WARNING",
    ]  # fmt: skip
    for flag, value in (
        ("--variant", config.variant),
        ("--region", config.region),
        ("--seed", config.seed),
        ("--payload", config.payload and str(Path(config.payload).resolve())),
        ("--start-at", config.start_at_epoch_s and repr(config.start_at_epoch_s)),
    ):
        if value is not None and value != "":
            custom += [flag, str(value)]
    users = str(max(config.workers, 1))
    head = [
        "--headless", "-u", users, "-r", users,
        "--run-time", f"{int(budget_s) + 1}s",  # a backstop: the locustfile stops by itself
        "--exit-code-on-error", "0",
        "--csv", str(out / "locust"), "--html", str(out / "locust.html"),
    ]  # fmt: skip
    if config.host:
        head += ["--host", config.host]
    if not config.workers:
        return [common + head + custom]
    port = str(_free_port())
    master = common + head + custom + [
        "--master", "--master-bind-host", "127.0.0.1", "--master-bind-port", port,
        "--expect-workers", str(config.workers), "--expect-workers-max-wait", "60",
    ]  # fmt: skip
    worker = common + custom + ["--worker", "--master-host", "127.0.0.1", "--master-port", port]
    return [master] + [list(worker) for _ in range(config.workers)]


def run_loadtest(config: LoadTestConfig, *, progress: TextIO | None = sys.stderr) -> LoadTestResult:
    """Play the profile with Locust; write requests.csv, periods.csv, summary.json in out_dir."""
    profile = config.validate()
    out = config.out_dir
    out.mkdir(parents=True, exist_ok=True)
    for stale in out.glob("requests*.csv"):
        stale.unlink()
    commands = locust_commands(config, profile)
    env = {**os.environ, **config.env}
    if config.aws_profile:
        env["AWS_PROFILE"] = config.aws_profile
    # The locustfile imports tuner.profiles: make this checkout importable even if not installed.
    root = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
    log_path = out / "locust.log"
    budget_s = profile.duration_s / config.speed + config.request_timeout_s + 90
    if config.start_at_epoch_s:
        budget_s += max(0.0, config.start_at_epoch_s - time.time())
    procs: list[subprocess.Popen[bytes]] = []
    began = time.time()
    with log_path.open("w") as log:
        try:
            for cmd in commands:
                procs.append(
                    subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=out)
                )
            _watch(procs, out, profile, config, began, budget_s, progress)
        finally:
            for p in procs:
                if p.poll() is None:
                    p.kill()
                    p.wait(timeout=10)
    if procs[0].returncode != 0:
        tail = [ln for ln in log_path.read_text().splitlines() if ln.strip()][-1:] or ["no output"]
        raise LoadTestError(f"locust exited with {procs[0].returncode}: {tail[0]} (see {log_path})")
    requests = _merge_records(out)
    start = start_epoch(requests, config.speed)
    periods = per_period(
        requests, profile, period_s=config.period_s, speed=config.speed, start_epoch_s=start,
        seed=config.seed,
    )  # fmt: skip
    periods.to_csv(out / "periods.csv", index=False)
    summary = summarize(requests, periods, config, profile, start)
    summary["commands"] = [" ".join(c) for c in commands]
    (out / "summary.json").write_text(json.dumps(summary, indent=2, default=str) + "\n")
    return LoadTestResult(out, requests, periods, summary)


def _watch(
    procs: list[subprocess.Popen[bytes]],
    out: Path,
    profile: Profile,
    config: LoadTestConfig,
    began: float,
    budget_s: float,
    progress: TextIO | None,
) -> None:
    last, sent, failed = began, 0, 0
    offsets: dict[Path, int] = {}
    while procs[0].poll() is None:
        if any(p.poll() not in (None, 0) for p in procs[1:]):
            raise LoadTestError("a Locust worker died; see locust.log in the output folder")
        if time.time() - began > budget_s:
            raise LoadTestError(f"load test still running after {budget_s:.0f} s: stopped it")
        if progress is not None and time.time() - last >= 5:
            last = time.time()
            for f in out.glob("requests*.csv"):
                with f.open("rb") as fh:  # read only what was appended since the last look
                    fh.seek(offsets.get(f, 0))
                    chunk = fh.read()
                    complete = chunk[: chunk.rfind(b"\n") + 1]
                    offsets[f] = offsets.get(f, 0) + len(complete)
                for line in complete.decode().splitlines():
                    cells = line.split(",")
                    if len(cells) == len(REQUEST_COLUMNS) and cells[0] != "seq":
                        sent += 1
                        failed += cells[5] != ""
            t = min((time.time() - began) * config.speed, profile.duration_s)
            progress.write(
                f"loadtest {profile.name}: profile {t / 60:5.1f}/{profile.duration_s / 60:.1f} min,"
                f" {sent} requests recorded, {failed} failed\n"
            )
            progress.flush()
        time.sleep(0.25)


def read_requests(path: Path) -> pd.DataFrame:
    """The per-request CSV as a DataFrame (error '' on success)."""
    df = pd.read_csv(
        path, dtype={"error": "string"}, keep_default_na=False, na_values={"latency_ms": [""]}
    )
    missing = set(REQUEST_COLUMNS) - set(df.columns)
    if missing:
        raise LoadTestError(f"{path}: request records lack columns {sorted(missing)}")
    df["error"] = df["error"].fillna("").astype(str)
    return df


def _merge_records(out: Path) -> pd.DataFrame:
    """One requests.csv sorted by seq, from the single process's or each worker's records."""
    parts = sorted(out.glob("requests.worker*.csv")) or [out / "requests.csv"]
    if not parts[0].exists():
        raise LoadTestError(f"Locust wrote no request records in {out} (see locust.log)")
    merged = pd.concat([read_requests(p) for p in parts], ignore_index=True)
    merged = merged.sort_values("seq", kind="stable").reset_index(drop=True)
    merged.to_csv(out / "requests.csv", index=False)
    for p in parts:
        if p.name != "requests.csv":
            p.unlink()
    return merged


def start_epoch(requests: pd.DataFrame, speed: float) -> float:
    """Wall-clock epoch of profile time 0 (no request leaves before it is due)."""
    if requests.empty:
        return float("nan")
    return float((requests["sent_epoch_s"] - requests["scheduled_s"] / speed).min())


def per_period(
    requests: pd.DataFrame,
    profile: Profile,
    *,
    period_s: float,
    speed: float,
    start_epoch_s: float,
    seed: int | None = None,
) -> pd.DataFrame:
    """One row per profile period: what was due, sent, answered, failed, and how fast.

    ``sent`` counts by actual send time (so a lagging generator shows); everything else counts
    the requests due in the period. Latency percentiles are over successful requests.
    """
    n = len(profile.counts(period_s))
    due = np.clip((requests["scheduled_s"].to_numpy() // period_s).astype(int), 0, n - 1)
    sent_mask = (requests["error"] != "inflight_cap").to_numpy()
    sent_t = (requests["sent_epoch_s"].to_numpy() - start_epoch_s) * speed
    sent_bin = np.clip((sent_t // period_s).astype(int), 0, n - 1)
    ok = ((requests["status"] // 100 == 2) & (requests["error"] == "")).to_numpy()
    answered = (requests["status"] > 0).to_numpy()
    expected = profile.counts(period_s, seed=seed)
    frame = {
        "t_s": np.arange(n) * period_s,
        "profile_requests": expected,
        "scheduled": np.bincount(due, minlength=n),
        "sent": np.bincount(sent_bin[sent_mask], minlength=n),
        "completed": np.bincount(due[answered], minlength=n),
        "ok": np.bincount(due[ok], minlength=n),
    }
    errors = requests["error"].to_numpy()
    for kind in ERROR_KINDS:
        frame[f"failed_{kind}"] = np.bincount(due[errors == kind], minlength=n)
    table = pd.DataFrame(frame)
    lat = pd.DataFrame({"bin": due[ok], "ms": requests["latency_ms"].to_numpy()[ok]})
    q = lat.groupby("bin")["ms"].quantile([0.5, 0.9, 0.99]).unstack()
    for p, col in ((0.5, "latency_p50_ms"), (0.9, "latency_p90_ms"), (0.99, "latency_p99_ms")):
        table[col] = q[p].reindex(range(n)).to_numpy() if p in q else np.nan
    widths = np.minimum(period_s, profile.duration_s - table["t_s"].to_numpy())
    table["profile_rps"] = expected / widths
    table["achieved_rps"] = table["sent"] / widths
    return table


def summarize(
    requests: pd.DataFrame,
    periods: pd.DataFrame,
    config: LoadTestConfig,
    profile: Profile,
    start: float,
) -> dict[str, Any]:
    """Headline numbers of a run (summary.json)."""
    ok = (requests["status"] // 100 == 2) & (requests["error"] == "")
    lat = requests.loc[ok, "latency_ms"]
    sent = requests[requests["error"] != "inflight_cap"]
    lag = (sent["sent_epoch_s"] - start - sent["scheduled_s"] / config.speed) * 1000
    kinds = requests["error"][requests["error"] != ""].value_counts().to_dict()
    cfg = {k: str(v) if isinstance(v, Path) else v for k, v in asdict(config).items() if k != "env"}
    return {
        "profile": profile.name,
        "duration_s": profile.duration_s,
        "profile_requests": profile.total_requests,
        "scheduled": int(len(requests)),
        "sent": int(len(sent)),
        "ok": int(ok.sum()),
        "failures": {k: int(v) for k, v in kinds.items()},
        "error_rate": float(1 - ok.mean()) if len(requests) else 0.0,
        "latency_ms": {
            f"p{int(q * 100)}": float(lat.quantile(q)) if len(lat) else None
            for q in (0.5, 0.9, 0.99)
        },
        "send_lag_ms": {
            "p50": float(lag.quantile(0.5)),
            "p99": float(lag.quantile(0.99)),
            "max": float(lag.max()),
        }
        if len(lag)
        else {},
        "start_epoch_s": start,
        "config": cfg,
    }
