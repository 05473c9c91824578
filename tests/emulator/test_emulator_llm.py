"""Inference components on the local AWS, through real boto3 clients: the component API, answers
streamed in the event-stream framing (botocore's own parser reads them), TTFT and ITL against the
token service model's hand-computed values, queueing beyond the sequences a copy runs, and the
component's CloudWatch metrics read back."""

from __future__ import annotations

import json
import math
import threading
import time
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.conftest import local_client
from tuner.emulator import EmulatorConfig, LocalAws
from tuner.emulator.tokens import LlmServerSpec

ENDPOINT = "llm-endpoint"
IC = "llm-ic"


_server_ttft_ms: list[float] = []


def _stream(rt: Any, words: int, tokens: int, component: str = IC) -> tuple[list[float], bytes]:
    """Real seconds from the call to each PayloadPart, and the bytes they carried."""
    body = {"inputs": " ".join(["word"] * words), "parameters": {"max_new_tokens": tokens}}
    t0 = time.perf_counter()
    resp = rt.invoke_endpoint_with_response_stream(
        EndpointName=ENDPOINT,
        InferenceComponentName=component,
        Body=json.dumps({**body, "stream": True}),
        ContentType="application/json",
    )
    assert resp["ContentType"] == "application/jsonlines"
    _server_ttft_ms.append(float(resp["ResponseMetadata"]["HTTPHeaders"]["x-tuner-server-ttft-ms"]))
    times, data = [], b""
    for event in resp["Body"]:
        times.append(time.perf_counter() - t0)
        data += event["PayloadPart"]["Bytes"]
    return times, data


def _start(speed: float, spec: LlmServerSpec, copies: int = 1) -> LocalAws:
    cfg = EmulatorConfig(
        port=0,
        speed=speed,
        endpoint=ENDPOINT,
        llm=spec,
        inference_component=IC,
        copies=copies,
        metric_lag_s=0.0,
    )
    return LocalAws(cfg).start()


def test_stream_follows_the_token_model() -> None:
    spec = LlmServerSpec(prefill_tokens_per_s=2000.0, decode_tokens_per_s=25.0)
    speed = 2.0
    aws = _start(speed, spec)
    try:
        rt = local_client(aws, "sagemaker-runtime")
        _stream(rt, words=1, tokens=1)  # warm: connection and botocore's first-call setup
        times, data = _stream(rt, words=400, tokens=24)
        lines = [json.loads(x) for x in data.splitlines()]
        assert lines == [{"token": {"text": " tok"}}] * 24  # exactly max_new_tokens
        v = [t * speed for t in times]
        # the server's own TTFT (arrival to first write) is the model's; the client's adds the
        # loopback and botocore, a few real ms
        assert _server_ttft_ms[-1] == pytest.approx(200.0, abs=5.0)
        assert 0 <= times[0] * 1000 - _server_ttft_ms[-1] / speed < 10
        # TTFT = 400 / 2000 = 0.200 s; ITL = 1 / 25 = 0.040 s alone on the copy (virtual)
        assert v[0] == pytest.approx(0.200, abs=0.03)
        itl = (v[-1] - v[0]) / 23
        assert itl == pytest.approx(0.040, rel=0.1)

        # four at once on one copy: ITL(4) = (1 + 0.15 x 3) / 25 = 0.058 s
        results: list[tuple[list[float], bytes]] = []
        threads = [
            threading.Thread(target=lambda: results.append(_stream(rt, 100, 30))) for _ in range(4)
        ]
        for th in threads:
            th.start()
        for th in threads:
            th.join(timeout=30)
        assert len(results) == 4
        for times4, data4 in results:
            assert len(data4.splitlines()) == 30
            itl4 = (times4[-1] - times4[0]) * speed / 29
            assert itl4 == pytest.approx(0.058, rel=0.12)

        # InvokeEndpoint on the component: the whole answer once the last token is out,
        # 0.200 + 9 x 0.040 = 0.560 s virtual
        t0 = time.perf_counter()
        resp = rt.invoke_endpoint(
            EndpointName=ENDPOINT,
            InferenceComponentName=IC,
            Body=json.dumps(
                {"inputs": " ".join(["w"] * 400), "parameters": {"max_new_tokens": 10}}
            ),
        )
        took_v = (time.perf_counter() - t0) * speed
        assert json.loads(resp["Body"].read()) == {"generated_text": " tok" * 10}
        assert took_v == pytest.approx(0.560, abs=0.05)
    finally:
        aws.stop()


