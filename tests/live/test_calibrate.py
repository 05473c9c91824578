"""Calibration: step rates, per-step verdicts, the sustained rate (hand-made records); which
failures are run again, the wait for an idle endpoint, and the whole run with a scripted load
driver and probe (moto's control plane) or real probes against the local AWS."""

from __future__ import annotations

import http.client
import json
import threading
import time
import tomllib
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import boto3
import numpy as np
import pandas as pd
import pytest

from tests.conftest import REGION, create_endpoint
from tuner.aws import AwsSession
from tuner.clock import VirtualClock
from tuner.errors import AwsError, TrialError, ValidationError
from tuner.live import calibration as calibrate_module
from tuner.live.calibration import CalibrationSpec, calibrate
from tuner.live.calibration_steps import (
    Step,
    analyse_steps,
    bracket_rates,
    idle_threshold_ms,
    refine_rates,
    rerun_reason,
    runtime_probe,
    step_profile,
    step_profile_toml,
    sustained,
    wait_until_idle,
)
from tuner.model.capacity import Capacity
from tuner.profiles.profile import Profile
from tuner.profiles.profile_file import parse_profile


def _records(steps: list[Step], latency_ms: list[float], fail_share: list[float]) -> pd.DataFrame:
    rows = []
    for step, lat, share in zip(steps, latency_ms, fail_share, strict=True):
        n = int(round(step.rps * (step.end_s - step.start_s)))
        times = step.start_s + (np.arange(n) + 0.5) / step.rps
        every = int(round(1 / share)) if share else 0
        for i, t in enumerate(times):
            failed = bool(every) and i % every == 0  # spread out, so warm-up cuts no bias
            rows.append(
                {
                    "scheduled_s": t,
                    "latency_ms": np.nan if failed else lat,
                    "status": 0 if failed else 200,
                    "error": "timeout" if failed else "",
                }
            )
    return pd.DataFrame(rows)


def test_bracket_and_refine_rates() -> None:
    assert bracket_rates(1, 2, 20) == [1, 2, 4, 8, 16, 20]
    assert refine_rates(8, 16, 4) == [10, 12, 14, 16]


def test_step_profile_plays_the_rates() -> None:
    text = step_profile_toml("cal", [1.5, 3, 6], 60)
    profile = parse_profile(tomllib.loads(text))
    assert profile.duration_s == 180
    assert np.allclose(profile.counts(60), [90, 180, 360])
    # What calibration hands the load driver: that profile, loaded (rates to 6 digits).
    played = step_profile("cal", [1.5, 3, 1 / 3], 60)
    assert played.name == "cal" and played.duration_s == 180
    assert played.rate_at(np.array([30.0, 90.0, 150.0])).tolist() == [1.5, 3.0, 0.333333]


def test_analysis_finds_highest_passing_step_before_first_failure() -> None:
    steps = [Step(i * 60.0, (i + 1) * 60.0, r) for i, r in enumerate([2, 4, 8, 16])]
    # 8 rps: p99 over the objective; 16 rps: errors. 4 rps is the last good step.
    records = _records(steps, [100, 150, 900, 200], [0, 0, 0, 0.2])
    table = analyse_steps(records, steps, slo_p99_ms=500, max_error_rate=0.01, warmup_share=0.25)
    assert table["passed"].tolist() == [True, True, False, False]
    # The warm-up quarter is left out: 45 s of 60 at 4 rps = 180 requests.
    assert table.loc[1, "sent"] == 180
    assert table.loc[3, "error_rate"] == pytest.approx(0.2, abs=0.01)
    assert table.loc[0, "p99_ms"] == 100
    assert sustained(table) == (4.0, 8.0)


