"""Live trials against the local AWS: what is collected, and the original policy always returns.

The emulator runs in this process (LocalAws); `tuner trial` runs as a real subprocess driving
Locust, so SIGINT and kill -9 hit a real process as they would a user's.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import boto3
import pandas as pd
import pytest

from tests.conftest import REPO
from tests.live.live_faults import alive, children_of, set_up_original, settled_state
from tuner.aws import AutoScaling, AwsSession
from tuner.live.safety import JOURNAL_NAME
from tuner.live.trial import TrialSpec, run_trial
from tuner.model.capacity import Capacity
from tuner.policy.policy import ScalingPolicy
from tuner.policy.resource import Resource
from tuner.profiles import Profile, load_profile, parse_profile
from tuner.records import REQUEST_COLUMNS

ENDPOINT = "trial-endpoint"
RESOURCE = Resource.for_variant(ENDPOINT)
SPEED = 60.0
CAPACITY = Capacity.from_dict(
    {
        "instance_type": "ml.m5.large",
        "hourly_usd": 0.115,
        "boot_s": 120,
        "max_rps_per_instance": 4.0,
        "timeout_ms": 20000,
        "latency_ms": [{"rps": 1, "p50": 100, "p99": 250}, {"rps": 4, "p50": 150, "p99": 400}],
    }
)
ORIGINAL = ScalingPolicy(min_capacity=1, max_capacity=3, target_value=500.0, name="original")
CANDIDATE = ScalingPolicy(
    min_capacity=1,
    max_capacity=6,
    target_value=120.0,
    scale_out_cooldown_s=60,
    scale_in_cooldown_s=300,
)


@pytest.fixture
def local_aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[object]:
    from tuner.emulator import EmulatorConfig, LocalAws

    with LocalAws(
        EmulatorConfig(speed=SPEED, endpoint=ENDPOINT, capacity=CAPACITY, instances=1)
    ) as aws:
        for key, value in aws.env.items():
            monkeypatch.setenv(key, value)
        yield aws


def _scaling(aws: object) -> AutoScaling:
    return AutoScaling(boto3.client("application-autoscaling", endpoint_url=aws.url))  # type: ignore[attr-defined]


def _profile(tmp_path: Path, minutes: int = 8) -> Path:
    path = tmp_path / "burst.toml"
    path.write_text(
        'name = "burst"\n[[segment]]\nhold = "2m"\nrps = 2\n'
        f'[[segment]]\nhold = "{minutes - 2}m"\nrps = 10\n'
    )
    return path


def test_trial_collects_metrics_counts_and_requests(local_aws: object, tmp_path: Path) -> None:
    scaling = _scaling(local_aws)
    scaling.apply(ORIGINAL, RESOURCE)
    path = _profile(tmp_path)
    profile = load_profile(path)
    path.unlink()  # the trial plays the loaded profile: its file is not read again
    spec = TrialSpec(endpoint=ENDPOINT, policy=CANDIDATE, profile=profile)
    folder = run_trial(
        spec,
        tmp_path / "run",
        AwsSession(endpoint_url=local_aws.url),  # type: ignore[attr-defined]
        log=lambda m: None,
    )
    for name in (
        "timeline.csv",
        "cloudwatch.csv",
        "instances.csv",
        "activities.json",
        "requests.csv",
        "policy.json",
        "summary.json",
    ):
        assert (folder / name).is_file(), name
    assert not (folder / JOURNAL_NAME).exists()
    timeline = pd.read_csv(folder / "timeline.csv")
    summary = json.loads((folder / "summary.json").read_text())
    assert len(timeline) == 8 and timeline["t_s"].tolist() == [60 * k for k in range(8)]
    # 2 min x 120 + 6 min x 600 requests were due; all are recorded.
    assert summary["requests"] == 2 * 120 + 6 * 600
    assert timeline["sent"].sum() == summary["requests"]
    # CloudWatch counted what was sent, and its periods are the profile's periods (the load
    # starts on a period boundary): per minute within 1% but for the last, whose queued
    # requests finish in the next minute.
    assert summary["cloudwatch_invocations"] == pytest.approx(summary["requests"], rel=0.01)
    assert summary["sent"] == summary["requests"] and summary["traffic_warning"] is None
    gap = (timeline["invocations"] - timeline["sent"]).abs()[:-1]
    assert (gap <= 0.01 * timeline["sent"][:-1] + 1).all(), timeline
    # 10 rps on a 4-rps instance with target 120/min per instance scales out.
    assert timeline["desired_capacity"].max() >= 3
    assert summary["scale_out_events"] >= 1
    assert (timeline["p99_latency_ms"].dropna() > 0).all()
    assert scaling.read_policy(RESOURCE, "original") == ORIGINAL
    assert [p["PolicyName"] for p in scaling.describe_policies(RESOURCE)] == ["original"]
    # Re-running skips the finished trial.
    started = time.monotonic()
    assert (
        run_trial(
            spec,
            tmp_path / "run",
            AwsSession(endpoint_url=local_aws.url),  # type: ignore[attr-defined]
            log=lambda m: None,
        )
        == folder
    )
    assert time.monotonic() - started < 5


def test_foreign_traffic_is_flagged(local_aws: object, tmp_path: Path) -> None:
    """Requests the trial did not send show in CloudWatch: the summary says so."""
    url = local_aws.url  # type: ignore[attr-defined]
    runtime = boto3.client("sagemaker-runtime", endpoint_url=url)
    _scaling(local_aws).apply(ORIGINAL, RESOURCE)

    def invoke() -> None:
        runtime.invoke_endpoint(EndpointName=ENDPOINT, Body=b"{}", ContentType="application/json")

    def driver(
        profile: Profile, *, start_at_epoch_s: float, speed: float, **kwargs: object
    ) -> pd.DataFrame:
        """20 requests of the trial's own, and 10 from someone else in between."""
        time.sleep(max(0.0, start_at_epoch_s - time.time()))
        rows = []
        for seq in range(20):
            sent = time.time()
            invoke()
            rows.append((seq, (sent - start_at_epoch_s) * speed, sent, 10.0, 200, "", 0))
            if seq % 2:
                invoke()  # foreign: not in the trial's records
        return pd.DataFrame(rows, columns=list(REQUEST_COLUMNS))

    quiet = parse_profile({"name": "quiet", "segment": [{"hold": "2m", "rps": 0.2}]})
    spec = TrialSpec(endpoint=ENDPOINT, policy=CANDIDATE, profile=quiet, lead_real_s=0.3)
    folder = run_trial(
        spec, tmp_path / "run", AwsSession(endpoint_url=url), driver=driver, log=lambda m: None
    )
    summary = json.loads((folder / "summary.json").read_text())
    assert summary["sent"] == 20 and summary["cloudwatch_invocations"] == 30
    assert summary["invocations_mismatch"] == pytest.approx(0.5)
    assert "foreign traffic or lost requests" in summary["traffic_warning"]


