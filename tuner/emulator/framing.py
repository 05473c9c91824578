"""HTTP/1.1 framing shared by the server and the streaming route: the chunked request-body
decoder, chunked (streamed) answers, and SageMaker runtime error answers."""

from __future__ import annotations

import asyncio
import json
import re
from typing import Any, Protocol

from tuner.emulator.control import ACCOUNT_ID, HttpResponse

_TIMEOUT_MESSAGE = (
    'Received server error (0) from primary with message "Your invocation timed out while '
    "waiting for a response from container primary. Review the latency metrics for each "
    'container in Amazon CloudWatch, resolve the issue, and try again."'
)


class StreamOwner(Protocol):
    """The connection a streamed answer is written to (``HttpConnection``)."""

    transport: asyncio.Transport | None

    def answered(self) -> None: ...


def runtime_error(
    status: int, code: str, message: str, request_id: str, **extra: Any
) -> HttpResponse:
    """A SageMaker runtime error answer (botocore reads the code from x-amzn-ErrorType)."""
    body = json.dumps({"message": message, **extra}).encode()
    headers = [
        ("Content-Type", "application/json"),
        ("x-amzn-ErrorType", f"{code}:http://internal.amazon.com/coral/com.amazon.sagemaker/"),
        ("x-amzn-RequestId", request_id),
    ]
    return HttpResponse(status, headers, body)


def timeout_error(endpoint: str, request_id: str) -> HttpResponse:
    """SageMaker's 424 ModelError for an invocation that timed out."""
    return runtime_error(
        424,
        "ModelError",
        _TIMEOUT_MESSAGE,
        request_id,
        OriginalStatusCode=0,
        OriginalMessage="Your invocation timed out while waiting for a response "
        "from container primary.",
        LogStreamArn=f"arn:aws:logs:us-east-1:{ACCOUNT_ID}:log-group:"
        f"/aws/sagemaker/Endpoints/{endpoint}",
    )


class ChunkedWriter:
    """The body of a streamed answer, written as HTTP/1.1 chunks (event loop thread only)."""

    def __init__(self, conn: StreamOwner, head: bytes) -> None:
        self._conn = conn
        self._ended = False
        self._head = head  # sent with the first chunk: one segment, no wait for an ACK

    @property
    def closed(self) -> bool:
        """The client is gone (or the stream ended): nothing more reaches it."""
        t = self._conn.transport
        return self._ended or t is None or t.is_closing()

    def write(self, data: bytes) -> None:
        if not data or self.closed:
            return
        t = self._conn.transport
        assert t is not None
        t.write(b"%s%x\r\n%s\r\n" % (self._head, len(data), data))
        self._head = b""

    def end(self) -> None:
        """The last chunk; the connection takes its next request."""
        if self._ended:
            return
        t = self._conn.transport
        if t is not None and not t.is_closing():
            t.write(self._head + b"0\r\n\r\n")
        self._ended = True
        self._conn.answered()


class BadRequest(Exception):
    """Malformed framing: answered with this status and closed."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


_HEX = re.compile(rb"^[0-9A-Fa-f]{1,16}$")
_MAX_CHUNK_LINE = 4096


class ChunkedBody:
    """An incremental chunked-body decoder: each byte of the buffer is looked at once."""

    def __init__(self, limit: int) -> None:
        self.body = bytearray()
        self._limit = limit
        self._left = -1  # chunk data still to come; 0: its CRLF; -1: a size line next
        self._trailer = False
        self._trailer_bytes = 0

    def feed(self, buf: bytearray) -> bool:
        """Consume what it can from the front of ``buf``; True once the body is complete."""
        pos, n = 0, len(buf)
        try:
            while pos < n:
                if self._trailer:
                    eol = buf.find(b"\r\n", pos)
                    if eol < 0:
                        self._trailer_bytes += n - pos
                        if self._trailer_bytes > _MAX_CHUNK_LINE:
                            raise BadRequest(400, "BadRequest", "chunked trailer too long")
                        return False
                    line_empty = eol == pos
                    pos = eol + 2
                    if line_empty:
                        del buf[:pos]
                        pos = n = 0
                        return True
                elif self._left < 0:
                    eol = buf.find(b"\r\n", pos, pos + _MAX_CHUNK_LINE)
                    if eol < 0:
                        if n - pos >= _MAX_CHUNK_LINE:
                            raise BadRequest(400, "BadRequest", "chunk size line too long")
                        return False
                    size_text = bytes(buf[pos:eol]).split(b";", 1)[0].strip()
                    if not _HEX.match(size_text):
                        raise BadRequest(
                            400, "BadRequest", f"malformed chunk size {size_text[:32]!r}"
                        )
                    size = int(size_text, 16)
                    pos = eol + 2
                    if size == 0:
                        self._trailer = True
                        continue
                    if len(self.body) + size > self._limit:
                        raise BadRequest(
                            413,
                            "RequestEntityTooLarge",
                            f"request body larger than {self._limit} bytes",
                        )
                    self._left = size
                elif self._left > 0:
                    take = min(self._left, n - pos)
                    self.body += buf[pos : pos + take]
                    self._left -= take
                    pos += take
                else:  # the chunk's data is in: its CRLF must follow
                    if n - pos < 2:
                        return False
                    if buf[pos : pos + 2] != b"\r\n":
                        raise BadRequest(400, "BadRequest", "chunk data not followed by CRLF")
                    pos += 2
                    self._left = -1
            return False
        finally:
            if pos:
                del buf[:pos]
