"""Event-stream framing: our encoder read back by botocore and by our decoder, split anywhere."""

from __future__ import annotations

import json

import pytest
from botocore.eventstream import EventStreamBuffer

from tuner.eventstream import Decoder, EventStreamError, encode, payload_part, stream_error


def test_botocore_reads_our_payload_parts() -> None:
    buf = EventStreamBuffer()
    buf.add_data(payload_part(b'{"token": "Hello"}') + payload_part(b" world"))
    messages = list(buf)
    assert [m.payload for m in messages] == [b'{"token": "Hello"}', b" world"]
    assert messages[0].headers[":event-type"] == "PayloadPart"
    assert messages[0].headers[":message-type"] == "event"


def test_botocore_reads_our_stream_error() -> None:
    buf = EventStreamBuffer()
    buf.add_data(stream_error("copy unloaded", error_code="ModelError"))
    (message,) = list(buf)
    assert message.headers[":exception-type"] == "ModelStreamError"
    assert json.loads(message.payload) == {"Message": "copy unloaded", "ErrorCode": "ModelError"}


@pytest.mark.parametrize("chunk", [1, 3, 7, 16, 1000])
def test_decoder_reassembles_messages_split_at_any_byte(chunk: int) -> None:
    wire = b"".join(payload_part(f"tok{i}".encode()) for i in range(5)) + stream_error("x")
    decoder = Decoder()
    got = []
    for i in range(0, len(wire), chunk):
        got += decoder.feed(wire[i : i + chunk])
    assert [m.payload for m in got[:5]] == [f"tok{i}".encode() for i in range(5)]
    assert got[5].message_type == "exception" and got[5].exception_type == "ModelStreamError"
    assert decoder.pending == 0


def test_decoder_reads_every_header_type_encoded() -> None:
    raw = encode({"s": "text", "b": b"\x00\x01", "t": True, "f": False, "n": -5}, b"p")
    (message,) = Decoder().feed(raw)
    assert message.headers == {"s": "text", "b": b"\x00\x01", "t": True, "f": False, "n": -5}


def test_decoder_rejects_a_corrupted_message() -> None:
    raw = bytearray(payload_part(b"hello"))
    raw[-6] ^= 0xFF  # a payload byte
    with pytest.raises(EventStreamError, match="CRC"):
        Decoder().feed(bytes(raw))
    bad_prelude = bytearray(payload_part(b"hello"))
    bad_prelude[2] ^= 0x01
    with pytest.raises(EventStreamError, match="prelude CRC"):
        Decoder().feed(bytes(bad_prelude))
