"""Live trials on the local AWS leave the endpoint exactly as found, whatever fails and when.

One LocalAws at a high speed serves every test here (the 20-s profile is 0.2 s real); each
test starts from the original configuration of issue 12: Min 1 / Max 3, two target-tracking
policies (one on the high-resolution concurrency metric), a scheduled action, dynamic scale-in
suspended, one instance. Load is a stand-in driver (the Locust path is in test_trial_live.py).
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pandas as pd
import pytest

from tests.conftest import REPO
from tests.live.live_faults import (
    CANDIDATE,
    ENDPOINT,
    RESOURCE,
    FaultInjector,
    exact_state,
    no_load,
    set_up_original,
    settled_state,
    throttle,
)
from tuner.aws import AwsSession
from tuner.cli import main
from tuner.emulator import EmulatorConfig, LocalAws
from tuner.errors import AwsError, TunerError
from tuner.live import safety
from tuner.live.safety import JOURNAL_NAME, LOCK_TAG_PREFIX, LockHeld
from tuner.live.trial import TrialSpec, run_trial
from tuner.model.capacity import Capacity
from tuner.profiles import Profile, load_profile

SPEED = 100.0
CAPACITY = Capacity.from_dict(
    {
        "instance_type": "ml.m5.large",
        "hourly_usd": 0.115,
        "boot_s": 20,
        "max_rps_per_instance": 4.0,
        "timeout_ms": 20000,
        "latency_ms": [{"rps": 1, "p50": 100, "p99": 250}, {"rps": 4, "p50": 150, "p99": 400}],
    }
)


@pytest.fixture(scope="module")
def aws_url() -> Iterator[str]:
    with LocalAws(
        EmulatorConfig(speed=SPEED, endpoint=ENDPOINT, capacity=CAPACITY, instances=1)
    ) as aws:
        yield aws.url


def _reset(url: str) -> None:
    """Back to one instance and nothing registered, by hand (not with the code under test)."""
    aas = boto3.client("application-autoscaling", endpoint_url=url)
    sm = boto3.client("sagemaker", endpoint_url=url)
    base = {"ServiceNamespace": "sagemaker", "ResourceId": RESOURCE.resource_id}
    dim = {"ScalableDimension": RESOURCE.scalable_dimension}
    for p in aas.describe_scaling_policies(**base)["ScalingPolicies"]:
        aas.delete_scaling_policy(PolicyName=p["PolicyName"], **base, **dim)
    for a in aas.describe_scheduled_actions(**base)["ScheduledActions"]:
        aas.delete_scheduled_action(ScheduledActionName=a["ScheduledActionName"], **base, **dim)
    if aas.describe_scalable_targets(ServiceNamespace="sagemaker")["ScalableTargets"]:
        aas.deregister_scalable_target(**base, **dim)
    arn = sm.describe_endpoint(EndpointName=ENDPOINT)["EndpointArn"]
    keys = [t["Key"] for t in sm.list_tags(ResourceArn=arn)["Tags"]]
    if keys:
        sm.delete_tags(ResourceArn=arn, TagKeys=keys)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        d = sm.describe_endpoint(EndpointName=ENDPOINT)
        v = d["ProductionVariants"][0]
        if d["EndpointStatus"] == "InService":
            if v["CurrentInstanceCount"] == 1:
                return
            sm.update_endpoint_weights_and_capacities(
                EndpointName=ENDPOINT,
                DesiredWeightsAndCapacities=[
                    {"VariantName": "AllTraffic", "DesiredInstanceCount": 1, "DesiredWeight": 1.0}
                ],
            )
        time.sleep(0.05)
    raise AssertionError("the endpoint did not return to one instance")


@pytest.fixture(scope="module")
def module_injector() -> FaultInjector:
    return FaultInjector()


@pytest.fixture
def injector(module_injector: FaultInjector) -> Iterator[FaultInjector]:
    """Counts (and when armed, fails) mutating calls; clients are made once for the module."""
    module_injector.arm(None)
    with module_injector.installed():
        yield module_injector


@pytest.fixture
def original(
    aws_url: str, monkeypatch: pytest.MonkeyPatch, injector: FaultInjector
) -> dict[str, Any]:
    """The original configuration, set up afresh; returns its exact state."""
    monkeypatch.setattr(safety, "LOCK_SETTLE_S", 0.05)
    monkeypatch.setattr(safety, "RESTORE_BACKOFF_S", 0.01)
    _reset(aws_url)
    set_up_original(aws_url)
    state = exact_state(aws_url)
    # The setup really is the issue's: checked here so every test starts from it.
    assert state["range"] == (1, 3) and state["desired"] == 1
    assert state["suspended"]["DynamicScalingInSuspended"]
    assert len(state["policies"]) == 2 and len(state["actions"]) == 1
    return state


def _profile(tmp_path: Path) -> Path:
    path = tmp_path / "short.toml"
    path.write_text('name = "short"\n[[segment]]\nhold = "20s"\nrps = 1\n')
    return path


def _spec(tmp_path: Path, **kwargs: Any) -> TrialSpec:
    defaults: dict[str, Any] = {
        "endpoint": ENDPOINT,
        "policy": CANDIDATE,
        "profile": load_profile(_profile(tmp_path)),
        "start_capacity": 2,
        "settle_s": 0.0,
        "lead_real_s": 0.05,
    }
    return TrialSpec(**{**defaults, **kwargs})


def _settled_state(url: str) -> dict[str, Any]:
    return settled_state(url)


def test_only_the_candidate_is_active_during_the_trial(
    aws_url: str, original: dict[str, Any], tmp_path: Path
) -> None:
    seen: list[dict[str, Any]] = []

    def inspecting(profile: Profile, **kwargs: Any) -> pd.DataFrame:
        seen.append(exact_state(aws_url))
        return no_load(profile)

    run_trial(
        _spec(tmp_path),
        tmp_path / "run",
        AwsSession(endpoint_url=aws_url),
        driver=inspecting,
        log=lambda m: None,
    )
    during = seen[0]
    assert [json.loads(p)["PolicyName"] for p in during["policies"]] == [CANDIDATE.name]
    assert during["range"] == (1, 6)
    assert during["suspended"] == {
        "DynamicScalingInSuspended": False,
        "DynamicScalingOutSuspended": False,
        "ScheduledScalingSuspended": True,
    }
    assert during["actions"] == original["actions"]  # kept, but suspended
    assert during["desired"] == 2
    assert any(key.startswith(LOCK_TAG_PREFIX) for key, _ in during["tags"])
    assert _settled_state(aws_url) == original
    assert not list(tmp_path.rglob(JOURNAL_NAME))


def _fault_points(aws_url: str, injector: FaultInjector, tmp_path: Path) -> list[str]:
    """The mutating calls of a clean trial, in order (each one is a fault point)."""
    session = AwsSession(endpoint_url=aws_url)
    run_trial(_spec(tmp_path), tmp_path / "clean", session, driver=no_load, log=lambda m: None)
    calls = list(injector.calls)
    # Lock, isolation (register, two deletes, put), the starting count; restore (register,
    # delete, two puts, the scheduled action), the count back, unlock.
    assert len(calls) == 13, "\n".join(calls)
    return calls


def test_each_mutating_call_failed_by_an_exception_restores_exactly(
    aws_url: str,
    original: dict[str, Any],
    injector: FaultInjector,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Call k of a trial throttled past retries, for k = 1..N: the endpoint ends as it was."""
    calls = _fault_points(aws_url, injector, tmp_path)
    assert _settled_state(aws_url) == original
    n = len(calls)
    session = AwsSession(endpoint_url=aws_url)
    by_exception = []
    for k in range(1, n + 1):
        injector.arm(k, throttle)
        with contextlib.suppress(TunerError):  # a failure before the restore is re-raised
            run_trial(
                _spec(tmp_path),
                tmp_path / f"exc-{k}",
                session,
                driver=no_load,
                log=lambda m: None,
            )
        assert len(injector.calls) >= k
        state = _settled_state(aws_url)
        if state == original and not list((tmp_path / f"exc-{k}").rglob(JOURNAL_NAME)):
            by_exception.append(k)
        else:  # start the next fault point from the original all the same
            _reset(aws_url)
            set_up_original(aws_url)

    with capsys.disabled():
        print(f"\n{n} fault points, {len(by_exception)} restored exactly (by an exception)")
    assert by_exception == list(range(1, n + 1)), by_exception


