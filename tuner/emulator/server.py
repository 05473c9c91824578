"""The HTTP front on 127.0.0.1: an asyncio HTTP/1.1 server (keep-alive, one request at a time per
connection) that serves InvokeEndpoint itself on the event loop and hands every other call to the
control plane in a thread pool.

A plain threaded WSGI server tops out near a thousand small requests a second on two cores; the
runtime route here costs no thread, no task and no WSGI environ per request.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import re
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from http import HTTPStatus
from typing import Any
from urllib.parse import unquote

from tuner.clock import VirtualClock
from tuner.emulator.control import ACCOUNT_ID, HttpRequest, HttpResponse
from tuner.emulator.endpoint import EmulatedEndpoint, Outcome

_MAX_HEAD = 64 * 1024
_MAX_BODY = 8 * 1024 * 1024  # SageMaker's synchronous payload limit is 6 MB
_INVOKE = re.compile(r"^/endpoints/([^/]+)/invocations$")
_REASONS = {s.value: s.phrase for s in HTTPStatus}
_TIMEOUT_MESSAGE = (
    'Received server error (0) from primary with message "Your invocation timed out while '
    "waiting for a response from container primary. Review the latency metrics for each "
    'container in Amazon CloudWatch, resolve the issue, and try again."'
)

Reply = Callable[[HttpResponse], None]
ControlHandler = Callable[[HttpRequest], HttpResponse]
"""Answers a control-plane request (runs in a worker thread)."""


def _encode(resp: HttpResponse, keep_alive: bool) -> bytes:
    lines = [f"HTTP/1.1 {resp.status} {_REASONS.get(resp.status, 'Unknown')}"]
    lines.extend(f"{k}: {v}" for k, v in resp.headers)
    lines.append(f"Content-Length: {len(resp.body)}")
    if not keep_alive:
        lines.append("Connection: close")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + resp.body


class Router:
    """Routes one request: runtime and ``/_tuner/*`` on the loop, the rest to the control plane."""

    def __init__(
        self,
        endpoint: EmulatedEndpoint,
        clock: VirtualClock,
        control: ControlHandler,
        documents: dict[str, Callable[[], dict[str, Any]]],
        loop: asyncio.AbstractEventLoop,
        executor: ThreadPoolExecutor,
    ) -> None:
        self._endpoint = endpoint
        self._clock = clock
        self._control = control
        self._documents = documents
        self._loop = loop
        self._executor = executor
        self.connections: set[HttpConnection] = set()
        self._ids = itertools.count(1)
        self._id_prefix = f"{id(self) & 0xFFFFFFFF:08x}-emul-"
        ep = endpoint
        self._ok_headers = [
            ("Content-Type", "application/json"),
            ("x-Amzn-Invoked-Production-Variant", ep.variant),
        ]
        self._ok_body = json.dumps({"endpoint": ep.name, "variant": ep.variant}).encode()

    def handle(self, req: HttpRequest, reply: Reply) -> None:
        m = _INVOKE.match(req.path) if req.method == "POST" else None
        if m is not None:
            self._invoke(m.group(1), reply)
        elif req.path == "/_tuner/clock":
            reply(HttpResponse.json(200, self._clock.to_json()))
        elif req.path.startswith("/_tuner/") and req.path[8:] in self._documents:
            reply(HttpResponse.json(200, self._documents[req.path[8:]]()))
        else:
            fut = self._loop.run_in_executor(self._executor, self._control_safe, req)
            fut.add_done_callback(lambda f: reply(f.result()))

    def _control_safe(self, req: HttpRequest) -> HttpResponse:
        try:
            return self._control(req)
        except Exception as e:  # a crash must answer as AWS's 500, not hang the client
            return HttpResponse.aws_error(500, "InternalFailure", f"emulator: {e!r}")

    def _request_id(self) -> str:
        return f"{self._id_prefix}{next(self._ids):012x}"

    def _invoke(self, name: str, reply: Reply) -> None:
        ep = self._endpoint
        if unquote(name) != ep.name:
            msg = f"Endpoint {unquote(name)} of account {ACCOUNT_ID} not found."
            reply(self._runtime_error(400, "ValidationError", msg))
            return

        def done(outcome: Outcome, latency_ms: float) -> None:
            if outcome is Outcome.OK:
                headers = [*self._ok_headers, ("x-amzn-RequestId", self._request_id())]
                reply(HttpResponse(200, headers, self._ok_body))
            elif outcome is Outcome.THROTTLED:
                reply(self._runtime_error(429, "ThrottlingException", "Rate exceeded"))
            else:
                reply(
                    self._runtime_error(
                        424,
                        "ModelError",
                        _TIMEOUT_MESSAGE,
                        OriginalStatusCode=0,
                        OriginalMessage="Your invocation timed out while waiting for a response "
                        "from container primary.",
                        LogStreamArn=f"arn:aws:logs:us-east-1:{ACCOUNT_ID}:log-group:"
                        f"/aws/sagemaker/Endpoints/{ep.name}",
                    )
                )

        ep.invoke(done)

    def _runtime_error(self, status: int, code: str, message: str, **extra: Any) -> HttpResponse:
        body = json.dumps({"message": message, **extra}).encode()
        headers = [
            ("Content-Type", "application/json"),
            ("x-amzn-ErrorType", f"{code}:http://internal.amazon.com/coral/com.amazon.sagemaker/"),
            ("x-amzn-RequestId", self._request_id()),
        ]
        return HttpResponse(status, headers, body)


class HttpConnection(asyncio.Protocol):
    """One client connection: parse, route, answer; keep-alive; requests answered in order."""

    def __init__(self, router: Router) -> None:
        self._router = router
        self._buf = bytearray()
        self._transport: asyncio.Transport | None = None
        self._waiting = False
        self._keep_alive = True
        self._in_parse = False
        self._continue_sent = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]
        self._router.connections.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport = None
        self._router.connections.discard(self)

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()

    def data_received(self, data: bytes) -> None:
        self._buf += data
        if not self._waiting:
            self._parse()

    def _reply(self, resp: HttpResponse) -> None:
        t = self._transport
        if t is None or t.is_closing():
            return
        t.write(_encode(resp, self._keep_alive))
        self._waiting = False
        if not self._keep_alive:
            t.close()
        elif self._buf and not self._in_parse:
            self._parse()

    def _fail(self, status: int, message: str) -> None:
        self._keep_alive = False
        self._reply(HttpResponse.json(status, {"message": message}))

    def _parse(self) -> None:
        self._in_parse = True
        try:
            while not self._waiting and self._buf and self._transport is not None:
                if not self._parse_one():
                    return
        finally:
            self._in_parse = False

    def _parse_one(self) -> bool:
        buf = self._buf
        end = buf.find(b"\r\n\r\n")
        if end < 0:
            if len(buf) > _MAX_HEAD:
                self._fail(431, "request header too large")
            return False
        head = bytes(buf[:end]).decode("latin-1").split("\r\n")
        try:
            method, target, version = head[0].split(" ", 2)
        except ValueError:
            self._fail(400, "malformed request line")
            return False
        headers: dict[str, str] = {}
        for line in head[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        start = end + 4
        if headers.get("transfer-encoding", "").lower() == "chunked":
            parsed = _dechunk(buf, start)
            if parsed is None:
                return False
            body, stop = parsed
        else:
            try:
                length = int(headers.get("content-length", "0"))
            except ValueError:
                self._fail(400, "malformed Content-Length")
                return False
            if length > _MAX_BODY:
                self._fail(413, f"body larger than {_MAX_BODY} bytes")
                return False
            if len(buf) - start < length:
                if headers.get("expect", "").lower() == "100-continue" and not self._continue_sent:
                    self._continue_sent = True
                    assert self._transport is not None
                    self._transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")
                return False
            body, stop = bytes(buf[start : start + length]), start + length
        del buf[:stop]
        self._continue_sent = False
        conn = headers.get("connection", "").lower()
        self._keep_alive = conn != "close" and (version == "HTTP/1.1" or conn == "keep-alive")
        path, _, query = target.partition("?")
        self._waiting = True
        self._router.handle(HttpRequest(method, path, query, headers, body), self._reply)
        return True


def _dechunk(buf: bytearray, pos: int) -> tuple[bytes, int] | None:
    """A complete chunked body starting at ``pos``: (body, end), or None if more is needed."""
    out = bytearray()
    while True:
        eol = buf.find(b"\r\n", pos)
        if eol < 0:
            return None
        size = int(bytes(buf[pos:eol]).split(b";")[0] or b"0", 16)
        pos = eol + 2
        if size == 0:
            trailer_end = buf.find(b"\r\n", pos)
            if trailer_end < 0:
                return None
            return bytes(out), trailer_end + 2
        if len(buf) < pos + size + 2:
            return None
        out += buf[pos : pos + size]
        pos += size + 2
