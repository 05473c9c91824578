"""Drive a traffic profile against an endpoint with Locust (a subprocess) and read the results.

The package never imports locust (it patches the whole process with gevent): ``run_loadtest``
starts ``python -m locust -f locustfiles/sagemaker_endpoint.py`` headless, alone or as a master
plus N workers on 127.0.0.1 (or only the master, for workers started on other hosts with
:func:`worker_command`), shows progress on stderr, and turns the per-request records into one
row per period. It plays a loaded :class:`~tuner.profiles.Profile`, never a file: the profile's
content (``Profile.to_content``, replays already read) goes to Locust in a private temporary
JSON file (``--profile-content``) removed after the run (a kill -9 leaves it to the system's
temporary folder), so nothing is parsed twice and nothing is written beside the user's files.
Workers get that content and send their records back through Locust's messages (see the
locustfile): the master alone writes ``requests.csv``.

Per-request records (``requests.csv``), their periods and summary: :mod:`tuner.live.periods`.
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, TextIO

import pandas as pd

from tuner.errors import LoadTestError, ValidationError
from tuner.live.periods import per_period, read_requests, start_epoch, summarize
from tuner.profiles.profile import Profile
from tuner.profiles.tokens import TokenSpec
from tuner.records import REQUEST_COLUMNS

LOCUSTFILE = Path(__file__).resolve().parents[2] / "locustfiles" / "sagemaker_endpoint.py"


@dataclass(frozen=True, kw_only=True)
class LoadTestConfig:
    """One load test: what to play, against what, with how many Locust processes."""

    profile: Profile
    """The loaded profile to play (commands load the file once; Locust gets its content)."""
    endpoint: str
    out_dir: Path
    host: str | None = None
    """Base URL of the runtime API; None: AWS_ENDPOINT_URL or the region's runtime URL."""
    variant: str | None = None
    region: str | None = None
    aws_profile: str | None = None
    workers: int = 0
    """0: one Locust process; N: a master plus N workers on 127.0.0.1 (or elsewhere)."""
    external_workers: bool = False
    """Start only the master; the ``workers`` workers are started elsewhere (worker_command)."""
    master_bind_host: str = "127.0.0.1"
    """Where the master listens for workers: loopback unless workers run on other hosts."""
    master_port: int | None = None
    """The master's port (None: a free one; give it for external workers)."""
    workers_wait_s: float = 60.0
    """How long the master waits for its workers to connect."""
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
    stream: bool = False
    """InvokeEndpointWithResponseStream with LMI/TGI bodies; records TTFT, ITL and tokens."""
    inference_component: str | None = None
    """Target this inference component (the X-Amzn-SageMaker-Inference-Component header)."""
    tokens: TokenSpec = TokenSpec()
    """Prompt/output lengths of streaming requests (a profile's request trace overrides them)."""
    locustfile: Path = LOCUSTFILE
    env: Mapping[str, str] = field(default_factory=dict)
    """Extra environment for the Locust processes (e.g. credentials)."""

    def validate(self) -> None:
        """Check every input before starting anything."""
        if not self.endpoint:
            raise ValidationError("--endpoint must be a SageMaker endpoint name, got ''")
        if not self.speed > 0:
            raise ValidationError(f"--speed must be > 0, got {self.speed}")
        if not 0 <= self.workers <= 64:
            raise ValidationError(f"--workers must be between 0 and 64, got {self.workers}")
        if self.external_workers and not self.workers:
            raise ValidationError("--master-only needs --workers N: how many workers will connect")
        if self.master_port is not None and not 0 < self.master_port < 65536:
            raise ValidationError(f"--master-port must be in 1..65535, got {self.master_port}")
        if not self.workers_wait_s > 0:
            raise ValidationError(f"--workers-wait must be > 0 s, got {self.workers_wait_s:g}")
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
        if self.stream and self.payload is not None:
            raise ValidationError(
                "--stream builds its own bodies (--prompt-tokens/--output-tokens or a request "
                "trace); drop --payload"
            )


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


