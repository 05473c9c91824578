"""Time the tokens of one InvokeEndpointWithResponseStream answer as its bytes arrive.

The answer is an event stream (:mod:`tuner.eventstream`) of ``PayloadPart`` messages whose
payloads, joined, are JSON lines, one per token (``{"token": {"text": " tok"}}``, the LMI/TGI
style); a line may be split across parts and a part may carry several lines. TTFT is the time
from sending to the first PayloadPart; each later token is timed when the part that completes its
line arrives, so tokens that arrive in one part are 0 ms apart.

:func:`read_stream` takes any ``read(n)`` that blocks until n bytes or the end of the body (the
load generator's geventhttpclient response and ``http.client`` both behave so) and reads one
message at a time: the 12-byte prelude says how long the message is. Nothing here imports
gevent, locust or boto3, so the locustfile and the calibration threads share it.
"""

from __future__ import annotations

import math
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass

from tuner.eventstream import Decoder, EventStreamError, Message

_PRELUDE_LEN = 12


@dataclass(frozen=True)
class StreamStats:
    """What one streamed answer measured (times in ms from sending; NaN when not reached)."""

    ttft_ms: float
    itl_mean_ms: float
    itl_p99_ms: float
    output_tokens: int
    latency_ms: float
    error: str = ""
    """Empty, or ``model_error`` (a ModelStreamError), ``server_error`` (InternalStreamFailure),
    ``stream_error`` (bytes that are not a valid event stream, or a stream cut short)."""
    message: str = ""


def percentile(values: list[float], q: float) -> float:
    """The q-quantile (0..1) with linear interpolation (numpy's and pandas' default)."""
    if not values:
        return math.nan
    s = sorted(values)
    pos = q * (len(s) - 1)
    lo = int(pos)
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (pos - lo)


class TokenMeter:
    """Collects token arrival times from the messages of one stream."""

    def __init__(self, sent: float) -> None:
        self.sent = sent
        self.first: float | None = None
        self.times: list[float] = []
        self.partial = b""
        self.error = ""
        self.message = ""

    def on_message(self, message: Message, now: float) -> None:
        if message.message_type == "exception":
            kind = message.exception_type
            self.error = "model_error" if kind == "ModelStreamError" else "server_error"
            self.message = f"{kind}: {message.payload[:200].decode(errors='replace')}"
            return
        if message.event_type != "PayloadPart" or not message.payload:
            return
        if self.first is None:
            self.first = now
        data = self.partial + message.payload
        if b"\n" not in data:
            self.partial = data
            return
        lines = data.split(b"\n")
        self.partial = lines.pop()
        complete = sum(1 for line in lines if line.strip())
        self.times.extend([now] * complete)

    def finish(self, now: float) -> StreamStats:
        times = list(self.times)
        if self.partial.strip():  # a last line without its newline is still a token
            times.append(now)
        if self.first is not None and times:
            times[0] = self.first  # the first token's first byte is what TTFT measures
        gaps = [(b - a) * 1000 for a, b in zip(times, times[1:], strict=False)]
        return StreamStats(
            ttft_ms=(self.first - self.sent) * 1000 if self.first is not None else math.nan,
            itl_mean_ms=sum(gaps) / len(gaps) if gaps else math.nan,
            itl_p99_ms=percentile(gaps, 0.99),
            output_tokens=len(times),
            latency_ms=(now - self.sent) * 1000,
            error=self.error,
            message=self.message,
        )


def read_stream(
    read: Callable[[int], bytes], sent: float, clock: Callable[[], float] = time.perf_counter
) -> StreamStats:
    """Read an event-stream body to its end with ``read(n)``; ``sent`` is on ``clock``'s scale."""
    meter, decoder = TokenMeter(sent), Decoder()
    try:
        while True:
            prelude = read(_PRELUDE_LEN)
            if not prelude:
                break
            if len(prelude) < _PRELUDE_LEN:
                raise EventStreamError(f"stream ended inside a message prelude ({len(prelude)} B)")
            decoder.feed(prelude)  # checks the prelude's CRC and length before reading on
            (total,) = struct.unpack_from(">I", prelude)
            messages = decoder.feed(read(total - _PRELUDE_LEN))
            now = clock()
            if not messages and decoder.pending:
                raise EventStreamError(f"stream ended inside a message of {total} B")
            for message in messages:
                meter.on_message(message, now)
    except EventStreamError as e:
        meter.error, meter.message = "stream_error", str(e)
    return meter.finish(clock())
