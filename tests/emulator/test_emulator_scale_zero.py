"""Scale to zero on the local AWS, through real boto3 clients: an inference component at zero
copies refuses requests (counted in NoCapacityInvocationFailures), the step policy AWS documents
for scale-out from zero (an alarm on that metric) brings a copy up on a new instance, and target
tracking on ConcurrentRequestsPerCopyHighResolution takes it back to zero once idle; the
instance is released with it. Virtual times are checked against a hand-computed timeline."""

from __future__ import annotations

import json
import math
import time
import urllib.request
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.conftest import local_client
from tuner.emulator import EmulatorConfig, LocalAws
from tuner.emulator.tokens import LlmServerSpec

SPEED = 80.0
ENDPOINT = "zero-endpoint"
IC = "zero-ic"
RESOURCE = f"inference-component/{IC}"
DIMENSION = "sagemaker:inference-component:DesiredCopyCount"
SPEC = LlmServerSpec(
    prefill_tokens_per_s=5000.0,
    decode_tokens_per_s=100.0,
    copy_load_s=30.0,
    instance_boot_s=30.0,
    min_instances=0,
    max_instances=2,
)


def _status(aws: LocalAws) -> dict[str, Any]:
    with urllib.request.urlopen(aws.url + "/_tuner/status", timeout=10) as r:
        doc: dict[str, Any] = json.loads(r.read())["inference_components"]
    return doc


def _invoke(rt: Any) -> bytes:
    resp = rt.invoke_endpoint_with_response_stream(
        EndpointName=ENDPOINT,
        InferenceComponentName=IC,
        Body=json.dumps({"inputs": "a b c d", "parameters": {"max_new_tokens": 10}}),
        ContentType="application/json",
    )
    return b"".join(e["PayloadPart"]["Bytes"] for e in resp["Body"])


def _wait(aws: LocalAws, until: Any, limit_v: float, what: str) -> float:
    start = aws.clock.now()
    while not until():
        assert aws.clock.now() - start < limit_v, f"{what} did not happen in {limit_v} s"
        time.sleep(0.02)
    return aws.clock.now()


