"""The ``application/vnd.amazon.eventstream`` framing, both ways, with no dependency.

``InvokeEndpointWithResponseStream`` answers with a stream of binary messages
(AWS's event-stream encoding, as botocore's ``eventstream`` module reads it)::

    prelude   total length (uint32 BE) | headers length (uint32 BE) | CRC32 of those 8 bytes
    headers   name length (uint8) | name (UTF-8) | value type (uint8) | value
    payload   bytes
    trailer   CRC32 of everything before it (uint32 BE)

SageMaker's events: ``:message-type`` ``event`` with ``:event-type`` ``PayloadPart`` carry the
model's bytes as the payload; ``:message-type`` ``exception`` with ``:exception-type``
``ModelStreamError`` (JSON ``{"Message", "ErrorCode"}``) or ``InternalStreamFailure`` end the
stream with an error.

The emulator writes messages with :func:`payload_part` and :func:`stream_error`; the load
generator reads them with :class:`Decoder`, fed whatever bytes the socket gave, so a message split
across reads (or several in one read) is handled.
"""

from __future__ import annotations

import json
import struct
import zlib
from dataclasses import dataclass

from tuner.errors import TunerError

CONTENT_TYPE = "application/vnd.amazon.eventstream"

_PRELUDE = struct.Struct(">II")
_PRELUDE_LEN = 12  # two lengths and the prelude's CRC
_MIN_MESSAGE = 16  # prelude and trailer, no headers, no payload
# AWS caps one message at 16 MiB and its headers at 128 KiB.
MAX_MESSAGE = 16 * 1024 * 1024
MAX_HEADERS = 128 * 1024

HeaderValue = str | bytes | bool | int


class EventStreamError(TunerError):
    """The bytes are not a valid event stream (bad length, CRC or header)."""


@dataclass(frozen=True)
class Message:
    """One decoded message: its headers by name, and its payload."""

    headers: dict[str, HeaderValue]
    payload: bytes

    @property
    def message_type(self) -> str:
        return str(self.headers.get(":message-type", ""))

    @property
    def event_type(self) -> str:
        return str(self.headers.get(":event-type", ""))

    @property
    def exception_type(self) -> str:
        return str(self.headers.get(":exception-type", ""))


def _encode_header(name: str, value: HeaderValue) -> bytes:
    raw_name = name.encode()
    if not 0 < len(raw_name) < 256:
        raise EventStreamError(f"header name must be 1-255 bytes, got {len(raw_name)}")
    head = struct.pack(">B", len(raw_name)) + raw_name
    if isinstance(value, bool):
        return head + struct.pack(">B", 0 if value else 1)
    if isinstance(value, int):
        return head + struct.pack(">Bq", 5, value)
    raw = value.encode() if isinstance(value, str) else value
    if len(raw) > 0xFFFF:
        raise EventStreamError(f"header {name!r} value exceeds 65535 bytes")
    return head + struct.pack(">BH", 7 if isinstance(value, str) else 6, len(raw)) + raw


def encode(headers: dict[str, HeaderValue], payload: bytes) -> bytes:
    """One message in the event-stream framing."""
    raw_headers = b"".join(_encode_header(k, v) for k, v in headers.items())
    total = _MIN_MESSAGE + len(raw_headers) + len(payload)
    if total > MAX_MESSAGE or len(raw_headers) > MAX_HEADERS:
        raise EventStreamError(f"message of {total} bytes exceeds the event-stream limits")
    prelude = _PRELUDE.pack(total, len(raw_headers))
    prelude += struct.pack(">I", zlib.crc32(prelude))
    body = prelude + raw_headers + payload
    return body + struct.pack(">I", zlib.crc32(body))


def payload_part(data: bytes) -> bytes:
    """A ``PayloadPart`` event carrying ``data`` (one chunk of the model's answer)."""
    return encode(
        {
            ":event-type": "PayloadPart",
            ":content-type": "application/octet-stream",
            ":message-type": "event",
        },
        data,
    )


def stream_error(message: str, *, error_code: str = "ModelError", internal: bool = False) -> bytes:
    """A ``ModelStreamError`` (or ``InternalStreamFailure``) exception that ends a stream."""

    if internal:
        kind, body = "InternalStreamFailure", {"Message": message}
    else:
        kind, body = "ModelStreamError", {"Message": message, "ErrorCode": error_code}
    return encode(
        {
            ":exception-type": kind,
            ":content-type": "application/json",
            ":message-type": "exception",
        },
        json.dumps(body).encode(),
    )


def _decode_headers(raw: bytes) -> dict[str, HeaderValue]:
    headers: dict[str, HeaderValue] = {}
    i = 0
    try:
        while i < len(raw):
            n = raw[i]
            name = raw[i + 1 : i + 1 + n].decode()
            i += 1 + n
            kind = raw[i]
            i += 1
            value: HeaderValue
            if kind in (0, 1):
                value = kind == 0
            elif kind in (2, 3, 4, 5):
                size = {2: 1, 3: 2, 4: 4, 5: 8}[kind]
                fmt = {2: ">b", 3: ">h", 4: ">i", 5: ">q"}[kind]
                (value,) = struct.unpack(fmt, raw[i : i + size])
                i += size
            elif kind in (6, 7):
                (size,) = struct.unpack(">H", raw[i : i + 2])
                chunk = raw[i + 2 : i + 2 + size]
                if len(chunk) != size:
                    raise EventStreamError("header value runs past the headers")
                value = chunk.decode() if kind == 7 else bytes(chunk)
                i += 2 + size
            elif kind == 8:
                (value,) = struct.unpack(">q", raw[i : i + 8])
                i += 8
            elif kind == 9:
                value = bytes(raw[i : i + 16])
                i += 16
            else:
                raise EventStreamError(f"unknown header value type {kind}")
            headers[name] = value
    except (IndexError, struct.error, UnicodeDecodeError) as exc:
        raise EventStreamError(f"malformed event-stream headers: {exc}") from None
    if i != len(raw):
        raise EventStreamError("header values run past the headers")
    return headers


class Decoder:
    """Incremental decoder: ``feed`` bytes as they arrive, get the messages completed so far."""

    def __init__(self) -> None:
        self._buf = bytearray()

    @property
    def pending(self) -> int:
        """Bytes held that do not yet make a whole message (0 at a clean end of stream)."""
        return len(self._buf)

    def feed(self, data: bytes) -> list[Message]:
        self._buf += data
        out: list[Message] = []
        while len(self._buf) >= _PRELUDE_LEN:
            total, headers_len = _PRELUDE.unpack_from(self._buf)
            (prelude_crc,) = struct.unpack_from(">I", self._buf, 8)
            if zlib.crc32(self._buf[:8]) != prelude_crc:
                raise EventStreamError("event-stream prelude CRC does not match")
            if total < _MIN_MESSAGE or total > MAX_MESSAGE or headers_len > total - _MIN_MESSAGE:
                raise EventStreamError(f"event-stream message length {total} is not valid")
            if len(self._buf) < total:
                break
            frame = bytes(self._buf[:total])
            del self._buf[:total]
            (crc,) = struct.unpack_from(">I", frame, total - 4)
            if zlib.crc32(frame[:-4]) != crc:
                raise EventStreamError("event-stream message CRC does not match")
            headers = _decode_headers(frame[_PRELUDE_LEN : _PRELUDE_LEN + headers_len])
            out.append(Message(headers, frame[_PRELUDE_LEN + headers_len : -4]))
        return out
