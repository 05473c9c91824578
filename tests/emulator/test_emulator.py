"""The local AWS driven by real clients: boto3, raw HTTP, the AWS CLI; numbers by hand."""

from __future__ import annotations

import asyncio
import json
import math
import socket
import subprocess
import threading
import time
import urllib.request
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pytest
from botocore.exceptions import ClientError

from tests.conftest import local_client
from tuner.emulator import EmulatorConfig, EmulatorError, LocalAws, VirtualClock
from tuner.emulator.client import Sent, drive
from tuner.emulator.endpoint import START_BURST_S
from tuner.emulator.service import InstanceModel, ServiceTimes
from tuner.model.capacity import Capacity, LatencyPoint

ENDPOINT = "demo-endpoint"
RESOURCE = f"endpoint/{ENDPOINT}/variant/AllTraffic"
DIMENSION = "sagemaker:variant:DesiredInstanceCount"
DIMS = [{"Name": "EndpointName", "Value": ENDPOINT}, {"Name": "VariantName", "Value": "AllTraffic"}]


def fast_capacity(**changes: Any) -> Capacity:
    """An instance that serves 50 rps at 20 ms (p99 40 ms), boots in 60 s, times out at 60 s."""
    base: dict[str, Any] = dict(
        boot_s=60, max_rps_per_instance=50.0, timeout_ms=60000, latency=(LatencyPoint(1, 20, 40),)
    )
    base.update(changes)
    return Capacity(**base)


@pytest.fixture
def start_aws() -> Iterator[Any]:
    """Start a LocalAws with some config; stopped after the test whatever happens."""
    started: list[LocalAws] = []

    def start(**kwargs: Any) -> LocalAws:
        kwargs.setdefault("endpoint", ENDPOINT)
        aws = LocalAws(EmulatorConfig(**kwargs))
        started.append(aws)
        return aws.start()

    yield start
    for aws in started:
        aws.stop()


def send_at_virtual(aws: LocalAws, virtual_times: list[float]) -> list[Sent]:
    """Invoke once at each virtual epoch time (open loop), from this thread."""
    now_real = time.time()
    offsets = [max(0.0, aws.clock.to_real(v) - now_real) for v in virtual_times]
    return asyncio.run(drive(aws.url, ENDPOINT, offsets))


def wait_virtual(aws: LocalAws, virtual_s: float) -> None:
    time.sleep(max(0.0, aws.clock.to_real(virtual_s) - time.time()))


def describe(aws: LocalAws) -> tuple[str, int, int]:
    ep = local_client(aws, "sagemaker").describe_endpoint(EndpointName=ENDPOINT)
    v = ep["ProductionVariants"][0]
    return ep["EndpointStatus"], v["CurrentInstanceCount"], v["DesiredInstanceCount"]


def minute_sums(aws: LocalAws, metric: str, start_v: float, minutes: int) -> list[float]:
    """Per-minute Sum of an AWS/SageMaker metric from [start_v, start_v + 60 x minutes)."""
    cw = local_client(aws, "cloudwatch")
    resp = cw.get_metric_data(
        MetricDataQueries=[
            {
                "Id": "m",
                "MetricStat": {
                    "Metric": {
                        "Namespace": "AWS/SageMaker",
                        "MetricName": metric,
                        "Dimensions": DIMS,
                    },
                    "Period": 60,
                    "Stat": "Sum",
                },
            }
        ],
        StartTime=datetime.fromtimestamp(start_v, UTC),
        EndTime=datetime.fromtimestamp(start_v + 60 * minutes, UTC),
        ScanBy="TimestampAscending",
    )
    r = resp["MetricDataResults"][0]
    by_t = {t.timestamp(): v for t, v in zip(r["Timestamps"], r["Values"], strict=True)}
    return [by_t.get(start_v + 60 * m, 0.0) for m in range(minutes)]


# -- pure parts ---------------------------------------------------------------------------------