@pytest.mark.slow
def test_each_mutating_call_killed_then_tuner_restore_restores_exactly(
    aws_url: str,
    original: dict[str, Any],
    injector: FaultInjector,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """kill -9 just before call k of a trial, then `tuner restore`, for k = 1..N (make bench)."""
    calls = _fault_points(aws_url, injector, tmp_path)
    assert _settled_state(aws_url) == original
    n = len(calls)
    by_kill = []
    policy = CANDIDATE.save(tmp_path / "candidate.policy.json")
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_ENDPOINT")}
    driver = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.live.live_faults",
            aws_url,
            str(tmp_path / "kill"),
            str(_profile(tmp_path)),
            str(policy),
        ],
        cwd=REPO,
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert driver.stdout is not None and driver.stdin is not None
        assert driver.stdout.readline().strip() == "ready"
        for k in range(1, n + 1):
            driver.stdin.write(f"{k}\n")
            driver.stdin.flush()
            report = json.loads(driver.stdout.readline())
            assert report == {**report, "k": k, "killed": True}
            injector.arm(None)
            code = main(
                ["restore", str(tmp_path / "kill" / f"kill-{k}"), "--endpoint-url", aws_url]
            )
            if code == 0 and _settled_state(aws_url) == original:
                by_kill.append(k)
            else:
                _reset(aws_url)
                set_up_original(aws_url)
    finally:
        driver.stdin.close()  # type: ignore[union-attr]
        driver.wait(timeout=30)
    with capsys.disabled():
        print(f"\n{n} fault points, {len(by_kill)} restored exactly (kill -9, tuner restore)")
    assert by_kill == list(range(1, n + 1)), by_kill


