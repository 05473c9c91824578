"""On-disk record formats that the locustfile and the package both speak.

The locustfile runs under Locust's gevent and imports only light modules of the package; this
module imports nothing at all, so both sides share one definition.
"""

from __future__ import annotations

REQUEST_COLUMNS = ("seq", "scheduled_s", "sent_epoch_s", "latency_ms", "status", "error", "worker")
"""``requests.csv``: one row per request the load generator sent (or refused to send).

seq: the request's index in the profile's arrivals; scheduled_s: its arrival time in virtual
profile seconds; sent_epoch_s: when it left (real epoch seconds); latency_ms: real milliseconds
to the answer; status: the HTTP status (0 for none); error: empty, or the error kind; worker:
which Locust process sent it."""