def test_virtual_clock_maps_real_to_virtual_seconds() -> None:
    real = [1000.5]
    clock = VirtualClock(speed=20.0, real_epoch_s=1000.5, real_time=lambda: real[0])
    assert clock.v0 == 960.0  # the real start rounded down to a minute
    assert clock.now() == 960.0
    real[0] = 1002.0
    assert clock.now() == pytest.approx(960.0 + 20 * 1.5)
    assert clock.to_real(990.0) == pytest.approx(1002.0)
    assert clock.real_duration(300) == pytest.approx(15.0)
    again = VirtualClock.from_json(clock.to_json())
    assert again.to_virtual(1010.0) == pytest.approx(clock.to_virtual(1010.0))


def test_instance_model_from_the_default_capacity() -> None:
    model = InstanceModel.from_capacity(Capacity.default())
    # At 20 rps per instance the curve says p50 60 ms, p99 150 ms: sigma = ln(2.5)/2.3263 = 0.3939,
    # mean = 60 x exp(sigma^2/2) = 64.84 ms; slots = ceil(20 x 0.06484 / 0.8) = ceil(1.62) = 2.
    assert model.slots == 2
    # Queue bound: what one instance at 20 rps can still serve within the 60-s timeout, keeping
    # the p99 service time (150 ms): floor(20 x 59.85) = 1197.
    assert model.queue_limit(1, cap=20_000) == 1197
    assert model.queue_limit(3, cap=2000) == 2000


def test_service_times_follow_the_curve_at_the_current_load() -> None:
    times = ServiceTimes(InstanceModel.from_capacity(Capacity.default()), seed=1)
    times.set_load(5.0)  # curve point: p50 40 ms, p99 80 ms
    draws = np.array([times.draw_ms() for _ in range(40_000)])
    assert np.median(draws) == pytest.approx(40.0, rel=0.03)
    assert np.quantile(draws, 0.99) == pytest.approx(80.0, rel=0.06)
    times.set_load(12.5)  # halfway: p50 50 ms, p99 115 ms
    draws = np.array([times.draw_ms() for _ in range(40_000)])
    assert np.median(draws) == pytest.approx(50.0, rel=0.03)
    assert np.quantile(draws, 0.99) == pytest.approx(115.0, rel=0.06)


# -- the runtime ----------------------------------------------------------------------------------


def test_invoke_endpoint_with_boto3_and_an_unknown_endpoint(start_aws: Any) -> None:
    aws = start_aws(speed=10.0, capacity=fast_capacity())
    rt = local_client(aws, "sagemaker-runtime")
    resp = rt.invoke_endpoint(
        EndpointName=ENDPOINT, Body=b'{"x": 1}', ContentType="application/json"
    )
    assert resp["ResponseMetadata"]["HTTPStatusCode"] == 200
    assert resp["InvokedProductionVariant"] == "AllTraffic"
    assert json.loads(resp["Body"].read())["endpoint"] == ENDPOINT
    with pytest.raises(ClientError) as err:
        rt.invoke_endpoint(EndpointName="no-such-endpoint", Body=b"{}")
    e = err.value.response
    assert e["ResponseMetadata"]["HTTPStatusCode"] == 400
    assert e["Error"]["Code"] == "ValidationError"
    assert e["Error"]["Message"] == "Endpoint no-such-endpoint of account 123456789012 not found."


def test_clock_is_discoverable_over_http(start_aws: Any) -> None:
    aws = start_aws(speed=25.0, capacity=fast_capacity())
    t0 = time.time()
    doc = json.loads(urllib.request.urlopen(f"{aws.url}/_tuner/clock", timeout=5).read())
    t1 = time.time()
    assert doc["speed"] == 25.0
    assert doc["virtual_epoch_s"] % 60 == 0
    expect = [doc["virtual_epoch_s"] + 25.0 * (t - doc["real_epoch_s"]) for t in (t0, t1)]
    assert expect[0] <= doc["virtual_now_s"] <= expect[1]
    assert doc["virtual_epoch_s"] == aws.clock.v0