def test_no_failure_and_failure_at_first_step() -> None:
    steps = [Step(0, 60, 1.0), Step(60, 120, 2.0)]
    ok = analyse_steps(_records(steps, [50, 60], [0, 0]), steps, slo_p99_ms=100, max_error_rate=0.0)
    assert sustained(ok) == (2.0, None)
    bad = analyse_steps(
        _records(steps, [500, 60], [0, 0]), steps, slo_p99_ms=100, max_error_rate=0.0
    )
    assert sustained(bad) == (None, 1.0)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"slo_p99_ms": 0}, "--slo-p99-ms > 0"),
        ({"slo_p99_ms": 100, "max_error_rate": 1.5}, "--max-error-rate must be in"),
        ({"slo_p99_ms": 100, "start_rps": 50, "max_rps": 10}, "0 < --start-rps < --max-rps"),
        ({"slo_p99_ms": 100, "factor": 1.0}, "--factor > 1"),
    ],
    ids=["slo", "error-rate", "start>max", "factor"],
)
def test_spec_validation(kwargs: dict[str, float], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        CalibrationSpec(endpoint="e", **kwargs)  # type: ignore[arg-type]


# -- what tells overload from a disturbance ---------------------------------------------------


def _shaped(step: Step, latency: Callable[[np.ndarray], np.ndarray], speed: float = 1.0):
    """Records of one step, on schedule, whose latency follows ``latency(fraction of step)``."""
    n = int(round(step.rps * (step.end_s - step.start_s)))
    t = step.start_s + (np.arange(n) + 0.5) / step.rps
    frac = (t - step.start_s) / (step.end_s - step.start_s)
    return pd.DataFrame(
        {
            "scheduled_s": t,
            "sent_epoch_s": 1_000.0 + t / speed,
            "latency_ms": latency(frac),
            "status": 200,
            "error": "",
        }
    )


def _row(latency: Callable[[np.ndarray], np.ndarray]) -> pd.Series:
    """The analysis of one 60-s step at 5 rps against a 1-s objective."""
    step = Step(0, 60, 5.0)
    table = analyse_steps(_shaped(step, latency), [step], slo_p99_ms=1000, max_error_rate=0.001)
    return table.iloc[0]


def test_analysis_sees_a_burst_from_a_late_generator() -> None:
    """A generator that stalls 30 s into step 2 sends what was due meanwhile at once."""
    speed = 60.0
    steps = [Step(0, 60, 2.0), Step(60, 120, 2.0), Step(120, 180, 2.0)]
    records = pd.concat([_shaped(s, lambda f: np.full(f.size, 100.0), speed) for s in steps])
    stalled = (records["scheduled_s"] >= 60) & (records["scheduled_s"] < 90)
    records.loc[stalled, "sent_epoch_s"] = 1_000.0 + 90 / speed
    table = analyse_steps(records, steps, slo_p99_ms=500, max_error_rate=0.0, speed=speed)
    # The first request due in the stall (60.25 s) left at 90 s.
    assert table["late_s"].tolist() == pytest.approx([0.0, 29.75, 0.0], abs=1e-6)
    # Were the burst to fail the step, that is the reason to run it again.
    burst = table.iloc[1].copy()
    burst["passed"] = False
    assert rerun_reason(burst, 500) == "the load generator fell 30 s behind and sent a burst"
    # Records without send times (hand-made, or from another driver) have no lateness.
    records = records.drop(columns="sent_epoch_s")
    plain = analyse_steps(records, steps, slo_p99_ms=500, max_error_rate=0.0)
    assert plain["late_s"].isna().all()
    assert plain["passed"].all()


def test_overload_is_taken_as_the_limit() -> None:
    """Most requests miss the objective and the queue grows through the step: no re-run."""
    row = _row(lambda f: 200 + 5_000 * f)
    assert not row["passed"]
    assert row["missed"] > 0.5
    assert row["tail_p50_ms"] > row["head_p50_ms"]
    assert rerun_reason(row, 1000) is None
    # A queue that grows by half the objective is overload before most requests miss it ...
    growing = _row(lambda f: 200 + 1_200 * f)
    assert not growing["passed"] and growing["missed"] < 0.5
    assert rerun_reason(growing, 1000) is None
    # ... and one saturated at the timeout all through the step is overload too.
    assert rerun_reason(_row(lambda f: np.full(f.size, 20_000.0)), 1000) is None


def test_a_draining_backlog_is_run_again() -> None:
    """The CI flake's shape: ~20 s of queue at the start, shrinking at a rate the endpoint
    sustains. Most requests miss the objective, but the step did not test its rate."""
    row = _row(lambda f: 19_000 - 7_000 * f)
    assert not row["passed"] and row["missed"] == 1.0
    reason = rerun_reason(row, 1000)
    assert reason is not None and reason.startswith("its queue shrank through the step")


def test_a_few_slow_requests_are_run_again() -> None:
    """A p99 failure with the median well within the objective: a hiccup, not saturation."""
    row = _row(lambda f: np.where((f > 0.5) & (f < 0.53), 3_000.0, 200.0))
    assert not row["passed"]
    assert (
        rerun_reason(row, 1000) == f"only {row['missed']:.1%} of its requests missed the objective"
    )
    assert rerun_reason(_row(lambda f: np.full(f.size, 200.0)), 1000) is None  # it passed


def test_sustained_skips_failures_that_were_run_again() -> None:
    table = pd.DataFrame(
        {
            "rps": [2.0, 4.0, 4.0, 8.0],
            "passed": [True, False, True, False],
            "retried": [False, True, False, False],
        }
    )
    assert sustained(table) == (4.0, 8.0)
    assert sustained(table.drop(columns="retried")) == (2.0, 4.0)


# -- waiting for an idle endpoint -------------------------------------------------------------


class _Clock:
    """A virtual clock that moves only when the code under test sleeps or probes."""

    def __init__(self, speed: float = 1.0) -> None:
        self.t = 0.0
        self.sleeps: list[float] = []
        self.clock = VirtualClock(
            speed=speed, real_epoch_s=0.0, virtual_epoch_s=0.0, real_time=lambda: self.t
        )

    def sleep(self, real_s: float) -> None:
        self.sleeps.append(real_s)
        self.t += real_s

    def probe(self, latencies_ms: list[float | Exception]) -> Callable[[], float]:
        answers = iter(latencies_ms)

        def probe() -> float:
            answer = next(answers)
            if isinstance(answer, Exception):
                raise answer
            self.t += answer / 1000 / self.clock.speed
            return answer

        return probe


def test_idle_wait_probes_until_the_queue_is_gone() -> None:
    fake = _Clock(speed=10.0)
    lines: list[str] = []
    idle = wait_until_idle(
        fake.probe([9_000, 6_000, 3_000, 400, 300, 5_000]),
        threshold_ms=600,
        max_wait_s=300,
        clock=fake.clock,
        log=lines.append,
        sleep=fake.sleep,
    )
    assert idle
    # A pause (5 virtual s = 0.5 real s at 10x) after each slow probe, none after a fast one:
    # the median of the last three (3000, 400, 300) is what counts.
    assert fake.sleeps == [0.5, 0.5, 0.5]
    assert lines[0].startswith("waiting for the endpoint to be idle: the median of 3 probes")
    assert lines[-1] == "idle after 34 s (probes 3000, 400, 300 ms)"


def test_idle_wait_is_bounded_and_says_so() -> None:
    fake = _Clock()
    lines: list[str] = []
    idle = wait_until_idle(
        fake.probe([AwsError("InvokeEndpoint e: ModelError: timed out")] * 100),
        threshold_ms=600,
        max_wait_s=30,
        clock=fake.clock,
        log=lines.append,
        sleep=fake.sleep,
    )
    assert not idle
    assert fake.t == pytest.approx(30)
    assert lines[-1] == (
        "still busy after 30 s (probes inf, inf, inf ms; last error: InvokeEndpoint e: "
        "ModelError: timed out): going on, the next step may read slow"
    )


def test_idle_threshold() -> None:
    assert idle_threshold_ms(100, 1_000) == 350  # a quarter of the objective above it
    assert idle_threshold_ms(400, 1_000) == 800  # twice the unloaded latency


def test_probe_sees_a_real_queue_drain(monkeypatch: pytest.MonkeyPatch) -> None:
    """Against the local AWS: a burst queues on one instance; probes say when it has gone."""
    from tuner.emulator import EmulatorConfig, LocalAws

    truth = Capacity.from_dict(
        {
            "instance_type": "ml.m5.large",
            "hourly_usd": 0.1,
            "boot_s": 60,
            "max_rps_per_instance": 5.0,
            "timeout_ms": 20_000,
            "latency_ms": [{"rps": 1, "p50": 100, "p99": 250}, {"rps": 5, "p50": 150, "p99": 400}],
        }
    )
    speed = 20.0
    with LocalAws(EmulatorConfig(speed=speed, endpoint="probed", capacity=truth)) as aws:
        for key, value in aws.env.items():
            monkeypatch.setenv(key, value)
        clock = VirtualClock.from_json(_get_json(f"{aws.url}/_tuner/clock"))
        probe = runtime_probe(AwsSession(endpoint_url=aws.url), "probed", "AllTraffic", speed)
        baseline = float(np.median([probe() for _ in range(6)][1:]))
        assert baseline < 1_000
        threshold = idle_threshold_ms(baseline, 1_500)
        ready = threading.Barrier(101)
        burst = [
            threading.Thread(target=_invoke, args=(aws.port, ready), daemon=True)
            for _ in range(100)
        ]
        for thread in burst:
            thread.start()
        ready.wait(timeout=10)  # every connection open: the 100 requests leave together
        deadline = time.monotonic() + 5
        while _get_json(f"{aws.url}/_tuner/status")["queued"] < 50:
            assert time.monotonic() < deadline, "the burst never queued"
            time.sleep(0.005)
        seen: list[float] = []

        def recording() -> float:
            seen.append(probe())
            return seen[-1]

        lines: list[str] = []
        started = clock.now()
        idle = wait_until_idle(
            recording, threshold_ms=threshold, max_wait_s=300, clock=clock, log=lines.append
        )
        waited = clock.now() - started
        for thread in burst:
            thread.join(timeout=10)
    # 50+ queued requests at 5 a second are 10+ virtual seconds of queue: the first probe
    # waited in it, and idle came only once it had drained.
    assert idle, lines
    assert seen[0] > 5_000, seen
    assert waited >= 8, lines
    assert np.median(seen[-3:]) <= threshold


def _get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=5) as resp:  # noqa: S310 - the local AWS
        return json.loads(resp.read())