def test_scale_out_from_zero_by_step_alarm_and_back_to_zero() -> None:
    cfg = EmulatorConfig(
        port=0, speed=SPEED, endpoint=ENDPOINT, llm=SPEC, inference_component=IC, copies=0
    )
    aws = LocalAws(cfg).start()
    try:
        aas, cw = local_client(aws, "application-autoscaling"), local_client(aws, "cloudwatch")
        rt = local_client(aws, "sagemaker-runtime")
        sm = local_client(aws, "sagemaker")
        aas.register_scalable_target(
            ServiceNamespace="sagemaker",
            ResourceId=RESOURCE,
            ScalableDimension=DIMENSION,
            MinCapacity=0,
            MaxCapacity=2,
        )
        with pytest.raises(ClientError) as err:  # a variant's metric cannot scale copies
            aas.put_scaling_policy(
                PolicyName="wrong-metric",
                ServiceNamespace="sagemaker",
                ResourceId=RESOURCE,
                ScalableDimension=DIMENSION,
                PolicyType="TargetTrackingScaling",
                TargetTrackingScalingPolicyConfiguration={
                    "TargetValue": 100.0,
                    "PredefinedMetricSpecification": {
                        "PredefinedMetricType": "SageMakerVariantInvocationsPerInstance"
                    },
                },
            )
        assert err.value.response["Error"]["Code"] == "ValidationException"
        arn = aas.put_scaling_policy(
            PolicyName="scale-out-from-zero",
            ServiceNamespace="sagemaker",
            ResourceId=RESOURCE,
            ScalableDimension=DIMENSION,
            PolicyType="StepScaling",
            StepScalingPolicyConfiguration={
                "AdjustmentType": "ChangeInCapacity",
                "MetricAggregationType": "Maximum",
                "Cooldown": 300,
                "StepAdjustments": [{"MetricIntervalLowerBound": 0, "ScalingAdjustment": 1}],
            },
        )["PolicyARN"]
        assert arn.endswith(f"resource/sagemaker/{RESOURCE}:policyName/scale-out-from-zero")
        cw.put_metric_alarm(
            AlarmName="ic-no-capacity",
            Namespace="AWS/SageMaker",
            MetricName="NoCapacityInvocationFailures",
            Dimensions=[{"Name": "InferenceComponentName", "Value": IC}],
            Statistic="Sum",
            Period=60,
            EvaluationPeriods=1,
            DatapointsToAlarm=1,
            Threshold=1,
            ComparisonOperator="GreaterThanOrEqualToThreshold",
            AlarmActions=[arn],
        )
        targets = aas.describe_scalable_targets(ServiceNamespace="sagemaker")["ScalableTargets"]
        ours = [t for t in targets if t["ResourceId"] == RESOURCE]
        assert ours and ours[0]["ScalableDimension"] == DIMENSION

        # a request every 5 virtual s until one is answered; the refused ones are counted
        refused = 0
        first_v = aws.clock.now()
        while True:
            try:
                data = _invoke(rt)
                break
            except ClientError as e:
                assert e.response["Error"]["Code"] == "ValidationError"
                assert "no capacity" in e.response["Error"]["Message"]
                refused += 1
            assert aws.clock.now() - first_v < 400, "never scaled out from zero"
            time.sleep(5 / SPEED)
        up_v = aws.clock.now()
        assert data.count(b"\n") == 10
        # hand timeline: the first failures fall in minute M; its datapoint closes at M + 60 and
        # is visible after the 60-s metric lag at M + 120, where the alarm acts (+1); the copy
        # needs an instance: 30 s boot + 30 s load, in service at M + 180.
        v0 = aws.clock.v0
        m = v0 + math.floor((first_v - v0) / 60) * 60
        acts = aas.describe_scaling_activities(ServiceNamespace="sagemaker", ResourceId=RESOURCE)
        (out,) = acts["ScalingActivities"]
        assert out["StartTime"].timestamp() == m + 120
        assert out["EndTime"].timestamp() == m + 180
        assert "ic-no-capacity" in out["Cause"] and "scale-out-from-zero" in out["Cause"]
        # the client tries every 5 s (a call and the sleep take longer on a loaded machine)
        assert m + 180 <= up_v <= m + 180 + 30
        assert (m + 180 - first_v) / 10 <= refused <= (m + 180 - first_v) / 5 + 1
        doc = sm.describe_inference_component(InferenceComponentName=IC)
        assert doc["RuntimeConfig"] == {"DesiredCopyCount": 1, "CurrentCopyCount": 1}
        assert _status(aws)["instances_running"] == 1

        # then target tracking joins the step policy, to take the copies back to zero
        put_from_v = aws.clock.now()  # the put takes virtual seconds at this speed
        aas.put_scaling_policy(
            PolicyName="copies-track-concurrency",
            ServiceNamespace="sagemaker",
            ResourceId=RESOURCE,
            ScalableDimension=DIMENSION,
            PolicyType="TargetTrackingScaling",
            TargetTrackingScalingPolicyConfiguration={
                "TargetValue": 4.0,
                "PredefinedMetricSpecification": {
                    "PredefinedMetricType": "SageMakerInferenceComponent"
                    "ConcurrentRequestsPerCopyHighResolution"
                },
                "ScaleInCooldown": 60,
                "ScaleOutCooldown": 60,
            },
        )
        put_to_v = aws.clock.now()
        # AlarmLow (90 datapoints of 10 s below 0.9 x 4, seen after the 60-s lag) takes the copy
        # away, to MinCapacity 0, and the instance with it. The low run counts from the policy's
        # first datapoints: the first boundary B after the put sees the datapoint closing at
        # B - 60, the 90th is seen at B + 890, and B is within 10 s after the put (an alarm
        # re-invokes once a minute).
        # The put took effect at some time in [put_from_v, put_to_v]; at this speed on a loaded
        # machine the scaler may process steps up to a minute of virtual time late, so a put can
        # reach a step that closed before it (hence the lower bound's slack).
        down_v = _wait(
            aws, lambda: _status(aws)["components"][IC]["copies_in_service"] == 0, 1300, "scale-in"
        )
        assert put_from_v + 820 <= down_v <= put_to_v + 900 + 60 + 20
        status = _status(aws)
        assert status["instances_running"] + status["instances_booting"] == 0
        with pytest.raises(ClientError):
            _invoke(rt)
        refused += 1

        # the copies per 10-s step: 0 until M + 180, then 1 until the scale-in; the instance
        # booted at M + 120 is running from M + 150 and gone with the copy
        doc = json.loads(urllib.request.urlopen(aws.url + "/_tuner/components", timeout=10).read())
        rows = doc["timelines"][IC]
        served = [t for t, n, _, _ in rows if n == 1]
        assert served[0] == m + 180 and served[-1] < down_v
        by_t = {t: (n, d, i) for t, n, d, i in rows}
        # (the instance's start is recorded at the step the scaler processes it in; at this
        # speed on a loaded machine that can be a step or two after M + 150, never after the
        # copy it carries serves at M + 180)
        assert by_t[m + 120] == (0, 1, 0) and by_t[m + 180] == (1, 1, 1)
        assert rows[-1][1:] == [0, 0, 0]
        activities = aas.describe_scaling_activities(
            ServiceNamespace="sagemaker", ResourceId=RESOURCE
        )
        found = activities["ScalingActivities"]
        assert len(found) == 2, found
        scale_in_v = found[0]["StartTime"].timestamp()
        assert (scale_in_v - v0) % 10 == 0 and scale_in_v <= down_v
        assert "AlarmLow" in found[0]["Cause"] and "copies-track-concurrency" in found[0]["Cause"]

        # every refused request is in NoCapacityInvocationFailures (60-s sums, read back)
        last = v0 + math.floor((aws.clock.now() - v0) / 60) * 60
        _wait(aws, lambda: aws.clock.now() > last + 60 + 12, 200, "the last minute's datums")
        points = cw.get_metric_statistics(
            Namespace="AWS/SageMaker",
            MetricName="NoCapacityInvocationFailures",
            Dimensions=[{"Name": "InferenceComponentName", "Value": IC}],
            StartTime=aws.clock.datetime_at(v0),
            EndTime=aws.clock.datetime_at(last + 60),
            Period=60,
            Statistics=["Sum"],
        )["Datapoints"]
        assert sum(p["Sum"] for p in points) == refused
    finally:
        aws.stop()