def test_overload_queues_then_times_out_or_throttles_as_sagemaker(start_aws: Any) -> None:
    # One instance starting 2 requests a (virtual) second, 10-s timeout, p99 100 ms: the queue
    # holds what can still be served in time, floor(2 x 9.9) = 19; of a burst of 200 the first
    # starts at once, 19 queue and the rest is refused with 429. Starts banked while idle (up to
    # START_BURST_S x 2 = 10) drain the queue faster at first, so up to 10 more are admitted
    # while the burst arrives; after that queued requests start every 1/2 s and all are served.
    cap = fast_capacity(
        max_rps_per_instance=2.0, timeout_ms=10_000, latency=(LatencyPoint(1, 50, 100),)
    )
    aws = start_aws(speed=10.0, capacity=cap)
    assert aws.endpoint.model.slots == 1
    minute_v = math.ceil(aws.clock.now() / 60) * 60
    wait_virtual(aws, minute_v + 1)
    burst = asyncio.run(drive(aws.url, ENDPOINT, [0.0] * 200))
    statuses = Counter(s.status for s in burst)
    assert set(statuses) <= {200, 424, 429}, statuses
    # Banked starts (at most 10), and the tokens accruing while the burst arrives (2 per virtual
    # second: more when a loaded machine spreads the burst out).
    banked = START_BURST_S * cap.max_rps_per_instance
    # The burst has arrived once the last refusal is answered (429s are answered on arrival).
    arrived_s = max(s.sent_s + s.latency_s for s in burst if s.status == 429)
    spread_v = (arrived_s - min(s.sent_s for s in burst)) * aws.clock.speed
    accrued = math.ceil(spread_v * cap.max_rps_per_instance) + 2
    assert 20 <= statuses[200] + statuses[424] <= 20 + banked + accrued, (statuses, spread_v)
    assert statuses[424] <= 1, statuses
    # Nothing answered 200 past the 10-s timeout (client latency includes connecting: +1 real s).
    assert max(s.latency_s for s in burst if s.status == 200) < aws.clock.real_duration(10) + 1
    # CloudWatch counts every invocation, and each error class as the clients saw them.
    seen = statuses
    assert aws.clock.now() < minute_v + 55, "the test ran past its minute"
    wait_virtual(aws, minute_v + 60 + 12)
    assert minute_sums(aws, "Invocations", minute_v, 1) == [200]
    assert minute_sums(aws, "Invocation4XXErrors", minute_v, 1) == [seen[429]]
    assert minute_sums(aws, "Invocation5XXErrors", minute_v, 1) == [seen[424]]


def test_error_shapes_through_boto3(start_aws: Any) -> None:
    # Queue of floor(0.1 x 29.96) = 2, one start per 10 virtual s: a burst of 10 leaves it full.
    slow_start = fast_capacity(max_rps_per_instance=0.1, timeout_ms=30_000)
    aws = start_aws(speed=10.0, capacity=slow_start)
    rt = local_client(
        aws, "sagemaker-runtime", retries={"total_max_attempts": 1, "mode": "standard"}
    )
    burst = asyncio.run(drive(aws.url, ENDPOINT, [0.0] * 10, timeout_s=0.2))
    assert Counter(s.status for s in burst)[429] == 7
    with pytest.raises(ClientError) as err:
        rt.invoke_endpoint(EndpointName=ENDPOINT, Body=b"{}")
    assert err.value.response["ResponseMetadata"]["HTTPStatusCode"] == 429
    assert err.value.response["Error"]["Code"] == "ThrottlingException"
    aws.stop()
    # Service takes 5 s, the timeout is 1 s: every invocation times out as SageMaker's does.
    too_slow = fast_capacity(timeout_ms=1000, latency=(LatencyPoint(1, 5000, 6000),))
    aws = start_aws(speed=30.0, capacity=too_slow)
    rt = local_client(
        aws, "sagemaker-runtime", retries={"total_max_attempts": 1, "mode": "standard"}
    )
    t0, sent_v = time.monotonic(), aws.clock.now()
    with pytest.raises(ClientError) as err:
        rt.invoke_endpoint(EndpointName=ENDPOINT, Body=b"{}")
    waited_s = time.monotonic() - t0
    e = err.value.response
    assert e["ResponseMetadata"]["HTTPStatusCode"] == 424
    assert e["Error"]["Code"] == "ModelError"
    assert e["OriginalStatusCode"] == 0
    assert "timed out while waiting for a response from container" in e["Error"]["Message"]
    assert aws.clock.real_duration(1.0) <= waited_s < aws.clock.real_duration(1.0) + 1.0
    # Counted at arrival (Invocations) and at the timeout (5XX): within these two minutes.
    minute_v = math.floor(sent_v / 60) * 60
    wait_virtual(aws, minute_v + 120 + 12)
    assert sum(minute_sums(aws, "Invocation5XXErrors", minute_v, 2)) == 1
    assert sum(minute_sums(aws, "Invocations", minute_v, 2)) == 1


