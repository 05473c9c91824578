"""The HTTP front on 127.0.0.1: an asyncio HTTP/1.1 server (keep-alive, one request at a time per
connection) that serves InvokeEndpoint itself on the event loop and hands every other call to the
control plane in a thread pool.

A plain threaded WSGI server tops out near a thousand small requests a second on two cores; the
runtime route here costs no thread, no task and no WSGI environ per request.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import re
import socket
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any
from urllib.parse import unquote

from tuner.clock import VirtualClock
from tuner.emulator.control import ACCOUNT_ID, HttpRequest, HttpResponse
from tuner.emulator.endpoint import EmulatedEndpoint, Outcome
from tuner.emulator.framing import (
    BadRequest,
    ChunkedBody,
    ChunkedWriter,
    runtime_error,
    timeout_error,
)

_DIGITS = re.compile(r"^[0-9]{1,19}$")
_MAX_BODY = 8 * 1024 * 1024  # SageMaker's synchronous payload limit is 6 MB
_INVOKE = re.compile(r"^/endpoints/([^/]+)/invocations$")
_INVOKE_STREAM = re.compile(r"^/endpoints/([^/]+)/invocations-response-stream$")
_SCOPE = re.compile(r"Credential=[^/,\s]+/\d{8}/([^/,\s]+)/([^/,\s]+)/aws4_request")
_SWEEP_S = 1.0
CONTROL_SERVICES = frozenset({"application-autoscaling", "monitoring", "sagemaker"})
"""The services the control plane answers (by SigV4 scope); any other is refused."""
_REASONS = {s.value: s.phrase for s in HTTPStatus}
Reply = Callable[[HttpResponse], None]
OpenStream = Callable[[int, list[tuple[str, str]]], "ChunkedWriter"]
"""Starts a chunked response with this status and headers (the connection's ``start_stream``)."""
StreamHandler = Callable[[str, HttpRequest, Reply, OpenStream | None], None]
"""Answers an inference component's invocation (endpoint name, request, reply, and how to open
a stream: None for InvokeEndpoint, answered in one piece)."""
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
        *,
        region: str = "us-east-1",
        limits: HttpLimits | None = None,
        streams: StreamHandler | None = None,
    ) -> None:
        self.limits = limits or HttpLimits()
        self.streams = streams
        """InvokeEndpointWithResponseStream's handler (None: answered 404 as unknown)."""
        self.buffered = 0
        """Request bytes held by all connections (see HttpLimits.max_buffered_bytes)."""
        self.region = region
        self.loop_time = loop.time
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
        loop.call_soon_threadsafe(self._sweep)

    def _sweep(self) -> None:
        """Once a second: close connections whose deadline passed (see HttpLimits)."""
        now = self._loop.time()
        for conn in [c for c in self.connections if 0 < c.deadline < now]:
            conn.expire()
        self._loop.call_later(_SWEEP_S, self._sweep)

    def handle(self, req: HttpRequest, reply: Reply, open_stream: OpenStream | None = None) -> None:
        m = _INVOKE.match(req.path) if req.method == "POST" else None
        s = _INVOKE_STREAM.match(req.path) if req.method == "POST" and m is None else None
        component = "x-amzn-sagemaker-inference-component" in req.headers
        if m is not None and component and self.streams is not None:
            self.streams(unquote(m.group(1)), req, reply, None)  # answered whole, not streamed
        elif m is not None:
            self._invoke(m.group(1), reply)
        elif s is not None and self.streams is not None and open_stream is not None:
            self.streams(unquote(s.group(1)), req, reply, open_stream)
        elif req.path == "/_tuner/clock":
            reply(HttpResponse.json(200, self._clock.to_json()))
        elif req.path.startswith("/_tuner/") and req.path[8:] in self._documents:
            reply(HttpResponse.json(200, self._documents[req.path[8:]]()))
        else:
            refusal = self._unauthorised(req)
            if refusal is not None:
                reply(refusal)
                return
            fut = self._loop.run_in_executor(self._executor, self._control_safe, req)
            fut.add_done_callback(lambda f: reply(f.result()))

    def _unauthorised(self, req: HttpRequest) -> HttpResponse | None:
        """AWS's answer to a control-plane call this local AWS must not route, or None.

        moto picks the service from the SigV4 credential scope and, without one, falls back to
        S3; AWS answers an unsigned call 403 MissingAuthenticationTokenException and a scope
        for another region or service 403 InvalidSignatureException, and so does this server.
        """
        auth = req.headers.get("authorization", "")
        m = _SCOPE.search(auth) or _SCOPE.search(unquote(req.query))
        if m is None:
            return HttpResponse.aws_error(
                403, "MissingAuthenticationTokenException", "Missing Authentication Token"
            )
        region, service = m.group(1), m.group(2)
        if region != self.region:
            return HttpResponse.aws_error(
                403,
                "InvalidSignatureException",
                f"Credential should be scoped to a valid region, not '{region}' "
                f"(this local AWS serves {self.region})",
            )
        if service not in CONTROL_SERVICES:
            return HttpResponse.aws_error(
                403,
                "InvalidSignatureException",
                f"Credential should be scoped to correct service: this local AWS serves "
                f"{', '.join(sorted(CONTROL_SERVICES))}, not '{service}'",
            )
        return None

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
                reply(timeout_error(ep.name, self._request_id()))

        ep.invoke(done)

    def _runtime_error(self, status: int, code: str, message: str, **extra: Any) -> HttpResponse:
        return runtime_error(status, code, message, self._request_id(), **extra)

    def request_id(self) -> str:
        """A new x-amzn-RequestId."""
        return self._request_id()


