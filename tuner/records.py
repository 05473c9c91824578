"""On-disk record formats that the locustfile and the package both speak.

The locustfile runs under Locust's gevent and imports only light modules of the package; this
module imports nothing at all, so both sides share one definition.
"""

from __future__ import annotations

REQUEST_COLUMNS = (
    "seq",
    "scheduled_s",
    "sent_epoch_s",
    "latency_ms",
    "status",
    "error",
    "worker",
    "ttft_ms",
    "itl_mean_ms",
    "itl_p99_ms",
    "prompt_tokens",
    "output_tokens",
)
"""``requests.csv``: one row per request the load generator sent (or refused to send).

seq: the request's index in the profile's arrivals; scheduled_s: its arrival time in virtual
profile seconds; sent_epoch_s: when it left (real epoch seconds); latency_ms: real milliseconds
to the answer; status: the HTTP status (0 for none); error: empty, or the error kind; worker:
which Locust process sent it.

Streaming requests (InvokeEndpointWithResponseStream) also fill ttft_ms: real milliseconds from
sending to the first PayloadPart; itl_mean_ms / itl_p99_ms: mean and 99th percentile of the gaps
between consecutive tokens (tokens that arrive in one part are 0 ms apart); prompt_tokens: the
words of the prompt sent; output_tokens: the token lines received. Empty for other requests;
latency_ms stays the end-to-end time (to the end of the stream)."""

STREAM_COLUMNS = REQUEST_COLUMNS[7:]
"""The streaming columns of ``requests.csv`` (empty for non-streaming requests)."""