def test_requests_beyond_the_sequences_of_a_copy_queue_then_time_out() -> None:
    spec = LlmServerSpec(
        prefill_tokens_per_s=1000.0,
        decode_tokens_per_s=20.0,
        decode_contention=0.0,
        prefill_contention=0.0,
        max_concurrent_sequences=2,
        timeout_ms=2500.0,
    )
    speed = 4.0
    aws = _start(speed, spec)
    try:
        rt = local_client(aws, "sagemaker-runtime")
        # each: TTFT 100/1000 = 0.1 s, then 19 x 0.05 = 0.95 s: done at 1.05 s virtual
        results: dict[int, Any] = {}

        def one(i: int) -> None:
            time.sleep(0.05 * i / speed)  # arrival order 0, 1, 2, 3
            try:
                results[i] = _stream(rt, 100, 20)
            except ClientError as e:
                results[i] = e

        threads = [threading.Thread(target=one, args=(i,)) for i in range(4)]
        for th in threads:
            th.start()
        time.sleep(0.5 / speed)
        status = json.loads(_get(aws, "/_tuner/status"))["inference_components"]
        assert status["components"][IC]["active_sequences"] == 2
        assert status["components"][IC]["queued"] == 2
        for th in threads:
            th.join(timeout=30)
        first = [results[i][0][0] * speed for i in (0, 1)]
        waited = [results[i][0][0] * speed for i in (2, 3)]
        for t in first:
            assert t == pytest.approx(0.1, abs=0.06)
        # request i arrives at 0.05 i; #2 starts when #0 ends (1.05), #3 when #1 ends (1.10);
        # each then prefills for 0.1 s: TTFT = 1.05 + 0.1 - 0.10 and 1.10 + 0.1 - 0.15
        for t in waited:
            assert t == pytest.approx(1.05, abs=0.1)

        # a copy busy for 10 s virtual: the third request waits 2.5 s and fails as SageMaker's
        # invocation timeout (424 ModelError) before streaming starts
        long_results: list[Any] = []

        def long_one() -> None:
            try:
                long_results.append(_stream(rt, 10, 200))
            except ClientError as e:
                long_results.append(e)

        busy = [threading.Thread(target=long_one) for _ in range(2)]
        for th in busy:
            th.start()
        time.sleep(0.2 / speed)
        with pytest.raises(ClientError) as err:
            _stream(rt, 10, 5)
        assert err.value.response["Error"]["Code"] == "ModelError"
        for th in busy:
            th.join(timeout=30)
        assert all(not isinstance(r, ClientError) for r in long_results)
    finally:
        aws.stop()


def _get(aws: LocalAws, path: str) -> bytes:
    import urllib.request

    with urllib.request.urlopen(aws.url + path, timeout=10) as r:
        return bytes(r.read())


def test_component_api_and_placement_on_instances() -> None:
    spec = LlmServerSpec(copy_load_s=20.0, instance_boot_s=30.0, max_instances=3)
    speed = 20.0
    aws = _start(speed, spec)
    try:
        sm = local_client(aws, "sagemaker")
        doc = sm.describe_inference_component(InferenceComponentName=IC)
        assert doc["InferenceComponentStatus"] == "InService"
        assert doc["RuntimeConfig"] == {"DesiredCopyCount": 1, "CurrentCopyCount": 1}
        assert doc["EndpointName"] == ENDPOINT

        t0 = aws.clock.now()
        arn = sm.create_inference_component(
            InferenceComponentName="second",
            EndpointName=ENDPOINT,
            VariantName="AllTraffic",
            Specification={
                "ModelName": "m",
                "ComputeResourceRequirements": {"MinMemoryRequiredInMb": 1024},
            },
            RuntimeConfig={"CopyCount": 1},
        )["InferenceComponentArn"]
        assert arn.endswith(":inference-component/second")
        doc = sm.describe_inference_component(InferenceComponentName="second")
        assert doc["InferenceComponentStatus"] == "Creating"
        assert doc["RuntimeConfig"] == {"DesiredCopyCount": 1, "CurrentCopyCount": 0}
        status = json.loads(_get(aws, "/_tuner/status"))["inference_components"]
        assert (status["instances_running"], status["instances_booting"]) == (1, 1)
        # its copy needs a new instance (one copy per instance): 30 s boot + 20 s load from the
        # controller's last 10-s step boundary (as a variant's by-hand update): 40..50 s after
        while (
            sm.describe_inference_component(InferenceComponentName="second")[
                "InferenceComponentStatus"
            ]
            != "InService"
        ):
            assert aws.clock.now() - t0 < 90, "the copy never came into service"
            time.sleep(0.05)
        assert 40 <= aws.clock.now() - t0 <= 52
        names = [
            c["InferenceComponentName"]
            for c in sm.list_inference_components()["InferenceComponents"]
        ]
        assert names == [IC, "second"]
        listed = sm.list_inference_components(NameContains="sec")["InferenceComponents"]
        assert [c["InferenceComponentName"] for c in listed] == ["second"]

        sm.update_inference_component_runtime_config(
            InferenceComponentName="second", DesiredRuntimeConfig={"CopyCount": 2}
        )
        doc = sm.describe_inference_component(InferenceComponentName="second")
        assert doc["RuntimeConfig"]["DesiredCopyCount"] == 2
        assert doc["InferenceComponentStatus"] == "Updating"
        status = json.loads(_get(aws, "/_tuner/status"))["inference_components"]
        assert status["instances_running"] + status["instances_booting"] == 3

        sm.delete_inference_component(InferenceComponentName="second")
        names = [
            c["InferenceComponentName"]
            for c in sm.list_inference_components()["InferenceComponents"]
        ]
        assert names == [IC]
        with pytest.raises(ClientError) as err:
            sm.describe_inference_component(InferenceComponentName="second")
        assert "Could not find inference component" in str(err.value)
        status = json.loads(_get(aws, "/_tuner/status"))["inference_components"]
        assert status["instances_running"] + status["instances_booting"] == 1  # released
    finally:
        aws.stop()


