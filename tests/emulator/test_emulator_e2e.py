"""End to end on the local AWS: `tuner apply`, then Locust drives a spike at speed 40.

Checks what a user would: DescribeEndpoint shows the scale-out, DescribeScalingActivities lists
it, CloudWatch's Invocations and InvocationsPerInstance match what Locust sent (within 1%), and
the emulated instance counts agree with `tuner simulate` on the same profile, policy, capacity.
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pytest

from tests.conftest import local_aws_env, local_client
from tuner.emulator import EmulatorConfig, LocalAws
from tuner.live.loadgen import LoadTestConfig, run_loadtest
from tuner.live.periods import start_epoch
from tuner.model.capacity import Capacity
from tuner.model.settings import SimulationSettings
from tuner.model.simulator import simulate
from tuner.policy.policy import ScalingPolicy
from tuner.profiles.profile_file import load_profile

SPEED = 40.0
ENDPOINT = "e2e-endpoint"
DIMS = [{"Name": "EndpointName", "Value": ENDPOINT}, {"Name": "VariantName", "Value": "AllTraffic"}]
CAPACITY = {
    "instance_type": "ml.m5.large",
    "hourly_usd": 0.115,
    "boot_s": 120,
    "max_rps_per_instance": 5.0,
    "timeout_ms": 20000,
    "latency_ms": [{"rps": 1, "p50": 80, "p99": 200}, {"rps": 5, "p50": 100, "p99": 250}],
}
POLICY = ScalingPolicy(
    min_capacity=1,
    max_capacity=4,
    target_value=120.0,
    scale_out_cooldown_s=60,
    scale_in_cooldown_s=300,
    name="e2e-target-tracking",
)
# 1 rps, then a spike to 5.5 rps (330 a minute: R = ceil(330 / 120) = 3, clear of a knife edge).
PROFILE = """\
name = "e2e-spike"
[[segment]]
hold = "2m"
rps = 1
[[segment]]
spike = "12m"
baseline_rps = 1
peak_rps = 5.5
rise = "30s"
hold = "8m"
fall = "30s"
"""


def _watch_endpoint(aws: LocalAws, stop: threading.Event, seen: list[tuple[str, int, int]]) -> None:
    sm = local_client(aws, "sagemaker")
    while not stop.wait(0.25):
        ep = sm.describe_endpoint(EndpointName=ENDPOINT)
        v = ep["ProductionVariants"][0]
        seen.append((ep["EndpointStatus"], v["CurrentInstanceCount"], v["DesiredInstanceCount"]))


def _metric(aws: LocalAws, name: str, start_v: float, end_v: float) -> float:
    cw = local_client(aws, "cloudwatch")
    resp = cw.get_metric_data(
        MetricDataQueries=[
            {
                "Id": "m",
                "MetricStat": {
                    "Metric": {
                        "Namespace": "AWS/SageMaker",
                        "MetricName": name,
                        "Dimensions": DIMS,
                    },
                    "Period": 60,
                    "Stat": "Sum",
                },
            }
        ],
        StartTime=datetime.fromtimestamp(start_v, UTC),
        EndTime=datetime.fromtimestamp(end_v, UTC),
    )
    return float(sum(resp["MetricDataResults"][0]["Values"]))


@pytest.fixture(scope="module")
def e2e(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """One run shared by the tests of this module (about 30 s)."""
    tmp_path = tmp_path_factory.mktemp("e2e")
    capacity = Capacity.from_dict(CAPACITY)
    with LocalAws(EmulatorConfig(speed=SPEED, endpoint=ENDPOINT, capacity=capacity)) as aws:
        env = local_aws_env(aws, tmp_path)
        policy_path = POLICY.save(tmp_path / "e2e.policy.json")
        applied = subprocess.run(
            [sys.executable, "-m", "tuner", "apply", str(policy_path), "--endpoint", ENDPOINT],
            env=env, capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert applied.returncode == 0, applied.stderr
        profile_path = tmp_path / "e2e-spike.toml"
        profile_path.write_text(PROFILE)
        seen: list[tuple[str, int, int]] = []
        stop = threading.Event()
        watcher = threading.Thread(target=_watch_endpoint, args=(aws, stop, seen))
        watcher.start()
        try:
            result = run_loadtest(
                LoadTestConfig(
                    profile=load_profile(profile_path),
                    endpoint=ENDPOINT,
                    out_dir=tmp_path / "load",
                    host=aws.url,
                    speed=SPEED,
                    env=env,
                ),
                progress=None,
            )
        finally:
            stop.set()
            watcher.join()
        # Let the last minute close and publish (10 virtual s after its end).
        time.sleep(aws.clock.real_duration(75))
        yield aws, result, seen, profile_path, capacity


def test_apply_then_locust_spike_scales_out_and_metrics_match(e2e: Any) -> None:
    aws, result, seen, _, _ = e2e
    requests = result.requests
    sent = requests[requests["status"] > 0]
    assert len(sent) > 2500
    # DescribeEndpoint saw the scale-out: Updating while the instances booted, then in service.
    assert ("Updating", 1, 3) in seen
    assert any(s == "InService" and cur >= 3 for s, cur, _ in seen)
    aas = local_client(aws, "application-autoscaling")
    acts = aas.describe_scaling_activities(ServiceNamespace="sagemaker")["ScalingActivities"]
    first = acts[-1]  # newest first
    assert first["Description"] == "Setting desired instance count to 3."
    assert "AlarmHigh" in first["Cause"] and POLICY.name in first["Cause"]
    assert first["StatusCode"] == "Successful"
    assert (first["EndTime"] - first["StartTime"]).total_seconds() == 120  # boot_s
    # CloudWatch against what Locust sent, over the whole run.
    v_first = aws.clock.to_virtual(float(sent["sent_epoch_s"].min()))
    v_last = aws.clock.to_virtual(float(sent["sent_epoch_s"].max()))
    start_v, end_v = np.floor(v_first / 60) * 60, np.ceil(v_last / 60) * 60 + 60
    invocations = _metric(aws, "Invocations", start_v, end_v)
    assert invocations == pytest.approx(len(sent), rel=0.01)
    # InvocationsPerInstance: each request sent counts 1/N, N in service at its (virtual) time.
    timeline = np.array(aws.timeline()["rows"], dtype=float)
    sent_v = aws.clock.to_virtual(sent["sent_epoch_s"].to_numpy(dtype=float))
    row = np.searchsorted(timeline[:, 0], sent_v, side="right") - 1
    expected_ipi = float(np.sum(1.0 / timeline[row, 1]))
    ipi = _metric(aws, "InvocationsPerInstance", start_v, end_v)
    assert ipi == pytest.approx(expected_ipi, rel=0.01)
    assert ipi < invocations  # instances were added


def test_emulated_run_agrees_with_simulate(e2e: Any) -> None:
    aws, result, _, profile_path, capacity = e2e
    profile = load_profile(profile_path)
    sim = simulate(
        profile, [POLICY], capacity, settings=SimulationSettings(metric_lag_s=60, boot_jitter_s=0.0)
    ).timeline(0)
    start_v = aws.clock.to_virtual(start_epoch(result.requests, SPEED))
    timeline = np.array(aws.timeline()["rows"], dtype=float)
    # The emulated instance count in the middle of each profile minute.
    mid = start_v + sim["t_s"].to_numpy() + 30
    row = np.searchsorted(timeline[:, 0], mid, side="right") - 1
    emulated = timeline[row, 1].astype(int)
    simulated = sim["instances_in_service"].to_numpy()
    agree = float(np.mean(emulated == simulated))
    assert agree >= 0.9, list(zip(simulated, emulated, strict=True))
    # The first scale-out decision (desired rises) within one period of the simulator's.
    sim_out = float(sim["t_s"][sim["desired_capacity"] > 1].iloc[0])
    desired = timeline[:, 2]
    emu_out = float(timeline[np.argmax(desired > 1), 0] - start_v)
    assert abs(emu_out - sim_out) <= 60, (emu_out, sim_out)
