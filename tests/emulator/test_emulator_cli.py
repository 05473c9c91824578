"""`tuner emulate` as a user runs it: a real subprocess, its printed lines, signals, bad input."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest


def _start(args: list[str], env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "tuner", "emulate", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


@contextmanager
def _running(args: list[str], env: dict[str, str]) -> Iterator[subprocess.Popen[str]]:
    """`tuner emulate` with ``args``, killed on the way out if it is still running."""
    proc = _start(args, env)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


def _stop(proc: subprocess.Popen[str], sig: signal.Signals) -> str:
    """Stop it with ``sig`` after a progress line or two: it exits 0; its stderr."""
    time.sleep(0.5)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err
    return err


def _banner(proc: subprocess.Popen[str], timeout_s: float = 60) -> dict[str, str]:
    """KEY=VALUE lines printed before the '# stop with' line."""
    assert proc.stdout is not None
    out: dict[str, str] = {}
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        if line.startswith("# stop with"):
            return out
        if "=" in line and not line.startswith("#"):
            key, _, value = line.strip().partition("=")
            out[key] = value
    raise AssertionError(f"no banner; stderr: {proc.stderr.read() if proc.stderr else ''}")


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["sigterm", "sigint"])
def test_emulate_prints_what_a_client_needs_and_stops_on_signal(
    sig: signal.Signals, subprocess_env: dict[str, str]
) -> None:
    with _running(["--port", "0", "--speed", "30", "--progress-s", "0.2"], subprocess_env) as proc:
        env = _banner(proc)
        assert env["AWS_ENDPOINT_URL"].startswith("http://127.0.0.1:")
        assert env["AWS_ACCESS_KEY_ID"] and env["AWS_SECRET_ACCESS_KEY"]
        assert env["AWS_DEFAULT_REGION"] == "us-east-1"
        clock = json.loads(
            urllib.request.urlopen(env["AWS_ENDPOINT_URL"] + "/_tuner/clock", timeout=5).read()
        )
        assert clock["speed"] == 30.0
        if sig is signal.SIGTERM:
            # The AWS CLI, configured only by the printed lines, sees the endpoint.
            cli_env = {**subprocess_env, **env}
            out = subprocess.run(
                ["aws", "sagemaker", "describe-endpoint", "--endpoint-name", "demo-endpoint"],
                env=cli_env, capture_output=True, text=True, timeout=60, check=True,
            )  # fmt: skip
            assert json.loads(out.stdout)["EndpointStatus"] == "InService"
        err = _stop(proc, sig)
    assert "in service" in err and "stopped" in err.splitlines()[-1]


def test_port_in_use_exits_2_with_one_line(subprocess_env: dict[str, str]) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc = _start(["--port", str(port)], subprocess_env)
        _, err = proc.communicate(timeout=60)
    assert proc.returncode == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert f"port {port}" in lines[0] and "in use" in lines[0]


@pytest.mark.parametrize(
    ("content", "needle"),
    [
        ('{"max_rps_per_instance": -1, "latency_ms": [{"rps": 1, "p50": 1, "p99": 2}]}',
         "max_rps_per_instance > 0 must hold, got -1"),
        ('{"latency_ms": [{"rps": 1, "p50": 9, "p99": 2}]}', "p50 <= p99 must hold"),
        ("{not json", "malformed JSON"),
    ],
    ids=["negative-rate", "p50-above-p99", "not-json"],
)  # fmt: skip
def test_bad_capacity_file_exits_2_with_one_line(
    tmp_path: Path, subprocess_env: dict[str, str], content: str, needle: str
) -> None:
    path = tmp_path / "capacity.json"
    path.write_text(content)
    proc = _start(["--port", "0", "--capacity", str(path)], subprocess_env)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert needle in lines[0] and str(path) in lines[0]


def test_bad_flag_values_exit_2_with_one_line(subprocess_env: dict[str, str]) -> None:
    for args, needle in (
        (["--speed", "0"], "speed > 0 must hold"),
        (["--instances", "0"], "instances >= 1 must hold"),
        (["--port", "70000"], "port must be in 0..65535"),
    ):
        proc = _start(args, subprocess_env)
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == 2, (args, err)
        assert len(err.strip().splitlines()) == 1 and needle in err, (args, err)


def test_llm_mode_streams_from_the_inference_component(
    tmp_path: Path, subprocess_env: dict[str, str]
) -> None:
    import boto3

    spec = tmp_path / "llm.json"
    spec.write_text(json.dumps({"decode_tokens_per_s": 40, "max_concurrent_sequences": 4}))
    args = ["--port", "0", "--speed", "5", "--progress-s", "0.2", "--inference-component", "llm"]
    with _running([*args, "--copies", "2", "--llm-spec", str(spec)], subprocess_env) as proc:
        env = _banner(proc)
        kw = {
            "endpoint_url": env["AWS_ENDPOINT_URL"],
            "region_name": env["AWS_DEFAULT_REGION"],
            "aws_access_key_id": env["AWS_ACCESS_KEY_ID"],
            "aws_secret_access_key": env["AWS_SECRET_ACCESS_KEY"],
        }
        doc = boto3.client("sagemaker", **kw).describe_inference_component(
            InferenceComponentName="llm"
        )
        assert doc["RuntimeConfig"] == {"DesiredCopyCount": 2, "CurrentCopyCount": 2}
        resp = boto3.client("sagemaker-runtime", **kw).invoke_endpoint_with_response_stream(
            EndpointName="demo-endpoint",
            Body=json.dumps({"inputs": "hello there", "parameters": {"max_new_tokens": 7}}),
        )  # one component on the endpoint: the header may be left out
        data = b"".join(e["PayloadPart"]["Bytes"] for e in resp["Body"])
        assert [json.loads(x) for x in data.splitlines()] == [{"token": {"text": " tok"}}] * 7
        err = _stop(proc, signal.SIGTERM)
    assert "llm: InService, 2 copies / 2 desired" in err


def test_bad_llm_spec_exits_2_with_one_line(tmp_path: Path, subprocess_env: dict[str, str]) -> None:
    spec = tmp_path / "llm.json"
    for content, needle in (
        ('{"decode_tokens_per_s": 0}', "decode_tokens_per_s > 0 must hold"),
        ('{"tokens_per_s": 5}', "unknown field 'tokens_per_s'"),
        ("{not json", "is not JSON"),
    ):
        spec.write_text(content)
        proc = _start(["--port", "0", "--inference-component", "x", "--llm-spec", str(spec)],
                      subprocess_env)  # fmt: skip
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == 2, (content, err)
        assert len(err.strip().splitlines()) == 1 and needle in err, (content, err)
    proc = _start(["--port", "0", "--inference-component", "x", "--copies", "9"], subprocess_env)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 2 and "copies must be in 0..4" in err, err