def test_trial_dry_run_of_a_replay_csv_writes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The CSV is loaded once and the object goes to the trials: no replay TOML in --out."""
    from tuner.cli import main

    csv = tmp_path / "hist.csv"
    csv.write_text("timestamp,invocations\n2024-06-03T08:00:00Z,60\n2024-06-03T08:01:00Z,120\n")
    policy = CANDIDATE.save(tmp_path / "candidate.policy.json")
    out = tmp_path / "run"
    argv = ["trial", "--endpoint", ENDPOINT, "--policy", str(policy), "--profile", str(csv)]
    dry = ["--dry-run", "--endpoint-url", "http://127.0.0.1:9"]
    assert main([*argv, "--out", str(out), *dry]) == 0
    assert "dry run: tuner trial would make these AWS calls" in capsys.readouterr().out
    assert not out.exists()
    assert sorted(f.name for f in tmp_path.iterdir()) == ["candidate.policy.json", "hist.csv"]


def _start_trial(tmp_path: Path, minutes: int) -> tuple[subprocess.Popen[str], Path]:
    policy = CANDIDATE.save(tmp_path / "candidate.policy.json")
    run_dir = tmp_path / "run"
    env = dict(os.environ)
    env["PATH"] = f"{REPO / '.venv' / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tuner",
            "trial",
            "--endpoint",
            ENDPOINT,
            "--policy",
            str(policy),
            "--profile",
            str(_profile(tmp_path, minutes)),
            "--out",
            str(run_dir),
        ],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # its own process group: Locust children can be killed with it
    )
    return proc, run_dir


def _wait_for_candidate(scaling: AutoScaling, proc: subprocess.Popen[str], run_dir: Path) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
        if list(run_dir.rglob("load/requests*.csv")):
            live = scaling.read_policy(RESOURCE, CANDIDATE.name)
            if live == CANDIDATE:
                return
        time.sleep(0.2)
    raise AssertionError("the trial never applied the candidate and started the load")


@pytest.mark.parametrize(
    "signum",
    [signal.SIGINT, signal.SIGTERM, signal.SIGHUP],
    ids=["sigint", "sigterm", "sighup"],
)
def test_signal_mid_trial_restores_original(local_aws: object, tmp_path: Path, signum: int) -> None:
    """From the issue's original (two policies, a scheduled action, scale-in suspended)."""
    url = local_aws.url  # type: ignore[attr-defined]
    set_up_original(url, ENDPOINT)
    original = settled_state(url, ENDPOINT)
    scaling = _scaling(local_aws)
    proc, run_dir = _start_trial(tmp_path, minutes=30)
    try:
        _wait_for_candidate(scaling, proc, run_dir)
        locusts = children_of(proc.pid)
        assert locusts, "no Locust child found"
        # Only the candidate, while the trial runs.
        assert [p["PolicyName"] for p in scaling.describe_policies(RESOURCE)] == [CANDIDATE.name]
        os.kill(proc.pid, signum)
        output, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode == 128 + signum, output  # 130, 143, 129
    assert "restoring the original scaling configuration" in output
    assert settled_state(url, ENDPOINT) == original
    assert not list(run_dir.rglob(JOURNAL_NAME))
    assert "Traceback" not in output
    assert not [pid for pid in locusts if alive(pid)], "a Locust process outlived its trial"