def locust_commands(config: LoadTestConfig, content_file: Path) -> list[list[str]]:
    """The Locust command lines: one, or a master followed by its workers.

    ``content_file`` holds the profile's content as JSON (:func:`write_profile_content`).
    """
    out = config.out_dir.resolve()
    budget_s = config.profile.duration_s / config.speed + config.request_timeout_s + 30
    if config.workers:
        budget_s += config.workers_wait_s
    if config.start_at_epoch_s:
        budget_s += max(0.0, config.start_at_epoch_s - time.time())
    common = [sys.executable, "-m", "locust", "-f", str(config.locustfile)]
    custom = [
        "--profile-content", str(Path(content_file).resolve()),
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
    if config.stream:
        t = config.tokens
        custom += [
            "--stream",
            "--prompt-tokens", str(t.prompt_tokens), "--output-tokens", str(t.output_tokens),
            "--token-dist", t.distribution.value, "--token-sigma", repr(t.sigma),
            "--token-spread", repr(t.spread), "--token-seed", str(t.seed),
        ]  # fmt: skip
    if config.inference_component:
        custom += ["--inference-component", config.inference_component]
    if not config.workers:
        return [common + head + custom]
    port = config.master_port or _free_port()
    master = common + head + custom + [
        "--master", "--master-bind-host", config.master_bind_host,
        "--master-bind-port", str(port), "--expect-workers", str(config.workers),
        "--expect-workers-max-wait", f"{config.workers_wait_s:g}",
    ]  # fmt: skip
    if config.external_workers:
        return [master]
    worker = worker_command("127.0.0.1", port, locustfile=config.locustfile)
    return [master] + [list(worker) for _ in range(config.workers)]


def write_profile_content(profile: Profile, path: Path) -> Path:
    """``profile`` as the JSON the locustfile's ``--profile-content`` reads back."""
    path.write_text(json.dumps(profile.to_content()), encoding="utf-8")
    return path


def worker_command(
    master_host: str, master_port: int, *, locustfile: Path = LOCUSTFILE
) -> list[str]:
    """A worker's command line: nothing but where the master is (it sends the rest)."""
    return [
        sys.executable, "-m", "locust", "-f", str(locustfile), "--worker",
        "--master-host", master_host, "--master-port", str(master_port), "--loglevel", "WARNING",
    ]  # fmt: skip


# Run before exec'ing Locust: ask Linux to SIGKILL it when its parent dies (prctl
# PR_SET_PDEATHSIG = 1, man 2 prctl; the setting survives execve), then check the parent did not
# die before that call. A launcher, not preexec_fn: preexec_fn is unsafe with threads running.
_PDEATHSIG = """\
import ctypes, os, signal, sys
if ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGKILL), 0, 0, 0) != 0:
    sys.exit("prctl(PR_SET_PDEATHSIG) failed")
if os.getppid() != int(sys.argv[1]):
    sys.exit("parent gone before start")
os.execv(sys.argv[2], sys.argv[2:])
"""


def dies_with_parent(cmd: list[str]) -> list[str]:
    """``cmd`` wrapped so that, on Linux, the process is killed when this one dies (kill -9 too)."""
    if not sys.platform.startswith("linux"):
        return cmd
    return [sys.executable, "-c", _PDEATHSIG, str(os.getpid()), *cmd]


def stop_group(proc: subprocess.Popen[bytes]) -> None:
    """Kill a child started in its own process group, with anything it started, and reap it."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=10)


def run_loadtest(config: LoadTestConfig, *, progress: TextIO | None = sys.stderr) -> LoadTestResult:
    """Play the profile with Locust; write requests.csv, periods.csv, summary.json in out_dir."""
    config.validate()
    profile = config.profile
    out = config.out_dir
    out.mkdir(parents=True, exist_ok=True)
    for stale in [*out.glob("requests*.csv"), out / "requests.workers.json"]:
        stale.unlink(missing_ok=True)
    if config.external_workers and config.master_port is None:
        config = replace(config, master_port=_free_port())
    # The master reads the profile's content from a private folder (mode 0700) removed after
    # the run: the user's profile file is not read again, and nothing is added beside it.
    with tempfile.TemporaryDirectory(prefix="tuner-loadtest-") as private:
        content_file = write_profile_content(profile, Path(private) / "profile.json")
        return _play(config, locust_commands(config, content_file), progress)


def _play(
    config: LoadTestConfig, commands: list[list[str]], progress: TextIO | None
) -> LoadTestResult:
    profile, out = config.profile, config.out_dir
    if config.external_workers and progress is not None:
        host = config.master_bind_host
        host = "THIS_HOST" if host in ("0.0.0.0", "*", "::") else host
        port = int(config.master_port or 0)
        progress.write(
            f"loadtest: master waiting {config.workers_wait_s:g} s for {config.workers} worker(s);"
            f" on each worker host run:\n  {shlex.join(worker_command(host, port))}\n"
        )
        progress.flush()
    env = {**os.environ, **config.env}
    if config.aws_profile:
        env["AWS_PROFILE"] = config.aws_profile
    # The locustfile imports tuner.profiles: make this checkout importable even if not installed.
    root = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
    log_path = out / "locust.log"
    budget_s = profile.duration_s / config.speed + config.request_timeout_s + 90
    if config.workers:
        budget_s += config.workers_wait_s
    if config.start_at_epoch_s:
        budget_s += max(0.0, config.start_at_epoch_s - time.time())
    procs: list[subprocess.Popen[bytes]] = []
    began = time.time()
    with log_path.open("w") as log:
        try:
            for cmd in commands:
                # Its own process group (a terminal's Ctrl-C reaches only the tuner, which stops
                # the group), and killed with its parent: no Locust outlives the run.
                procs.append(
                    subprocess.Popen(
                        dies_with_parent(cmd),
                        stdout=log,
                        stderr=subprocess.STDOUT,
                        env=env,
                        cwd=out,
                        process_group=0,
                    )
                )
            _watch(procs, out, profile, config, began, budget_s, progress)
        finally:
            for p in procs:
                stop_group(p)
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
    skew = out / "requests.workers.json"
    if skew.is_file():
        summary["workers"] = json.loads(skew.read_text())["workers"]
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


def _merge_records(out: Path) -> pd.DataFrame:
    """requests.csv (the single process's, or the master's from its workers) sorted by seq."""
    parts = [out / "requests.csv"]
    if not parts[0].exists():
        raise LoadTestError(f"Locust wrote no request records in {out} (see locust.log)")
    merged = pd.concat([read_requests(p) for p in parts], ignore_index=True)
    merged = merged.sort_values("seq", kind="stable").reset_index(drop=True)
    merged.to_csv(out / "requests.csv", index=False)
    return merged
