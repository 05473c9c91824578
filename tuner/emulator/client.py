"""A small open-loop InvokeEndpoint driver for smoke checks and benchmarks of the emulator.

Requests leave on schedule whatever the latency (open loop: each due request takes an idle
keep-alive connection or opens one), unsigned (the emulator routes the runtime by path and checks
no signature). The real load generator is Locust (``locustfiles/``); this is for measuring the
emulator itself. Run ``python -m tuner.emulator.client URL --endpoint E --rate R --seconds S``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit


@dataclass(frozen=True)
class Sent:
    """One request: when it left (real s from start), its HTTP status (0: no answer), latency."""

    sent_s: float
    status: int
    latency_s: float


class _Conn(asyncio.Protocol):
    """One keep-alive connection; one request at a time; callbacks, no task per request."""

    def __init__(self, on_lost: Callable[[_Conn], None]) -> None:
        self.on_lost = on_lost
        self.transport: asyncio.Transport | None = None
        self.buf = bytearray()
        self.done: Callable[[int], None] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.buf += data
        end = self.buf.find(b"\r\n\r\n")
        if end < 0 or self.done is None:
            return
        head = bytes(self.buf[:end]).decode("latin-1")
        i = head.lower().find("content-length:")
        length = int(head[i + 15 :].split("\r\n", 1)[0]) if i >= 0 else 0
        if len(self.buf) < end + 4 + length:
            return
        del self.buf[: end + 4 + length]
        done, self.done = self.done, None
        done(int(head.split(" ", 2)[1]))

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        if self.done is not None:
            done, self.done = self.done, None
            done(0)
        self.on_lost(self)


async def drive(
    url: str,
    endpoint: str,
    offsets_s: Sequence[float],
    *,
    body: bytes = b'{"inputs": [1, 2, 3]}',
    max_connections: int = 2000,
    timeout_s: float = 120.0,
) -> list[Sent]:
    """Send one InvokeEndpoint at each real offset (seconds from now); results in send order.

    A request that finds ``max_connections`` busy, or gets no answer within ``timeout_s`` of the
    last send, has status 0.
    """
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    request = (
        f"POST /endpoints/{endpoint}/invocations HTTP/1.1\r\nHost: {host}:{port}\r\n"
        f"Content-Type: application/json\r\nAccept: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body
    loop = asyncio.get_running_loop()
    idle: list[_Conn] = []
    live: set[_Conn] = set()
    n = len(offsets_s)
    results: list[Sent | None] = [None] * n
    pending = 0
    sending_done = False
    all_done = loop.create_future()
    start = loop.time()

    def lost(conn: _Conn) -> None:
        live.discard(conn)
        if conn in idle:
            idle.remove(conn)

    def finish(i: int, sent_s: float, t0: float, conn: _Conn | None, status: int) -> None:
        nonlocal pending
        results[i] = Sent(sent_s, status, loop.time() - t0)
        if conn is not None and status and conn.transport is not None:
            idle.append(conn)
        pending -= 1
        if pending == 0 and sending_done and not all_done.done():
            all_done.set_result(None)

    def send(conn: _Conn, i: int, sent_s: float, t0: float) -> None:
        conn.done = lambda status: finish(i, sent_s, t0, conn, status)
        assert conn.transport is not None
        conn.transport.write(request)

    async def connect_then_send(i: int, sent_s: float, t0: float) -> None:
        try:
            _, conn = await loop.create_connection(lambda: _Conn(lost), host, port)
        except OSError:
            finish(i, sent_s, t0, None, 0)
            return
        live.add(conn)
        send(conn, i, sent_s, t0)

    connecting: list[asyncio.Task[None]] = []
    i = 0
    while i < n:
        now = loop.time()
        # Send everything due now in one go: the schedule holds even if a wake-up is late.
        while i < n and start + offsets_s[i] <= now:
            pending += 1
            sent_s = now - start
            if idle:
                send(idle.pop(), i, sent_s, now)
            elif len(live) + len(connecting) < max_connections:
                connecting.append(loop.create_task(connect_then_send(i, sent_s, now)))
            else:
                finish(i, sent_s, now, None, 0)
            i += 1
        connecting = [t for t in connecting if not t.done()]
        if i < n:
            await asyncio.sleep(max(0.0, start + offsets_s[i] - loop.time()))
    sending_done = True
    if pending:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(all_done, timeout_s)
    for conn in list(live):
        if conn.transport is not None:
            conn.transport.close()
    return [r if r is not None else Sent(offsets_s[k], 0, timeout_s) for k, r in enumerate(results)]


def constant_rate(rate_rps: float, seconds: float) -> list[float]:
    """Evenly spaced offsets: ``rate_rps`` per real second for ``seconds``."""
    n = int(round(rate_rps * seconds))
    return [k / rate_rps for k in range(n)]


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tuner.emulator.client", description=__doc__)
    p.add_argument("url")
    p.add_argument("--endpoint", default="demo-endpoint")
    p.add_argument("--rate", type=float, required=True, help="requests per real second")
    p.add_argument("--seconds", type=float, required=True, help="real seconds to send for")
    args = p.parse_args(argv)
    t0 = time.perf_counter()
    sent = asyncio.run(drive(args.url, args.endpoint, constant_rate(args.rate, args.seconds)))
    wall = time.perf_counter() - t0
    ok = sorted(s.latency_s for s in sent if s.status == 200)
    summary = {
        "sent": len(sent),
        "wall_s": wall,
        "send_span_s": max((s.sent_s for s in sent), default=0.0),
        "statuses": dict(Counter(str(s.status) for s in sent)),
        "p50_ms": 1000 * ok[len(ok) // 2] if ok else None,
        "p99_ms": 1000 * ok[int(len(ok) * 0.99)] if ok else None,
    }
    json.dump(summary, sys.stdout)
    print()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