def test_metrics_match_what_was_sent_per_virtual_minute(start_aws: Any) -> None:
    aws = start_aws(speed=30.0, capacity=fast_capacity(), instances=2)
    first = math.ceil(aws.clock.now() / 60) * 60 + 60
    counts = [30, 90, 60]
    times: list[float] = []
    for m, n in enumerate(counts):  # spread inside [2 s, 58 s) of each minute, clear of boundaries
        times += list(first + 60 * m + 2 + 56 * np.arange(n) / n)
    sent = send_at_virtual(aws, times)
    assert Counter(s.status for s in sent) == {200: sum(counts)}
    wait_virtual(aws, first + 60 * len(counts) + 15)
    assert minute_sums(aws, "Invocations", first, 3) == counts
    # Two instances in service: each request adds 1/2.
    assert minute_sums(aws, "InvocationsPerInstance", first, 3) == [n / 2 for n in counts]
    assert minute_sums(aws, "Invocation5XXErrors", first, 3) == [0, 0, 0]
    cw = local_client(aws, "cloudwatch")
    lat = cw.get_metric_statistics(
        Namespace="AWS/SageMaker",
        MetricName="ModelLatency",
        Dimensions=DIMS,
        StartTime=datetime.fromtimestamp(first, UTC),
        EndTime=datetime.fromtimestamp(first + 180, UTC),
        Period=180,
        Statistics=["SampleCount", "Average"],
    )["Datapoints"][0]
    assert lat["SampleCount"] == sum(counts)
    # Microseconds; the curve's p50 is 20 ms (mean of the lognormal ~21 ms), little queueing.
    assert 15_000 < lat["Average"] < 40_000
    crpm = cw.get_metric_statistics(
        Namespace="AWS/SageMaker",
        MetricName="ConcurrentRequestsPerModel",
        Dimensions=DIMS,
        StartTime=datetime.fromtimestamp(first, UTC),
        EndTime=datetime.fromtimestamp(first + 60, UTC),
        Period=10,
        Statistics=["Maximum"],
    )["Datapoints"]
    assert len(crpm) == 6  # one datapoint per 10 virtual seconds


# -- the control plane ----------------------------------------------------------------------------


