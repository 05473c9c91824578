"""Locust distributed past one folder: a master and two workers that share no file.

The master alone has the profile (a replay whose CSV sits beside it); the workers get its content
and their share through Locust's messages, and send every request record back, so the master's
requests.csv is the whole run.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from test_loadgen import CREDS_ENV, SigV4Server

from tuner.live.loadgen import worker_command
from tuner.profiles.profile_file import load_profile

# A request's trip from Locust to the server shifts it across a minute boundary by trip x SPEED
# virtual seconds: at x10, 60 ms of trip on a loaded machine is still within 1% of a minute.
SPEED = 10.0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _env() -> dict[str, str]:
    import os

    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    return {**env, **CREDS_ENV}


@pytest.mark.slow  # ~26 s; test_loadgen runs a master and two workers in `make test`
def test_master_and_two_workers_in_separate_folders_share_no_file(tmp_path: Path) -> None:
    master_dir, logs = tmp_path / "master", tmp_path / "logs"
    worker_dirs = [tmp_path / "worker1", tmp_path / "worker2"]
    for d in (master_dir, logs, *worker_dirs):
        d.mkdir()
    # Per-minute history that rises and falls: a replay whose CSV only the master has.
    counts = [300, 420, 900, 1500, 1200, 600]
    rows = [f"2026-01-01T00:{m:02d}:00Z,{c}" for m, c in enumerate(counts)]
    (master_dir / "trace.csv").write_text("timestamp,invocations\n" + "\n".join(rows) + "\n")
    (master_dir / "p.toml").write_text(
        'name = "trace"\n[[segment]]\nreplay = "trace.csv"\ntime_scale = 0.5\n'
    )
    expected = load_profile(master_dir / "p.toml").counts(60)  # 3 profile minutes
    port = _free_port()
    server = SigV4Server()
    procs: list[subprocess.Popen[bytes]] = []
    try:
        master_cmd = [
            sys.executable, "-m", "tuner", "loadtest", "--profile", "p.toml",
            "--endpoint", "my-endpoint", "--host", server.url, "--speed", str(SPEED),
            "--workers", "2", "--master-only", "--master-port", str(port),
            "--workers-wait", "30", "--out", "out",
        ]  # fmt: skip
        with (logs / "master.log").open("wb") as log:
            procs.append(
                subprocess.Popen(
                    master_cmd, cwd=master_dir, env=_env(), stdout=log, stderr=subprocess.STDOUT
                )
            )
        for i, d in enumerate(worker_dirs):
            cmd = worker_command("127.0.0.1", port)
            assert not any("p.toml" in word or "trace" in word for word in cmd)
            with (logs / f"worker{i}.log").open("wb") as log:
                procs.append(
                    subprocess.Popen(cmd, cwd=d, env=_env(), stdout=log, stderr=subprocess.STDOUT)
                )
        assert procs[0].wait(timeout=150) == 0, (logs / "master.log").read_text()[-2000:]
        for p in procs[1:]:
            p.wait(timeout=30)
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait(timeout=10)
        server.close()

    out = master_dir / "out"
    req = pd.read_csv(out / "requests.csv", keep_default_na=False)
    assert sorted(req["seq"]) == list(range(int(round(expected.sum()))))
    assert set(req["worker"]) == {0, 1} and (req["status"] == 200).all()
    # Per profile minute: what the master's merged file says was sent, against what the server
    # received (arrival time on the master's clock, which these workers share here).
    summary = json.loads((out / "summary.json").read_text())
    start = summary["start_epoch_s"]
    n = len(expected)
    at_server = np.bincount(
        np.clip(((server.arrivals() - start) * SPEED // 60).astype(int), 0, n - 1), minlength=n
    )
    in_file = np.bincount(
        np.clip(((req["sent_epoch_s"] - start) * SPEED // 60).astype(int), 0, n - 1), minlength=n
    )
    assert np.all(np.abs(in_file - at_server) <= 0.01 * at_server), (in_file, at_server)
    assert np.all(np.abs(in_file - expected) <= 0.01 * expected), (in_file, expected)
    assert all(ok for _, _, ok, _, _ in server.received), "every request correctly signed"
    # The skew was measured and reported per worker (same host: well under 50 ms).
    workers = summary["workers"]
    assert [w["index"] for w in workers] == [0, 1]
    assert all(abs(w["offset_s"]) < 0.05 and w["rtt_s"] >= 0 for w in workers)
    # The workers wrote nothing: no profile, no records in their folders.
    for d in worker_dirs:
        assert list(d.iterdir()) == [], list(d.iterdir())