@pytest.mark.parametrize(
    "k",
    [6, 10],
    ids=["killed-before-the-starting-count", "killed-mid-restore"],
)
def test_kill_9_then_the_same_trial_again_restores_first(
    aws_url: str, original: dict[str, Any], tmp_path: Path, k: int
) -> None:
    """Call 6: the candidate is alone on the endpoint; call 10: the restore is half done."""
    spec = _spec(tmp_path)
    policy = CANDIDATE.save(tmp_path / "candidate.policy.json")
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_ENDPOINT")}
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "tests.live.live_faults",
            aws_url,
            str(tmp_path / "runs"),
            str(_profile(tmp_path)),
            str(policy),
        ],
        cwd=REPO,
        env=env,
        input=f"{k}\n",
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert json.loads(out.stdout.splitlines()[-1])["killed"], out.stderr
    assert settled_state(aws_url) != original  # the kill left the endpoint changed
    journal = next((tmp_path / "runs").rglob(JOURNAL_NAME))
    first = journal.read_text()
    lines: list[str] = []
    folder = run_trial(
        spec,
        tmp_path / "runs" / f"kill-{k}",
        AwsSession(endpoint_url=aws_url),
        driver=no_load,
        log=lines.append,
    )
    assert any("restoring it first" in line for line in lines), lines
    assert (folder / "summary.json").is_file() and not journal.exists()
    assert _settled_state(aws_url) == original
    assert json.loads(first)["policies"] and len(json.loads(first)["policies"]) == 2


