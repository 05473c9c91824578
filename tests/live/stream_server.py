"""A streaming InvokeEndpointWithResponseStream server on 127.0.0.1 for the load-side tests.

Every request's SigV4 signature is recomputed with botocore from the test credentials
(mismatch: 403). A good request waits for one of ``slots`` sequence slots (more queue: the
concurrency limit), sleeps ``prefill_s``, then writes ``max_new_tokens`` JSON token lines in
event-stream PayloadParts, ``tokens_per_part`` to a part, ``token_delay_s`` apart, as HTTP/1.1
chunks. ``split`` cuts every part's payload in two parts (lines split across messages). It logs,
per request, when it received it and when it finished writing the first PayloadPart.
``stall_share`` of the streams (drawn with ``seed``) stall a uniform ``stall_s`` range of
seconds before their first token, outside any slot queue: real-time jitter.
``no_capacity`` answers as an inference component at zero copies; ``fail_after`` ends each
stream with a ModelStreamError after that many tokens.
"""

from __future__ import annotations

import json
import random
import socket
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from tests.live.test_loadgen import signature_ok
from tuner.eventstream import CONTENT_TYPE, payload_part, stream_error


@dataclass
class Served:
    """One request as the server saw it."""

    received: float
    path: str
    signed: bool
    component: str
    prompt_words: int
    max_new_tokens: int
    first_part: float = float("nan")
    """Epoch seconds when the first PayloadPart was written (after the write returned)."""
    done: float = float("nan")
    stall_s: float = 0.0
    """Seconds this request stalled before its slot queue (``StreamServer.stall_share``)."""


@dataclass
class StreamServer:
    token_delay_s: float = 0.01
    prefill_s: float = 0.0
    tokens_per_part: int = 1
    split: bool = False
    slots: int | None = None
    no_capacity: bool = False
    """Answer every request as an inference component at zero copies does (400)."""
    fail_after: int | None = None
    """End every stream with a ModelStreamError after this many tokens."""
    stall_share: float = 0.0
    stall_s: tuple[float, float] = (0.005, 0.03)
    seed: int = 0
    served: list[Served] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.lock = threading.Lock()
        self.sem = threading.Semaphore(self.slots) if self.slots else None
        self.rng = random.Random(self.seed)
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.httpd.daemon_threads = True
        self.httpd.request_queue_size = 256
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def setup(self) -> None:
                super().setup()
                # Small writes must leave at once (no Nagle wait): the test times the first one.
                self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

            def log_message(self, *args: object) -> None:
                pass

            def _reply(self, code: int, body: bytes, kind: str) -> None:
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("x-amzn-ErrorType", kind)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def _chunk(self, data: bytes) -> None:
                self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))

            def do_POST(self) -> None:
                at = time.time()
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                ok = signature_ok(self.headers["Host"], self.path, self.headers, body)
                try:
                    req = json.loads(body)
                    words = len(str(req["inputs"]).split())
                    new = int(req["parameters"]["max_new_tokens"])
                except (ValueError, KeyError, TypeError):
                    words, new = -1, 0
                rec = Served(
                    at,
                    self.path,
                    ok,
                    self.headers.get("X-Amzn-SageMaker-Inference-Component", ""),
                    words,
                    new,
                )
                with server.lock:
                    server.served.append(rec)
                if not ok:
                    return self._reply(403, b'{"message": "bad signature"}', "InvalidSignature")
                if not self.path.endswith("/invocations-response-stream") or words < 0:
                    return self._reply(400, b'{"message": "bad request"}', "ValidationError")
                if server.no_capacity:
                    msg = b'{"message": "Inference Component has no capacity to process this '
                    msg += b'request."}'
                    return self._reply(400, msg, "ValidationError")
                with server.lock:
                    stall = server.rng.random() < server.stall_share
                    pause = server.rng.uniform(*server.stall_s)
                if stall:
                    rec.stall_s = pause
                    time.sleep(pause)
                if server.sem is not None:
                    server.sem.acquire()
                try:
                    self._stream(rec, new)
                finally:
                    if server.sem is not None:
                        server.sem.release()

            def _stream(self, rec: Served, new: int) -> None:
                self.send_response(200)
                self.send_header("Content-Type", CONTENT_TYPE)
                self.send_header("X-Amzn-SageMaker-Content-Type", "application/jsonlines")
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                time.sleep(server.prefill_s)
                line = b'{"token": {"text": " tok"}}\n'
                k = server.tokens_per_part
                for i in range(0, new, k):
                    if server.fail_after is not None and i >= server.fail_after:
                        self._chunk(stream_error("CUDA out of memory"))
                        break
                    if i:
                        time.sleep(server.token_delay_s)
                    data = line * min(k, new - i)
                    if server.split:
                        cut = len(data) // 2 + 3  # mid-line
                        self._chunk(payload_part(data[:cut]) + payload_part(data[cut:]))
                    else:
                        self._chunk(payload_part(data))
                    if i == 0:
                        rec.first_part = time.time()
                self.wfile.write(b"0\r\n\r\n")
                rec.done = time.time()

        return Handler

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