def test_aws_cli_describe_endpoint(start_aws: Any, subprocess_env: dict[str, str]) -> None:
    aws = start_aws(speed=10.0, capacity=fast_capacity(), instances=2)
    out = subprocess.run(
        [
            "aws",
            "sagemaker",
            "describe-endpoint",
            "--endpoint-name",
            ENDPOINT,
            "--endpoint-url",
            aws.url,
            "--region",
            "us-east-1",
            "--output",
            "json",
        ],
        env=subprocess_env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    doc = json.loads(out.stdout)
    assert doc["EndpointStatus"] == "InService"
    assert doc["ProductionVariants"][0]["CurrentInstanceCount"] == 2
    assert doc["ProductionVariants"][0]["DesiredInstanceCount"] == 2


def test_registration_moves_capacity_into_range_and_boots(start_aws: Any) -> None:
    aws = start_aws(speed=60.0, capacity=fast_capacity(boot_s=120))
    aas = local_client(aws, "application-autoscaling")
    with pytest.raises(ClientError) as err:
        aas.register_scalable_target(
            ServiceNamespace="sagemaker",
            ResourceId=RESOURCE,
            ScalableDimension=DIMENSION,
            MinCapacity=5,
            MaxCapacity=4,
        )
    assert err.value.response["Error"]["Code"] == "ValidationException"
    registered_v = aws.clock.now()
    aas.register_scalable_target(
        ServiceNamespace="sagemaker",
        ResourceId=RESOURCE,
        ScalableDimension=DIMENSION,
        MinCapacity=3,
        MaxCapacity=5,
    )
    assert describe(aws) == ("Updating", 1, 3)
    (act,) = aas.describe_scaling_activities(ServiceNamespace="sagemaker")["ScalingActivities"]
    assert act["StatusCode"] == "InProgress"
    assert act["Description"] == "Setting desired instance count to 3."
    assert act["ResourceId"] == RESOURCE
    while describe(aws)[0] == "Updating":
        assert aws.clock.now() - registered_v < 400, "the boot never completed"
        time.sleep(0.05)
    in_service_v = aws.clock.now()
    assert describe(aws) == ("InService", 3, 3)
    # The change starts at the 10-s boundary before the call; boot_s = 120 s from there.
    assert 100 <= in_service_v - registered_v <= 160
    (act,) = aas.describe_scaling_activities(ServiceNamespace="sagemaker")["ScalingActivities"]
    assert act["StatusCode"] == "Successful"
    assert (act["EndTime"] - act["StartTime"]).total_seconds() == 120
    assert aws.endpoint.in_service == 3


def test_update_endpoint_capacity_by_hand(start_aws: Any) -> None:
    aws = start_aws(speed=60.0, capacity=fast_capacity(boot_s=300))
    sm = local_client(aws, "sagemaker")
    weights = [{"VariantName": "AllTraffic", "DesiredWeight": 1.0, "DesiredInstanceCount": 2}]
    sm.update_endpoint_weights_and_capacities(
        EndpointName=ENDPOINT, DesiredWeightsAndCapacities=weights
    )
    assert describe(aws) == ("Updating", 1, 2)
    with pytest.raises(ClientError) as err:
        sm.update_endpoint_weights_and_capacities(
            EndpointName=ENDPOINT, DesiredWeightsAndCapacities=weights
        )
    assert "Cannot update in-progress endpoint" in err.value.response["Error"]["Message"]
    # A change by hand is SageMaker's, not Application Auto Scaling's: no scaling activity.
    aas = local_client(aws, "application-autoscaling")
    assert aas.describe_scaling_activities(ServiceNamespace="sagemaker")["ScalingActivities"] == []


def _policy_config(target: float) -> dict[str, Any]:
    return {
        "TargetValue": target,
        "PredefinedMetricSpecification": {
            "PredefinedMetricType": "SageMakerVariantInvocationsPerInstance"
        },
        "ScaleOutCooldown": 60,
        "ScaleInCooldown": 600,
    }


def spread(first_v: float, per_minute: list[int]) -> list[float]:
    """Send times: each minute's count spread over [2 s, 58 s) of it, clear of the boundaries."""
    times: list[float] = []
    for m, n in enumerate(per_minute):
        times += list(first_v + 60 * m + 2 + 56 * np.arange(n) / n)
    return times


def test_autoscaler_scales_out_as_the_model_says(start_aws: Any) -> None:
    # Metric lag 0, boot 60 s, target 120 per instance per minute, 300 a minute from minute m0:
    # datapoints m0, m0+1, m0+2 are 300 > 120, AlarmHigh fires at the end of minute m0+2:
    # R = ceil(1 x 300 / 120) = 3; in service 60 s later. Minute m0+3 still sees N = 1 (300), but
    # the cooldown's base is 1: R = 3, no change. Then 300 / 3 = 100 per instance.
    aws = start_aws(speed=60.0, capacity=fast_capacity(), metric_lag_s=0.0)
    aas = local_client(aws, "application-autoscaling")
    aas.register_scalable_target(
        ServiceNamespace="sagemaker",
        ResourceId=RESOURCE,
        ScalableDimension=DIMENSION,
        MinCapacity=1,
        MaxCapacity=4,
    )
    aas.put_scaling_policy(
        PolicyName="tt",
        ServiceNamespace="sagemaker",
        ResourceId=RESOURCE,
        ScalableDimension=DIMENSION,
        PolicyType="TargetTrackingScaling",
        TargetTrackingScalingPolicyConfiguration=_policy_config(120.0),
    )
    m0 = math.ceil(aws.clock.now() / 60) * 60 + 60
    minutes = 6
    sent = send_at_virtual(aws, spread(m0, [300] * minutes))
    assert Counter(s.status for s in sent) == {200: 300 * minutes}
    wait_virtual(aws, m0 + 60 * minutes + 15)
    (act,) = aas.describe_scaling_activities(ServiceNamespace="sagemaker")["ScalingActivities"]
    assert act["Description"] == "Setting desired instance count to 3."
    assert "AlarmHigh" in act["Cause"] and "tt" in act["Cause"]
    assert act["StatusCode"] == "Successful"
    assert act["StartTime"].timestamp() == m0 + 180
    assert act["EndTime"].timestamp() == m0 + 240
    assert describe(aws) == ("InService", 3, 3)
    per_instance = minute_sums(aws, "InvocationsPerInstance", m0, minutes)
    assert per_instance == pytest.approx([300.0] * 4 + [100.0] * 2)


def test_suspended_scale_out_holds_capacity(start_aws: Any) -> None:
    aws = start_aws(speed=60.0, capacity=fast_capacity(), metric_lag_s=0.0)
    aas = local_client(aws, "application-autoscaling")
    target = dict(ServiceNamespace="sagemaker", ResourceId=RESOURCE, ScalableDimension=DIMENSION)
    aas.register_scalable_target(
        **target, MinCapacity=1, MaxCapacity=4, SuspendedState={"DynamicScalingOutSuspended": True}
    )
    aas.put_scaling_policy(
        PolicyName="tt",
        PolicyType="TargetTrackingScaling",
        TargetTrackingScalingPolicyConfiguration=_policy_config(120.0),
        **target,
    )
    m0 = math.ceil(aws.clock.now() / 60) * 60 + 60
    send_at_virtual(aws, spread(m0, [300] * 4))
    wait_virtual(aws, m0 + 240 + 5)
    # AlarmHigh has been in ALARM since m0 + 180, but scale-out is suspended.
    assert describe(aws) == ("InService", 1, 1)
    assert aas.describe_scaling_activities(ServiceNamespace="sagemaker")["ScalingActivities"] == []
    aas.register_scalable_target(**target, SuspendedState={"DynamicScalingOutSuspended": False})
    # Resumed: the alarm, still in ALARM on the next datapoint, scales out at m0 + 300.
    send_at_virtual(aws, spread(m0 + 240, [300]))
    wait_virtual(aws, m0 + 300 + 5)
    assert describe(aws) == ("Updating", 1, 3)
    (act,) = aas.describe_scaling_activities(ServiceNamespace="sagemaker")["ScalingActivities"]
    assert act["StartTime"].timestamp() == m0 + 300


def test_concurrency_policy_scales_on_10s_datapoints(start_aws: Any) -> None:
    # Service takes ~1 s (p50 1000 ms, p99 1500 ms), 4 rps: about 4 requests in flight on the one
    # instance (Little's law), twice the target of 2. AlarmHigh on the high-resolution metric
    # needs 3 of 3 10-s datapoints: with lag 0 the scale-out comes ~30 s after the load starts.
    cap = fast_capacity(max_rps_per_instance=5.0, latency=(LatencyPoint(1, 1000, 1500),))
    aws = start_aws(speed=20.0, capacity=cap, metric_lag_s=0.0)
    aas = local_client(aws, "application-autoscaling")
    target = dict(ServiceNamespace="sagemaker", ResourceId=RESOURCE, ScalableDimension=DIMENSION)
    aas.register_scalable_target(**target, MinCapacity=1, MaxCapacity=4)
    config = {
        "TargetValue": 2.0,
        "PredefinedMetricSpecification": {
            "PredefinedMetricType": "SageMakerVariantConcurrentRequestsPerModelHighResolution"
        },
        "ScaleOutCooldown": 120,
        "ScaleInCooldown": 600,
    }
    aas.put_scaling_policy(
        PolicyName="crpm",
        PolicyType="TargetTrackingScaling",
        TargetTrackingScalingPolicyConfiguration=config,
        **target,
    )
    start_v = math.ceil(aws.clock.now() / 10) * 10 + 10
    send_at_virtual(aws, list(start_v + 0.125 + np.arange(4 * 60) / 4.0))
    wait_virtual(aws, start_v + 65)
    acts = aas.describe_scaling_activities(ServiceNamespace="sagemaker")["ScalingActivities"]
    first = acts[-1]
    assert "AlarmHigh" in first["Cause"] and "crpm" in first["Cause"]
    assert first["Description"] in {f"Setting desired instance count to {n}." for n in (2, 3, 4)}
    assert 30 <= first["StartTime"].timestamp() - start_v <= 40
    crpm = local_client(aws, "cloudwatch").get_metric_statistics(
        Namespace="AWS/SageMaker",
        MetricName="ConcurrentRequestsPerModel",
        Dimensions=DIMS,
        StartTime=datetime.fromtimestamp(start_v + 10, UTC),
        EndTime=datetime.fromtimestamp(start_v + 30, UTC),
        Period=10,
        Statistics=["Maximum"],
    )["Datapoints"]
    assert len(crpm) == 2
    assert all(3 <= d["Maximum"] <= 9 for d in crpm), crpm


def test_stop_frees_the_port_and_joins_its_threads() -> None:
    before = {t.name for t in threading.enumerate()}
    aws = LocalAws(EmulatorConfig(endpoint=ENDPOINT, speed=10.0, capacity=fast_capacity()))
    with aws:
        port = aws.port
        local_client(aws, "sagemaker-runtime").invoke_endpoint(EndpointName=ENDPOINT, Body=b"{}")
        with pytest.raises(EmulatorError, match="another local AWS is running"):
            LocalAws(EmulatorConfig(endpoint="other")).start()
    left = {t.name for t in threading.enumerate()} - before
    assert not [n for n in left if n.startswith("tuner-emulator")], left
    with socket.socket() as s:
        s.bind(("127.0.0.1", port))  # free again
    # A second emulator may start once the first has stopped.
    with LocalAws(EmulatorConfig(endpoint=ENDPOINT, capacity=fast_capacity())) as again:
        assert describe(again) == ("InService", 1, 1)


def test_idle_endpoint_scales_in_to_min_capacity(start_aws: Any) -> None:
    # No traffic: zeros are published, as SageMaker does, so after 15 datapoints below
    # 0.9 x target AlarmLow fires: R = ceil(3 x 0 / 120) = 0, clamped to MinCapacity 1.
    aws = start_aws(speed=120.0, capacity=fast_capacity(), instances=3, metric_lag_s=0.0)
    aas = local_client(aws, "application-autoscaling")
    target = dict(ServiceNamespace="sagemaker", ResourceId=RESOURCE, ScalableDimension=DIMENSION)
    aas.register_scalable_target(**target, MinCapacity=1, MaxCapacity=4)
    put_v = aws.clock.now()
    aas.put_scaling_policy(
        PolicyName="tt",
        PolicyType="TargetTrackingScaling",
        TargetTrackingScalingPolicyConfiguration=_policy_config(120.0),
        **target,
    )
    assert describe(aws) == ("InService", 3, 3)
    wait_virtual(aws, put_v + 17 * 60)
    assert describe(aws) == ("InService", 1, 1)
    (act,) = aas.describe_scaling_activities(ServiceNamespace="sagemaker")["ScalingActivities"]
    assert act["Description"] == "Setting desired instance count to 1."
    assert "AlarmLow" in act["Cause"]
    # The new alarm's first datapoint is the minute in which the policy was put: the 15th
    # datapoint closes 14 minutes after that minute's end. Instances leave at once.
    assert act["StartTime"].timestamp() == math.ceil(put_v / 60) * 60 + 14 * 60
    assert act["EndTime"] == act["StartTime"]
    assert aws.endpoint.in_service == 1


def test_instance_type_moto_does_not_know_still_starts(start_aws: Any) -> None:
    """moto's list of instance types is old (no ml.g5); the emulator labels the config anyway."""
    aws = start_aws(capacity=fast_capacity(instance_type="ml.g5.2xlarge"))
    sm = local_client(aws, "sagemaker")
    config = sm.describe_endpoint(EndpointName=ENDPOINT)["EndpointConfigName"]
    variant = sm.describe_endpoint_config(EndpointConfigName=config)["ProductionVariants"][0]
    assert variant["InstanceType"] == "ml.m5.xlarge"
    assert describe(aws)[0] == "InService"