def _invoke(port: int, ready: threading.Barrier) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.connect()
        ready.wait(timeout=10)
        conn.request("POST", "/endpoints/probed/invocations", body=b"{}")
        conn.getresponse().read()  # throttled or timed out is part of a burst too
    finally:
        conn.close()


# -- the whole calibration, scripted ----------------------------------------------------------

ENDPOINT = "my-endpoint"


class _ScriptedEndpoint:
    """A load driver and a probe for an endpoint that sustains ``capacity_rps``.

    Steps at or below capacity answer in 200 ms; above it the queue grows through the step.
    The first step of each run named in ``disturbed`` instead starts on a 19-s backlog that
    shrinks (what a stalled load generator or endpoint leaves).
    """

    def __init__(self, capacity_rps: float, disturbed: set[str]) -> None:
        self.capacity_rps = capacity_rps
        self.disturbed = disturbed
        self.runs: list[str] = []
        self.probes = 0

    def driver(self, profile: Profile, *, speed: float, out_dir: Path, **_: Any) -> Any:
        # The loaded step profile: one 60-s hold per rate, read at each step's middle.
        steps = round(profile.duration_s / 60)
        rates = profile.rate_at(np.arange(steps) * 60.0 + 30.0).tolist()
        run = Path(out_dir).name
        self.runs.append(run)
        frames = []
        for i, rps in enumerate(rates):
            if i == 0 and run in self.disturbed:
                shape: Callable[[np.ndarray], np.ndarray] = lambda f: 19_000 - 7_000 * f  # noqa: E731
            elif rps <= self.capacity_rps:
                shape = lambda f: np.full(f.size, 200.0)  # noqa: E731
            else:
                shape = lambda f: 200 + 15_000 * f  # noqa: E731
            frames.append(_shaped(Step(i * 60.0, (i + 1) * 60.0, rps), shape, speed))
        return pd.concat(frames, ignore_index=True)

    def probe(self) -> float:
        self.probes += 1
        return 200.0