def test_kill_9_then_tuner_restore(local_aws: object, tmp_path: Path) -> None:
    url = local_aws.url  # type: ignore[attr-defined]
    set_up_original(url, ENDPOINT)
    original = settled_state(url, ENDPOINT)
    scaling = _scaling(local_aws)
    proc, run_dir = _start_trial(tmp_path, minutes=30)
    try:
        _wait_for_candidate(scaling, proc, run_dir)
        locusts = children_of(proc.pid)
        assert locusts, "no Locust child found"
        os.kill(proc.pid, signal.SIGKILL)  # the trial alone, no cleanup: its Locust must die too
        proc.wait(timeout=30)
        deadline = time.monotonic() + 10
        while [pid for pid in locusts if alive(pid)] and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not [pid for pid in locusts if alive(pid)], "Locust outlived a kill -9 of its trial"
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert scaling.read_policy(RESOURCE, CANDIDATE.name) == CANDIDATE
    assert len(list(run_dir.rglob(JOURNAL_NAME))) == 1
    result = subprocess.run(
        [sys.executable, "-m", "tuner", "restore", str(run_dir)],
        env=dict(os.environ),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "restored endpoint/trial-endpoint/variant/AllTraffic" in result.stdout
    assert settled_state(url, ENDPOINT) == original
    assert not list(run_dir.rglob(JOURNAL_NAME))


def test_calibrate_finds_the_emulated_capacity_and_restores(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The emulator sustains 5 rps per instance; calibration must find it within 10%.

    At 60x a stall of a third of a real second (Locust or the emulator starved of CPU) is 20
    virtual seconds: a burst that fills the queue, or a few slow requests. Calibration runs such
    a step again instead of taking it as the limit (it once found 4.0 here). The objective
    leaves room for that jitter (a real millisecond is 60 virtual ones; p99 is 400 ms up to 5
    rps) and still marks the knee: 5.6 rps after 5.2 builds a queue to a p99 over 5 s.
    """
    from tuner.emulator import EmulatorConfig, LocalAws
    from tuner.live.calibration import CalibrationSpec, calibrate

    truth = Capacity.from_dict(
        {
            "instance_type": "ml.m5.large",
            "hourly_usd": 0.115,
            "boot_s": 180,
            "max_rps_per_instance": 5.0,
            "timeout_ms": 20000,
            "latency_ms": [{"rps": 1, "p50": 100, "p99": 250}, {"rps": 5, "p50": 150, "p99": 400}],
        }
    )
    with LocalAws(
        EmulatorConfig(speed=SPEED, endpoint=ENDPOINT, capacity=truth, instances=2)
    ) as aws:
        for key, value in aws.env.items():
            monkeypatch.setenv(key, value)
        scaling = _scaling(aws)
        scaling.apply(ORIGINAL, RESOURCE)
        spec = CalibrationSpec(endpoint=ENDPOINT, slo_p99_ms=2500, start_rps=1.0, measure_boot=True)
        lines: list[str] = []
        result = calibrate(
            spec, AwsSession(endpoint_url=aws.url), workdir=tmp_path, log=lines.append
        )
        found = result.capacity.max_rps_per_instance
        assert found == pytest.approx(5.0, rel=0.10), "\n".join(lines)
        assert result.capacity.boot_s == pytest.approx(180, abs=15)
        assert result.rule_of_thumb.target_value == pytest.approx(found * 30)
        # The latency curve holds only passing steps, in rate order, within the objective.
        rates = [p.rps for p in result.capacity.latency]
        assert rates == sorted(rates) and max(rates) == found
        assert all(p.p99_ms <= 2500 for p in result.capacity.latency)
        # Put back: the policy, no suspension, the two instances it had.
        assert scaling.read_policy(RESOURCE, "original") == ORIGINAL
        target = scaling.describe_target(RESOURCE)
        assert target is not None
        assert not target["SuspendedState"]["DynamicScalingOutSuspended"]
        sm = boto3.client("sagemaker", endpoint_url=aws.url)
        variant = sm.describe_endpoint(EndpointName=ENDPOINT)["ProductionVariants"][0]
        assert variant["CurrentInstanceCount"] == 2
        assert not list(tmp_path.rglob(JOURNAL_NAME))
