"""The local AWS under malformed HTTP: each case gets AWS's answer, and normal traffic goes on.

One real `tuner emulate` process takes every malformed case of issue 13 on raw sockets while an
open-loop driver keeps invoking the endpoint; its p99 latency and resident memory are measured
before and during the abuse and printed. The timeouts and the connection bound are checked on an
in-process LocalAws with short limits, so they take a second, not a minute.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np
import pytest

from tuner.emulator import EmulatorConfig, HttpLimits, LocalAws
from tuner.emulator.client import drive

ENDPOINT = "demo-endpoint"
SCOPE = "testing/20260101/{region}/{service}/aws4_request"


def _auth(region: str = "us-east-1", service: str = "sagemaker") -> str:
    scope = SCOPE.format(region=region, service=service)
    return f"AWS4-HMAC-SHA256 Credential={scope}, SignedHeaders=host, Signature=0"


def _exchange(addr: tuple[str, int], data: bytes, *, timeout_s: float = 20.0) -> bytes:
    """Send ``data`` on a fresh connection and read until the server closes or stops talking."""
    with socket.create_connection(addr, timeout=timeout_s) as s:
        # The server may refuse before reading it all: its answer is still there to be read.
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            s.sendall(data)
        return _read_response(s)


def _read_response(s: socket.socket) -> bytes:
    """One HTTP response (head and Content-Length body), or what came before the close."""
    got = b""
    try:
        while b"\r\n\r\n" not in got:
            chunk = s.recv(65536)
            if not chunk:
                return got
            got += chunk
        head, _, body = got.partition(b"\r\n\r\n")
        length = 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value.strip())
        while len(body) < length:
            chunk = s.recv(65536)
            if not chunk:
                break
            body += chunk
        return head + b"\r\n\r\n" + body
    except (ConnectionResetError, TimeoutError):
        return got


def _status_and_type(raw: bytes) -> tuple[int, str]:
    head, _, body = raw.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1]) if head.startswith(b"HTTP/1.1 ") else 0
    try:
        doc = json.loads(body or b"{}")
    except ValueError:
        return status, ""
    return status, str(doc.get("__type", "")) if isinstance(doc, dict) else ""


def _post(path: str, headers: dict[str, str], body: bytes = b"") -> bytes:
    lines = [f"POST {path} HTTP/1.1", "Host: 127.0.0.1"]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


INVOKE = f"/endpoints/{ENDPOINT}/invocations"
DESCRIBE = {
    "Content-Type": "application/x-amz-json-1.1",
    "X-Amz-Target": "SageMaker.DescribeEndpoint",
}
DESCRIBE_BODY = json.dumps({"EndpointName": ENDPOINT}).encode()


def _chunked_flood(total_mb: int) -> Callable[[tuple[str, int]], bytes]:
    """A chunked body of ``total_mb`` MB sent as fast as the server takes it (1 MB chunks)."""

    def send(addr: tuple[str, int]) -> bytes:
        chunk = b"100000\r\n" + b"x" * 0x100000 + b"\r\n"
        with socket.create_connection(addr, timeout=20) as s:
            s.sendall(_post(INVOKE, {"Transfer-Encoding": "chunked"}))
            try:
                for _ in range(total_mb):
                    s.sendall(chunk)
                s.sendall(b"0\r\n\r\n")
            except (BrokenPipeError, ConnectionResetError):
                pass
            return _read_response(s)

    return send


def _raw(data: bytes) -> Callable[[tuple[str, int]], bytes]:
    return lambda addr: _exchange(addr, data)


# (id, how to send it, expected status, expected __type)
MALFORMED: list[tuple[str, Callable[[tuple[str, int]], bytes], int, str]] = [
    ("chunked-150MB", _chunked_flood(150), 413, "RequestEntityTooLarge"),
    (
        "bad-chunk-size",
        _raw(_post(INVOKE, {"Transfer-Encoding": "chunked"}, b"zz\r\nhello\r\n0\r\n\r\n")),
        400,
        "BadRequest",
    ),
    (
        "chunk-size-overflow",
        _raw(_post(INVOKE, {"Transfer-Encoding": "chunked"}, b"fffffffffffffffff\r\n")),
        400,
        "BadRequest",
    ),
    (
        "chunk-missing-crlf",
        _raw(_post(INVOKE, {"Transfer-Encoding": "chunked"}, b"2\r\nabXY0\r\n\r\n")),
        400,
        "BadRequest",
    ),
    ("negative-content-length", _raw(_post(INVOKE, {"Content-Length": "-5"})), 400, "BadRequest"),
    ("word-content-length", _raw(_post(INVOKE, {"Content-Length": "ten"})), 400, "BadRequest"),
    (
        "conflicting-content-length",
        _raw(
            _post(INVOKE, {"Content-Length": "2"}).replace(
                b"\r\n\r\n", b"\r\nContent-Length: 3\r\n\r\n"
            )
            + b"abc"
        ),
        400,
        "BadRequest",
    ),
    (
        "content-length-over-limit",
        _raw(_post(INVOKE, {"Content-Length": str(50 * 1024 * 1024)})),
        413,
        "RequestEntityTooLarge",
    ),
    (
        "te-and-content-length",
        _raw(_post(INVOKE, {"Transfer-Encoding": "chunked", "Content-Length": "5"}, b"0\r\n\r\n")),
        400,
        "BadRequest",
    ),
    ("te-gzip", _raw(_post(INVOKE, {"Transfer-Encoding": "gzip"})), 501, "NotImplemented"),
    ("bad-request-line", _raw(b"HELLO\r\n\r\n"), 400, "BadRequest"),
    ("header-without-colon", _raw(b"GET / HTTP/1.1\r\nHost 127.0.0.1\r\n\r\n"), 400, "BadRequest"),
    (
        "header-too-large",
        _raw(b"GET / HTTP/1.1\r\nX-Big: " + b"a" * 70000),
        431,
        "RequestHeaderFieldsTooLarge",
    ),
    (
        "unsigned-control-plane",
        _raw(_post("/", {**DESCRIBE, "Content-Length": str(len(DESCRIBE_BODY))}, DESCRIBE_BODY)),
        403,
        "MissingAuthenticationTokenException",
    ),
    (
        "unsigned-get-root",
        _raw(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"),
        403,
        "MissingAuthenticationTokenException",
    ),
    (
        "signed-for-s3",
        _raw(
            b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: "
            + _auth(service="s3").encode()
            + b"\r\n\r\n"
        ),
        403,
        "InvalidSignatureException",
    ),
    (
        "signed-for-other-region",
        _raw(
            _post(
                "/",
                {
                    **DESCRIBE,
                    "Authorization": _auth(region="mars-1"),
                    "Content-Length": str(len(DESCRIBE_BODY)),
                },
                DESCRIBE_BODY,
            )
        ),
        403,
        "InvalidSignatureException",
    ),
]


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


@pytest.fixture(scope="module")
def emulate(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, int]]:
    """A real `tuner emulate` (default capacity: p50 60 ms, p99 150 ms at speed 1)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    log = tmp_path_factory.mktemp("emulate") / "stderr.log"
    with log.open("w") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "tuner", "emulate", "--port", "0", "--progress-s", "3600"],
            stdout=subprocess.PIPE,
            stderr=err,
            text=True,
            env=env,
        )
    try:
        assert proc.stdout is not None
        url = ""
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not url:
            line = proc.stdout.readline()
            if not line:
                break
            if line.startswith("AWS_ENDPOINT_URL="):
                url = line.strip().partition("=")[2]
        assert url, log.read_text()
        yield url, proc.pid
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _p99_ms(url: str, rate: float, seconds: float) -> tuple[float, int, int]:
    offsets = list(np.arange(0, seconds, 1 / rate))
    sent = asyncio.run(drive(url, ENDPOINT, offsets))
    ok = [s.latency_s * 1000 for s in sent if s.status == 200]
    return float(np.percentile(ok, 99)) if ok else float("inf"), len(ok), len(sent)


