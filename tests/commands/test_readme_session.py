"""The README's typical session, run as written against `tuner emulate`.

The commands live in examples/local-session.sh; the README quotes them, and this test checks
that the quote and the script agree before running the script against a real `tuner emulate`
process: time-compressed traffic from a shared trace, then snapshot, calibrate, collect, tune,
tune --live on a window of the history, apply --dry-run and apply.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
import urllib.request
from pathlib import Path

import boto3
import pandas as pd
import pytest

from tests.conftest import REPO, TRACES

SCRIPT = REPO / "examples" / "local-session.sh"
# The shared traces beside the checkout; TUNER_TRACES points elsewhere (e.g. from a worktree).
TRACES_DIR = Path(os.environ.get("TUNER_TRACES", str(TRACES)))
README = REPO / "README.md"


def _commands(text: str) -> list[str]:
    """The script's command lines (continuations joined), without comments or blanks."""
    joined = re.sub(r"\\\n\s*", "", text)
    return [ln.strip() for ln in joined.splitlines() if ln.strip().startswith("tuner ")]


def test_the_readme_quotes_the_session_script() -> None:
    readme = README.read_text()
    script = _commands(SCRIPT.read_text())
    quoted = _commands(readme)
    assert script and all(cmd in quoted for cmd in script), set(script) - set(quoted)
    assert _emulate_command() is not None


def _emulate_command() -> list[str] | None:
    for line in README.read_text().splitlines():
        if line.strip().startswith("tuner emulate --speed 60 --instances 4"):
            return shlex.split(line.split("#")[0])
    return None


def _start_emulator(cwd: Path, env: dict[str, str]) -> tuple[subprocess.Popen[str], dict[str, str]]:
    cmd = _emulate_command()
    assert cmd is not None
    proc = subprocess.Popen(
        [sys.executable, "-m", "tuner", *cmd[1:], "--port", "0"],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=(cwd / "emulate.log").open("w"),
        text=True,
    )
    assert proc.stdout is not None
    found: dict[str, str] = {}
    while len(found) < 5:
        line = proc.stdout.readline()
        assert line, f"tuner emulate stopped: {(cwd / 'emulate.log').read_text()[-1500:]}"
        if "=" in line and not line.startswith("#"):
            key, value = line.strip().split("=", 1)
            found[key] = value
    return proc, found


@pytest.mark.slow
def test_the_readme_session_runs_against_the_local_aws(tmp_path: Path) -> None:
    if not (TRACES_DIR / "elb_request_count_8c0756.csv").is_file():
        pytest.skip(f"the shared traces are not at {TRACES_DIR} (set TUNER_TRACES)")
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    proc, aws_env = _start_emulator(tmp_path, env)
    try:
        env.update(aws_env, TRACES=str(TRACES_DIR))
        run = subprocess.run(
            ["bash", str(SCRIPT)],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=900,
        )
        assert run.returncode == 0, run.stderr[-3000:]
        url = aws_env["AWS_ENDPOINT_URL"]
        with urllib.request.urlopen(f"{url}/_tuner/clock") as resp:
            clock = json.loads(resp.read())

        # collect returned what the load test sent, minute by minute of the virtual clock.
        sent = pd.read_csv(tmp_path / "runs" / "history" / "requests.csv")
        virtual = clock["virtual_epoch_s"] + clock["speed"] * (
            sent["sent_epoch_s"] - clock["real_epoch_s"]
        )
        minute = pd.to_datetime((virtual // 60) * 60, unit="s", utc=True)
        per_minute = minute.value_counts().sort_index()
        history = pd.read_csv(tmp_path / "history.csv", parse_dates=["timestamp"])
        got = history.set_index("timestamp")["invocations"].reindex(per_minute.index)
        assert abs(got.sum() - len(sent)) <= 0.01 * len(sent), (got.sum(), len(sent))

        # One time base: the snapshot's time is the endpoint's virtual time, labelled.
        assert json.loads((tmp_path / "before.json").read_text())["taken_at"].endswith("(virtual)")

        # tune --live trialled the top two on the window and wrote the report.
        out = tmp_path / "reports" / "retune"
        trials = sorted((out / "trials").glob("*/summary.json"))
        assert len(trials) == 2
        top = list(pd.read_csv(out / "candidates.csv").sort_values("rank")["candidate"][:2])
        assert {json.loads(t.read_text())["candidate"] for t in trials} == set(top)
        assert all(json.loads(t.read_text())["duration_s"] == 300 for t in trials)
        assert "live" in (out / "report.md").read_text().lower()
        assert "adding live trials" in run.stderr and "simulating" in run.stderr

        # apply put the recommendation on the endpoint.
        policy = json.loads((out / "recommended.policy.json").read_text())
        scaling = boto3.client(
            "application-autoscaling",
            endpoint_url=url,
            region_name=aws_env["AWS_REGION"],
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )
        target = scaling.describe_scalable_targets(ServiceNamespace="sagemaker")
        (registered,) = target["ScalableTargets"]
        assert registered["MinCapacity"] == policy["ScalableTarget"]["MinCapacity"]
        assert registered["MaxCapacity"] == policy["ScalableTarget"]["MaxCapacity"]
        assert "dry run: would call" in run.stdout and "applied and verified" in run.stdout
    finally:
        proc.terminate()
        proc.wait(timeout=30)