@pytest.fixture
def endpoint(aws: None) -> None:
    create_endpoint(boto3.client("sagemaker", region_name=REGION), ENDPOINT)


def _calibrate(fake: _ScriptedEndpoint, tmp_path: Path, **spec: Any) -> tuple[Any, list[str]]:
    lines: list[str] = []
    result = calibrate(
        CalibrationSpec(endpoint=ENDPOINT, slo_p99_ms=1_500, **spec),
        AwsSession(region=REGION),
        workdir=tmp_path,
        driver=fake.driver,
        probe=fake.probe,
        log=lines.append,
    )
    return result, lines


def test_overload_is_not_run_again(endpoint: None, tmp_path: Path) -> None:
    fake = _ScriptedEndpoint(5.0, disturbed=set())
    result, lines = _calibrate(fake, tmp_path)
    assert fake.runs == ["bracket-0", "bracket-1", "bracket-2", "bracket-3", "refine"]
    assert result.capacity.max_rps_per_instance == 4.8
    assert not result.steps["retried"].any()
    # 1 + 5 unloaded probes, then 3 fast ones before the refine steps.
    assert fake.probes == 9
    assert "unloaded probe latency: median 200 ms of 5" in lines
    assert "idle after 0 s (probes 200, 200, 200 ms)" in lines