def test_emulator_answers_malformed_http_and_keeps_serving(emulate: tuple[str, int]) -> None:
    url, pid = emulate
    parts = urlsplit(url)
    addr = (parts.hostname or "127.0.0.1", parts.port or 80)
    rss_before = _rss_mb(pid)
    p99_base, ok_base, n_base = _p99_ms(url, rate=10, seconds=4)
    assert ok_base == n_base

    wrong: list[str] = []
    rounds = [0]
    peak_rss = [rss_before]
    driving = threading.Event()
    driving.set()

    def abuse() -> None:
        """Every malformed case, again and again, for as long as the driver invokes."""
        while driving.is_set() or rounds[0] == 0:
            for name, send, status, error_type in MALFORMED:
                got = _status_and_type(send(addr))
                if got != (status, error_type):
                    wrong.append(f"{name}: {got}")
            rounds[0] += 1

    def watch_memory() -> None:
        while driving.is_set():
            peak_rss[0] = max(peak_rss[0], _rss_mb(pid))
            time.sleep(0.05)

    threads = [threading.Thread(target=abuse), threading.Thread(target=watch_memory)]
    for t in threads:
        t.start()
    p99_abuse, ok_abuse, n_abuse = _p99_ms(url, rate=10, seconds=4)
    driving.clear()
    for t in threads:
        t.join(timeout=120)
    rss_after = _rss_mb(pid)
    print(
        f"\nemulator under malformed HTTP ({rounds[0]} rounds of {len(MALFORMED)} cases): p99 "
        f"{p99_base:.0f} ms before, {p99_abuse:.0f} ms during ({ok_abuse}/{n_abuse} served); "
        f"resident memory {rss_before:.0f} MB before, peak {peak_rss[0]:.0f} MB, "
        f"{rss_after:.0f} MB after"
    )
    assert wrong == []
    assert ok_abuse == n_abuse
    assert p99_abuse <= 2 * p99_base
    # A 150 MB body is refused at 8 MB: memory may grow by the limit, never by the body.
    assert peak_rss[0] - rss_before < 60
    # Still serving, and the control plane still answers a signed call.
    assert (
        _status_and_type(
            _exchange(
                addr,
                _post(
                    "/",
                    {
                        **DESCRIBE,
                        "Authorization": _auth(),
                        "Content-Length": str(len(DESCRIBE_BODY)),
                    },
                    DESCRIBE_BODY,
                ),
            )
        )[0]
        == 200
    )