@dataclass(frozen=True, kw_only=True)
class HttpLimits:
    """What one client may hold of the server: bytes, time (real seconds) and connections."""

    max_head_bytes: int = 64 * 1024
    max_body_bytes: int = _MAX_BODY
    header_timeout_s: float = 10.0
    """From the first byte of a request to the end of its head (slow-header clients)."""
    body_timeout_s: float = 60.0
    """From the first byte of a request to the end of its body."""
    idle_timeout_s: float = 60.0
    """A keep-alive connection with no request in it is closed after this long."""
    max_connections: int = 1024
    """Open connections; one more is answered 503 and closed."""
    max_buffered_bytes: int = 256 * 1024 * 1024
    """Request bytes held across all connections (heads and bodies not yet answered); the
    connection whose bytes would pass it is answered 503, so memory stays bounded however many
    clients send large bodies slowly at once."""


@dataclass
class _Pending:
    """A request whose head has arrived, waiting for its body."""

    method: str
    target: str
    version: str
    headers: dict[str, str]
    length: int = 0
    chunked: ChunkedBody | None = None


class HttpConnection(asyncio.Protocol):
    """One client connection: parse, route, answer; keep-alive; requests answered in order.

    Framing is checked as a strict server does: a malformed request line, header, chunk size or
    Content-Length is answered 400 and the connection closed; a body over the limit 413, in any
    transfer encoding, before it is read. Deadlines (see HttpLimits) are kept as a time per
    connection and enforced by the router's sweep once a second, so a request costs no timer.
    """

    def __init__(self, router: Router) -> None:
        self._router = router
        self._limits = router.limits
        self._buf = bytearray()
        self._transport: asyncio.Transport | None = None
        self._waiting = False
        self._keep_alive = True
        self._in_parse = False
        self._continue_sent = False
        self._pending: _Pending | None = None
        self._scanned = 0  # bytes of the buffer already searched for the end of the head
        self._held = 0  # bytes this connection counts in router.buffered
        self.transport: asyncio.Transport | None = None
        """The transport while connected (what a ChunkedWriter writes to)."""
        self.deadline = 0.0
        """Loop time by which the connection must make progress (0: none while answering)."""
        self.deadline_kind = "idle"

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]
        self.transport = self._transport
        sock = transport.get_extra_info("socket")
        if sock is not None:  # streamed chunks go out as written (no Nagle wait for an ACK)
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if len(self._router.connections) >= self._limits.max_connections:
            self._keep_alive = False
            self._reply(
                HttpResponse(
                    503,
                    [*_error_headers("ServiceUnavailable"), ("Retry-After", "1")],
                    _error_body("ServiceUnavailable", "too many open connections"),
                )
            )
            return
        self._router.connections.add(self)
        self._set_idle()

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport = None
        self.transport = None
        self._router.connections.discard(self)
        self._router.buffered -= self._held
        self._held = 0

    def _account(self) -> None:
        pending = self._pending
        held = len(self._buf)
        if pending is not None and pending.chunked is not None:
            held += len(pending.chunked.body)
        self._router.buffered += held - self._held
        self._held = held

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()

    def _now(self) -> float:
        return self._router.loop_time()

    def _set_idle(self) -> None:
        self.deadline_kind = "idle"
        self.deadline = self._now() + self._limits.idle_timeout_s

    def expire(self) -> None:
        """Called by the sweep when the deadline passed: 408 for a half-sent request."""
        if self.deadline_kind == "idle":
            self.close()
        else:
            self._fail(
                408,
                "RequestTimeout",
                f"request not received within the {self.deadline_kind} timeout",
            )

    def data_received(self, data: bytes) -> None:
        if not self._buf and not self._waiting and self._pending is None:
            self.deadline_kind = "header"
            self.deadline = self._now() + self._limits.header_timeout_s
        self._buf += data
        self._account()
        if self._router.buffered > self._limits.max_buffered_bytes:
            self._fail(503, "ServiceUnavailable", "too many request bytes in flight; retry")
        elif not self._waiting:
            self._parse()

    def _reply(self, resp: HttpResponse) -> None:
        t = self._transport
        if t is None or t.is_closing():
            return
        t.write(_encode(resp, self._keep_alive))
        self.answered()

    def start_stream(self, status: int, headers: list[tuple[str, str]]) -> ChunkedWriter:
        """Write a chunked answer's head; the returned writer sends the body and ends it."""
        lines = [f"HTTP/1.1 {status} {_REASONS.get(status, 'Unknown')}"]
        lines.extend(f"{k}: {v}" for k, v in headers)
        lines.append("Transfer-Encoding: chunked")
        if not self._keep_alive:
            lines.append("Connection: close")
        return ChunkedWriter(self, ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))

    def answered(self) -> None:
        """The answer is complete: close, or wait for (or parse) the next request."""
        t = self._transport
        if t is None or t.is_closing():
            return
        self._waiting = False
        if not self._keep_alive:
            t.close()
            return
        self._set_idle()
        if self._buf and not self._in_parse:
            self.deadline_kind = "header"
            self.deadline = self._now() + self._limits.header_timeout_s
            self._parse()

    def _fail(self, status: int, code: str, message: str) -> None:
        self._keep_alive = False
        self._buf.clear()
        self._pending = None
        self._waiting = False
        self._account()
        self._reply(HttpResponse(status, _error_headers(code), _error_body(code, message)))

    def _parse(self) -> None:
        self._in_parse = True
        try:
            while not self._waiting and self._transport is not None:
                if self._pending is None and not self._buf:
                    return
                if not self._parse_one():
                    return
        except BadRequest as e:
            self._fail(e.status, e.code, e.message)
        finally:
            self._in_parse = False
            self._account()

    def _parse_head(self) -> _Pending | None:
        buf = self._buf
        end = buf.find(b"\r\n\r\n", max(0, self._scanned - 3), self._limits.max_head_bytes + 4)
        if end < 0:
            if len(buf) > self._limits.max_head_bytes:
                raise BadRequest(431, "RequestHeaderFieldsTooLarge", "request header too large")
            self._scanned = len(buf)
            return None
        self._scanned = 0
        head = bytes(buf[:end]).decode("latin-1").split("\r\n")
        del buf[: end + 4]
        parts = head[0].split(" ")
        if len(parts) != 3 or not parts[0].isalpha() or not parts[2].startswith("HTTP/1."):
            raise BadRequest(400, "BadRequest", "malformed request line")
        method, target, version = parts
        headers: dict[str, str] = {}
        for line in head[1:]:
            name, colon, value = line.partition(":")
            name = name.strip().lower()
            if not colon or not name or " " in name:
                raise BadRequest(400, "BadRequest", "malformed header line")
            value = value.strip()
            framing = name in ("content-length", "transfer-encoding")
            if framing and name in headers and headers[name] != value:
                raise BadRequest(400, "BadRequest", f"conflicting {name} headers")
            headers[name] = value
        pending = _Pending(method, target, version, headers)
        te = headers.get("transfer-encoding")
        if te is not None:
            if "content-length" in headers:
                raise BadRequest(
                    400, "BadRequest", "both Transfer-Encoding and Content-Length given"
                )
            if te.lower() != "chunked":
                raise BadRequest(501, "NotImplemented", f"Transfer-Encoding {te!r} not supported")
            pending.chunked = ChunkedBody(self._limits.max_body_bytes)
        else:
            text = headers.get("content-length", "0")
            if not _DIGITS.match(text):
                raise BadRequest(400, "BadRequest", f"malformed Content-Length {text[:32]!r}")
            pending.length = int(text)
            if pending.length > self._limits.max_body_bytes:
                raise BadRequest(
                    413,
                    "RequestEntityTooLarge",
                    f"request body larger than {self._limits.max_body_bytes} bytes",
                )
        self.deadline_kind = "body"
        self.deadline += self._limits.body_timeout_s - self._limits.header_timeout_s
        return pending

    def _parse_one(self) -> bool:
        if self._pending is None:
            self._pending = self._parse_head()
            if self._pending is None:
                return False
        req = self._pending
        buf = self._buf
        if req.chunked is not None:
            if not req.chunked.feed(buf):
                return False
            body = bytes(req.chunked.body)
        else:
            if len(buf) < req.length:
                if (
                    req.headers.get("expect", "").lower() == "100-continue"
                    and not self._continue_sent
                ):
                    self._continue_sent = True
                    assert self._transport is not None
                    self._transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")
                return False
            body = bytes(buf[: req.length])
            del buf[: req.length]
        self._pending = None
        self._continue_sent = False
        conn = req.headers.get("connection", "").lower()
        self._keep_alive = conn != "close" and (req.version == "HTTP/1.1" or conn == "keep-alive")
        path, _, query = req.target.partition("?")
        self._waiting = True
        self.deadline = 0.0
        self._router.handle(
            HttpRequest(req.method, path, query, req.headers, body), self._reply, self.start_stream
        )
        return True


def _error_headers(code: str) -> list[tuple[str, str]]:
    return [("Content-Type", "application/x-amz-json-1.1"), ("x-amzn-ErrorType", code)]


def _error_body(code: str, message: str) -> bytes:
    return json.dumps({"__type": code, "message": message, "Message": message}).encode()