def test_a_second_live_change_is_refused_while_one_runs(
    aws_url: str, original: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    release = threading.Event()
    started = threading.Event()

    def blocking(profile: Profile, **kwargs: Any) -> pd.DataFrame:
        started.set()
        release.wait(30)
        return no_load(profile)

    errors: list[BaseException] = []

    def first() -> None:
        try:
            run_trial(
                _spec(tmp_path),
                tmp_path / "a",
                AwsSession(endpoint_url=aws_url),
                driver=blocking,
                log=lambda m: None,
            )
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    thread = threading.Thread(target=first)
    thread.start()
    try:
        assert started.wait(20)
        with pytest.raises(LockHeld, match=rf"locked by another live change: .*pid {os.getpid()}"):
            run_trial(
                _spec(tmp_path),
                tmp_path / "b",
                AwsSession(endpoint_url=aws_url),
                driver=no_load,
                log=lambda m: None,
            )
        policy = CANDIDATE.save(tmp_path / "c.policy.json")
        url = ["--endpoint-url", aws_url]
        assert (
            main(
                [
                    "trial",
                    "--endpoint",
                    ENDPOINT,
                    "--policy",
                    str(policy),
                    "--profile",
                    str(_profile(tmp_path)),
                    "--out",
                    str(tmp_path / "c"),
                    *url,
                ]
            )
            == 2
        )
        assert f"pid {os.getpid()}" in capsys.readouterr().err
        other = CANDIDATE.replace(target_value=200.0).save(tmp_path / "other.policy.json")
        assert main(["apply", str(other), "--endpoint", ENDPOINT, *url]) == 2
        assert "locked by another live change" in capsys.readouterr().err
    finally:
        release.set()
        thread.join(30)
    assert not errors
    assert not list((tmp_path / "b").rglob(JOURNAL_NAME))
    assert _settled_state(aws_url) == original


def test_a_restore_that_keeps_failing_names_the_restore_command(
    aws_url: str, original: dict[str, Any], injector: FaultInjector, tmp_path: Path
) -> None:
    # Calls 1-6 change the endpoint (lock, isolation, count); from 7 on, every call of the
    # restore is throttled, past the retries.
    injector.arm(7, throttle, from_then_on=True)
    with pytest.raises(safety.RestoreFailed) as caught:
        run_trial(
            _spec(tmp_path),
            tmp_path / "run",
            AwsSession(endpoint_url=aws_url),
            driver=no_load,
            log=lambda m: None,
        )
    assert injector.calls[6:] == ["RegisterScalableTarget"] * safety.RESTORE_ATTEMPTS
    injector.arm(None)
    message = str(caught.value)
    journal = next((tmp_path / "run").rglob(JOURNAL_NAME))
    assert f"tuner restore {journal} --endpoint-url {aws_url}" in message
    assert "may still run the trial's configuration" in message
    assert caught.value.exit_status == 3
    # The command it names puts the original back.
    assert main(["restore", str(journal), "--endpoint-url", aws_url]) == 0
    assert _settled_state(aws_url) == original


def test_restore_retries_then_fails_with_aws_error(monkeypatch: pytest.MonkeyPatch) -> None:
    pauses: list[float] = []
    calls = []

    def flaky() -> str:
        calls.append(1)
        if len(calls) < 4:
            raise AwsError("Throttled")
        return "done"

    assert (
        safety.with_retries(flaky, "x", lambda m: None, backoff_s=1.0, sleep=pauses.append)
        == "done"
    )
    assert pauses == [1.0, 2.0, 4.0]
    with pytest.raises(AwsError):
        safety.with_retries(
            lambda: (_ for _ in ()).throw(AwsError("no")),
            "x",
            lambda m: None,
            attempts=3,
            sleep=pauses.append,
        )


def test_calibration_that_fails_puts_the_instance_count_back(
    aws_url: str, original: dict[str, Any], tmp_path: Path
) -> None:
    """A calibration holds one instance; when its load fails, the original 2 come back."""
    from tuner.errors import LoadTestError
    from tuner.live import CalibrationSpec, calibrate

    sm = boto3.client("sagemaker", endpoint_url=aws_url)
    sm.update_endpoint_weights_and_capacities(
        EndpointName=ENDPOINT,
        DesiredWeightsAndCapacities=[
            {"VariantName": "AllTraffic", "DesiredInstanceCount": 2, "DesiredWeight": 1.0}
        ],
    )
    before = settled_state(aws_url)
    assert before == {**original, "desired": 2, "current": 2}
    held: list[dict[str, Any]] = []

    def failing(profile: Profile, **kwargs: Any) -> pd.DataFrame:
        held.append(exact_state(aws_url))
        raise LoadTestError("locust exited with 1 (injected)")

    spec = CalibrationSpec(endpoint=ENDPOINT, slo_p99_ms=1000)
    with pytest.raises(LoadTestError):
        calibrate(
            spec,
            AwsSession(endpoint_url=aws_url),
            workdir=tmp_path,
            driver=failing,
            probe=lambda: 5.0,
            log=lambda m: None,
        )
    # During: one instance, dynamic scaling suspended; after: exactly as before, 2 instances.
    assert held[0]["desired"] == 1 and held[0]["suspended"]["DynamicScalingOutSuspended"]
    assert settled_state(aws_url) == before
    assert not list(tmp_path.rglob(JOURNAL_NAME))


def test_release_lock_drops_a_dead_runs_lock(
    aws_url: str, original: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    from tuner.aws import Endpoints
    from tuner.live import LockHolder

    endpoints = Endpoints(boto3.client("sagemaker", endpoint_url=aws_url))
    dead = LockHolder("ann", "far-host", 4242, time.time() + 600, "t1", "/x/restore-journal.json")
    endpoints.add_tag(ENDPOINT, LOCK_TAG_PREFIX + "AllTraffic", dead.to_tag())
    argv = ["restore", "--release-lock", "--endpoint", ENDPOINT, "--endpoint-url", aws_url]
    assert main(argv) == 0
    assert "removed the lock of ann@far-host pid 4242" in capsys.readouterr().out
    assert settled_state(aws_url) == original