@pytest.fixture
def strict_aws() -> Iterator[tuple[str, int]]:
    limits = HttpLimits(
        header_timeout_s=0.5,
        body_timeout_s=1.0,
        idle_timeout_s=1.0,
        max_connections=20,
        max_buffered_bytes=1_000_000,
    )
    aws = LocalAws(EmulatorConfig(port=0, speed=20.0, endpoint=ENDPOINT, http_limits=limits))
    aws.start()
    try:
        yield ("127.0.0.1", aws.port)
    finally:
        aws.stop()


def test_half_sent_requests_time_out_and_connections_are_bounded(
    strict_aws: tuple[str, int],
) -> None:
    addr = strict_aws
    started = time.monotonic()
    # A head that never ends, a body that never ends: 408 after the header/body timeouts.
    slow_head = _exchange(addr, b"POST " + INVOKE.encode() + b" HTTP/1.1\r\nHost: x\r\n")
    assert _status_and_type(slow_head) == (408, "RequestTimeout")
    assert time.monotonic() - started < 3
    half_body = _exchange(addr, _post(INVOKE, {"Content-Length": "100"}, b"only ten b"))
    assert _status_and_type(half_body) == (408, "RequestTimeout")
    # An idle keep-alive connection is closed without a word.
    with socket.create_connection(addr, timeout=5) as idle:
        t0 = time.monotonic()
        assert idle.recv(10) == b""
        assert 0.5 < time.monotonic() - t0 < 3.5
    # 20 connections held half-sent: the 21st is told 503 at once; once they go, all is well.
    held = [socket.create_connection(addr, timeout=5) for _ in range(20)]
    try:
        for s in held:
            s.sendall(b"GET /_tuner/clock HTTP/1.1\r\n")
        time.sleep(0.1)
        extra = _exchange(addr, b"GET /_tuner/clock HTTP/1.1\r\nHost: x\r\n\r\n")
        assert _status_and_type(extra) == (503, "ServiceUnavailable")
    finally:
        for s in held:
            s.close()
    time.sleep(0.2)
    # Bodies sent slowly by many clients: the one that passes the bytes-in-flight bound gets 503.
    with socket.create_connection(addr, timeout=5) as first:
        first.sendall(_post(INVOKE, {"Content-Length": "900000"}, b"x" * 600_000))
        time.sleep(0.1)
        second = _exchange(addr, _post(INVOKE, {"Content-Length": "900000"}, b"x" * 600_000))
        assert _status_and_type(second) == (503, "ServiceUnavailable")
    time.sleep(0.2)
    ok = _exchange(addr, _post(INVOKE, {"Content-Length": "2"}, b"{}"))
    assert _status_and_type(ok)[0] == 200
    # A chunked body in many small pieces is decoded whole (the parser keeps its place).
    with socket.create_connection(addr, timeout=5) as s:
        s.sendall(_post(INVOKE, {"Transfer-Encoding": "chunked"}))
        for piece in (b"3\r", b"\nab", b"c\r\n", b"2;ext=1\r\nde\r", b"\n0\r\n", b"\r\n"):
            s.sendall(piece)
            time.sleep(0.01)
        assert _status_and_type(_read_response(s))[0] == 200