def test_a_disturbed_step_is_run_again_once_idle(endpoint: None, tmp_path: Path) -> None:
    """The CI flake: the first refine step started on a queue; it is run again, and the
    calibration finds what it would have without it."""
    fake = _ScriptedEndpoint(5.0, disturbed={"refine"})
    result, lines = _calibrate(fake, tmp_path)
    assert fake.runs[-2:] == ["refine", "refine-rerun1"]
    assert result.capacity.max_rps_per_instance == 4.8
    steps = result.steps
    assert steps.loc[steps["retried"], ["phase", "rps"]].values.tolist() == [["refine", 4.4]]
    # Only the failure is kept from the disturbed run; the re-run has every refine rate.
    assert (steps["phase"] == "refine").sum() == 1
    assert steps.loc[steps["phase"] == "refine-rerun1", "rps"].tolist() == pytest.approx(
        refine_rates(4.0, 8.0, 10)
    )
    rerun = [m for m in lines if "running it again" in m]
    assert rerun == [
        "refine: the 4.4 rps step failed, but its queue shrank through the step (median "
        "16587 ms at the start, 12650 ms at the end), a backlog its rate did not make: running "
        "it again (re-run 1 of at most 2)"
    ]
    assert lines[lines.index(rerun[0]) + 2] == "idle after 0 s (probes 200, 200, 200 ms)"
    # The latency curve holds passing steps only, one per rate.
    assert [p.rps for p in result.capacity.latency] == pytest.approx([1, 2, 4, 4.4, 4.8])


def test_reruns_are_bounded(endpoint: None, tmp_path: Path) -> None:
    """A step disturbed every time is taken as failing after ``reruns``: the bracket stands."""
    fake = _ScriptedEndpoint(5.0, disturbed={"refine", "refine-rerun1", "refine-rerun2"})
    result, lines = _calibrate(fake, tmp_path, reruns=2)
    assert fake.runs[-3:] == ["refine", "refine-rerun1", "refine-rerun2"]
    assert result.capacity.max_rps_per_instance == 4.0
    assert sum("running it again" in m for m in lines) == 2
    assert result.steps["retried"].sum() == 2


def test_a_disturbed_first_step_is_run_again(endpoint: None, tmp_path: Path) -> None:
    fake = _ScriptedEndpoint(5.0, disturbed={"bracket-0"})
    result, _ = _calibrate(fake, tmp_path)
    assert fake.runs[:3] == ["bracket-0", "bracket-0-rerun1", "bracket-1"]
    assert result.capacity.max_rps_per_instance == 4.8


def test_without_a_baseline_it_pauses_instead(
    endpoint: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(calibrate_module, "FALLBACK_PAUSE_S", 0.01)
    fake = _ScriptedEndpoint(5.0, disturbed={"refine"})

    def failing() -> float:
        raise AwsError("InvokeEndpoint my-endpoint: ModelError: bad payload")

    fake.probe = failing  # type: ignore[method-assign]
    result, lines = _calibrate(fake, tmp_path)
    assert result.capacity.max_rps_per_instance == 4.8
    assert any(
        m.startswith("the unloaded probe failed (InvokeEndpoint my-endpoint:") for m in lines
    )
    assert lines.count("pausing 0.01 s for the queue to drain") == 2  # before refine and rerun


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"reruns": -1}, "reruns >= 0"), ({"idle_wait_s": -1.0}, "idle_wait_s >= 0")],
    ids=["reruns", "idle-wait"],
)
def test_rerun_settings_validation(kwargs: dict[str, float], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        CalibrationSpec(endpoint="e", slo_p99_ms=100, **kwargs)  # type: ignore[arg-type]


def test_an_endpoint_slower_than_the_objective_unloaded_is_said_at_once(
    endpoint: None, tmp_path: Path
) -> None:
    fake = _ScriptedEndpoint(5.0, disturbed=set())
    fake.probe = lambda: 1_800.0  # type: ignore[method-assign]
    with pytest.raises(TrialError, match="slower than --slo-p99-ms even unloaded: median 1800 ms"):
        _calibrate(fake, tmp_path)
    assert fake.runs == []  # no step was driven