def test_component_metrics_in_cloudwatch() -> None:
    spec = LlmServerSpec(prefill_tokens_per_s=5000.0, decode_tokens_per_s=50.0)
    speed = 30.0
    aws = _start(speed, spec, copies=2)
    try:
        sm = local_client(aws, "sagemaker")
        rt = local_client(aws, "sagemaker-runtime")
        cw = local_client(aws, "cloudwatch")
        sm.create_inference_component(
            InferenceComponentName="idle", EndpointName=ENDPOINT, RuntimeConfig={"CopyCount": 0}
        )
        # 6 concurrent streams on 2 copies (3 each: peak 3 per copy), each > 4 s virtual
        threads = [threading.Thread(target=_stream, args=(rt, 50, 200)) for _ in range(6)]
        for th in threads:
            th.start()
        for th in threads:
            th.join(timeout=30)
        failures = 0
        for _ in range(3):
            with pytest.raises(ClientError) as err:
                _stream(rt, 10, 5, component="idle")
            assert err.value.response["Error"]["Code"] == "ValidationError"
            assert "no capacity" in err.value.response["Error"]["Message"]
            failures += 1
        # wait until the minute holding the last request is published
        v0 = aws.clock.v0
        last_minute = math.floor((aws.clock.now() - v0) / 60) * 60 + v0
        while aws.clock.now() < last_minute + 60 + 12:
            time.sleep(0.05)
        window = {
            "Namespace": "AWS/SageMaker",
            "StartTime": aws.clock.datetime_at(v0),
            "EndTime": aws.clock.datetime_at(last_minute + 60),
        }

        def stat(name: str, component: str, statistic: str, period: int) -> float:
            dims = [{"Name": "InferenceComponentName", "Value": component}]
            points = cw.get_metric_statistics(
                MetricName=name, Dimensions=dims, Statistics=[statistic], Period=period, **window
            )["Datapoints"]
            return (
                sum(p[statistic] for p in points)
                if statistic == "Sum"
                else max((p[statistic] for p in points), default=0.0)
            )

        assert stat("InvocationsPerCopy", IC, "Sum", 60) == pytest.approx(6 / 2)
        assert stat("Invocations", IC, "Sum", 60) == 6
        assert stat("ConcurrentRequestsPerCopy", IC, "Maximum", 10) == pytest.approx(3.0)
        assert stat("NoCapacityInvocationFailures", "idle", "Sum", 60) == failures
        assert stat("NoCapacityInvocationFailures", IC, "Sum", 60) == 0
    finally:
        aws.stop()


def test_spec_model_values_and_capacity_doc_by_hand() -> None:
    from tuner.emulator.tokens import parse_generation
    from tuner.errors import ValidationError

    spec = LlmServerSpec()  # 2500 prefill tokens/s (+30 % per other sequence), 30 decode, 8
    assert spec.ttft_s(512, 1) == pytest.approx(0.2048)
    assert spec.ttft_s(512, 8) == pytest.approx(0.2048 * 3.1)
    assert spec.itl_s(1) == pytest.approx(1 / 30)
    assert spec.itl_s(8) == pytest.approx(2.05 / 30)
    assert spec.copy_load_s + spec.instance_boot_s == 525.0  # the uncached cold start
    doc = spec.capacity_doc(prompt_tokens=512, output_tokens=256)
    assert doc["kind"] == "llm" and doc["max_concurrency_per_copy"] == 8
    assert [p["concurrency"] for p in doc["ttft_ms"]] == [1, 2, 4, 8]
    assert doc["ttft_ms"][-1] == {"concurrency": 8, "p50": 634.88, "p99": 634.88}
    assert doc["itl_ms"][0]["p50"] == pytest.approx(33.333)
    assert parse_generation(b'{"inputs": "a b  c\\nd", "parameters": {"max_new_tokens": 3}}') == (
        4,
        3,
    )
    assert parse_generation(b'{"inputs": ""}') == (0, 256)
    for bad in (b"{", b'{"inputs": 5}', b'{"inputs": "x", "parameters": {"max_new_tokens": 0}}'):
        with pytest.raises(ValidationError):
            parse_generation(bad)
    with pytest.raises(ValidationError, match="min_instances <= max_instances"):
        LlmServerSpec(min_instances=3, max_instances=2)
    assert LlmServerSpec.from_json(spec.to_json()) == spec
