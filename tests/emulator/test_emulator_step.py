"""The local AWS runs a step scale-out companion: `tuner apply` puts the policy and its alarm,
Locust drives a flash spike at speed 40, and the emulated instance counts agree with
`tuner simulate` in at least 90% of the periods; the activity names the step policy's alarm."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from typing import Any

import numpy as np
import pytest

from tests.conftest import local_aws_env, local_client
from tests.emulator.helpers import load_from_next_minute
from tuner.emulator import EmulatorConfig, LocalAws
from tuner.live.periods import start_epoch
from tuner.model.capacity import Capacity
from tuner.model.settings import SimulationSettings
from tuner.model.simulator import simulate
from tuner.policy.alarm import StepAlarm
from tuner.policy.policy import ScalingPolicy
from tuner.policy.step import StepAdjustment, StepScalingPolicy
from tuner.profiles.profile_file import load_profile

SPEED = 40.0
ENDPOINT = "step-endpoint"
CAPACITY = {
    "instance_type": "ml.m5.large",
    "hourly_usd": 0.115,
    "boot_s": 120,
    "max_rps_per_instance": 5.0,
    "timeout_ms": 20000,
    "latency_ms": [{"rps": 1, "p50": 80, "p99": 200}, {"rps": 5, "p50": 100, "p99": 250}],
}
COMPANION = StepScalingPolicy(
    name="fast-scale-out",
    # 1 of 1 minute at >= 360 invocations per instance (6 rps on one instance): +3 at once
    alarm=StepAlarm(threshold=360.0, evaluation_periods=1, datapoints_to_alarm=1),
    steps=(StepAdjustment(3, 0.0, None),),
    cooldown_s=300,
)
POLICY = ScalingPolicy(
    min_capacity=1,
    max_capacity=6,
    target_value=120.0,
    scale_out_cooldown_s=60,
    scale_in_cooldown_s=300,
    name="step-e2e-target-tracking",
    step_policies=(COMPANION,),
)
# 1 rps, then a flash spike to 8 rps for 4 minutes (480 a minute on one instance: 480 >= 360)
PROFILE = """\
name = "step-flash"
[[segment]]
hold = "2m"
rps = 1
[[segment]]
spike = "12m"
baseline_rps = 1
peak_rps = 8
rise = "20s"
hold = "4m"
fall = "20s"
"""


def _watch_alarm(aws: LocalAws, stop: threading.Event, states: list[str]) -> None:
    cw = local_client(aws, "cloudwatch")
    while not stop.wait(0.25):
        (alarm,) = cw.describe_alarms(AlarmNames=["fast-scale-out-alarm"])["MetricAlarms"] or [
            {"StateValue": "missing"}
        ]
        if not states or states[-1] != alarm["StateValue"]:
            states.append(alarm["StateValue"])


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Any:
    tmp_path = tmp_path_factory.mktemp("step")
    capacity = Capacity.from_dict(CAPACITY)
    with LocalAws(EmulatorConfig(speed=SPEED, endpoint=ENDPOINT, capacity=capacity)) as aws:
        env = local_aws_env(aws, tmp_path)
        policy_path = POLICY.save(tmp_path / "step.policy.json")
        applied = subprocess.run(
            [sys.executable, "-m", "tuner", "apply", str(policy_path), "--endpoint", ENDPOINT],
            env=env, capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert applied.returncode == 0, applied.stderr
        profile_path = tmp_path / "step-flash.toml"
        profile_path.write_text(PROFILE)
        # Profile time 0 on one of the emulator's minute boundaries: a 1-of-1 alarm is judged
        # on the same minutes on both sides. 10 real seconds for Locust to start.
        states: list[str] = []
        stop = threading.Event()
        watcher = threading.Thread(target=_watch_alarm, args=(aws, stop, states))
        watcher.start()
        _, result = load_from_next_minute(
            aws, load_profile(profile_path), env, tmp_path / "load", 10
        )
        time.sleep(aws.clock.real_duration(75))
        stop.set()
        watcher.join()
        yield aws, result, profile_path, capacity, states


def test_the_local_aws_runs_the_step_companion_as_the_simulator_does(run: Any) -> None:
    aws, result, profile_path, capacity, states = run
    sim = simulate(
        load_profile(profile_path),
        [POLICY],
        capacity,
        settings=SimulationSettings(metric_lag_s=60, boot_jitter_s=0.0),
    ).timeline(0)
    start_v = aws.clock.to_virtual(start_epoch(result.requests, SPEED))
    timeline = np.array(aws.timeline()["rows"], dtype=float)
    mid = start_v + sim["t_s"].to_numpy() + 30
    row = np.searchsorted(timeline[:, 0], mid, side="right") - 1
    emulated = timeline[row, 1].astype(int)
    simulated = sim["instances_in_service"].to_numpy()
    agree = float(np.mean(emulated == simulated))
    pairs = [(int(a), int(b)) for a, b in zip(simulated, emulated, strict=True)]
    assert agree >= 0.9, f"(simulated, emulated) per minute: {pairs}"
    # the companion acts first (1 -> 4 for the period at 240 s: the spike's first full minute,
    # 120-180 s, is visible at 240 s), target tracking then (3 of 3) takes it to Max 6
    desired = sim.set_index("t_s")["desired_capacity"]
    assert (desired[180], desired[240], desired[360]) == (1, 4, 6)
    activities = local_client(aws, "application-autoscaling").describe_scaling_activities(
        ServiceNamespace="sagemaker"
    )["ScalingActivities"]
    step_acts = [a for a in activities if "fast-scale-out" in a["Cause"]]
    assert step_acts, [a["Cause"] for a in activities]
    oldest = step_acts[-1]
    assert oldest["Description"] == "Setting desired instance count to 4."
    assert (
        "monitor alarm fast-scale-out-alarm in state ALARM triggered policy fast-scale-out"
        in (oldest["Cause"])
    )
    assert oldest["StatusCode"] == "Successful"
    # CloudWatch showed the alarm go to ALARM with the spike and back to OK after it
    assert states[-2:] == ["ALARM", "OK"], states
