"""The emulated endpoint: instances with slots, a bounded FIFO queue, timeouts, metric counters.

Everything here runs on the server's event loop thread and is callback-driven (no task per
request) so one Python thread serves thousands of invocations a second. Other threads change the
instance count only through ``loop.call_soon_threadsafe(endpoint.set_in_service, n)``.
"""

from __future__ import annotations

import asyncio
import enum
import math
from collections import deque
from collections.abc import Callable

from tuner.clock import VirtualClock
from tuner.emulator.metrics import MetricBuckets
from tuner.emulator.service import InstanceModel, ServiceTimes

# Hard cap on queued requests whatever the capacity file says, so memory stays flat under any
# overload (each queued request holds a few hundred bytes plus its connection).
MAX_QUEUE = 20_000
# How often (real seconds) the service-time distribution is re-read for the current load.
_LOAD_REFRESH_S = 0.2
# [MODEL] Starts unused for up to this many virtual seconds may be caught up at once (the slots
# still bound concurrency). The sustained rate stays n x max_rps, as the simulator's per-period
# capacity; without the burst, a few real milliseconds of event-loop hiccup become seconds of
# virtual queueing at high --speed, which no real instance shows.
START_BURST_S = 5.0


class Outcome(enum.Enum):
    """How an invocation ended, and the HTTP answer SageMaker gives for it."""

    OK = 200
    THROTTLED = 429
    """The bounded queue was full: ``ThrottlingException`` (counts in Invocation4XXErrors)."""
    TIMED_OUT = 424
    """Waited past ``timeout_ms``: ``ModelError`` as SageMaker's 60-s invocation timeout (5XX)."""


Respond = Callable[[Outcome, float], None]
"""Called once per invocation with the outcome and the model latency in virtual ms."""


class _Request:
    __slots__ = ("arrival_v", "deadline_v", "respond", "timer", "done")

    def __init__(self, arrival_v: float, deadline_v: float, respond: Respond) -> None:
        self.arrival_v = arrival_v
        self.deadline_v = deadline_v
        self.respond = respond
        self.timer: asyncio.TimerHandle | None = None
        self.done = False


class EmulatedEndpoint:
    """One variant's instances: admit, queue, serve and time out invocations; count metrics."""

    def __init__(
        self,
        name: str,
        variant: str,
        model: InstanceModel,
        clock: VirtualClock,
        loop: asyncio.AbstractEventLoop,
        *,
        instances: int,
        seed: int | None = 0,
        queue_cap: int = MAX_QUEUE,
    ) -> None:
        self.name = name
        self.variant = variant
        self.model = model
        self.clock = clock
        self.metrics = MetricBuckets(clock)
        self._loop = loop
        self._times = ServiceTimes(model, seed)
        self._queue: deque[_Request] = deque()
        self._queue_cap = queue_cap
        self.queued = 0
        self.busy = 0
        self.total_invocations = 0
        self.in_service = 0
        self._capacity = 0
        self._queue_limit = 0
        self._timeout_ms = model.timeout_ms
        self._tokens = 0.0
        self._tokens_v = clock.now()
        self._rate_rps = 0.0
        self._burst = 0.0
        self._pacer: asyncio.TimerHandle | None = None
        self._arrivals_window = 0
        self._window_start = loop.time()
        self.set_in_service(instances)
        self._tokens = self._burst

    # -- instance count (event loop thread) ------------------------------------------------------

    def set_in_service(self, n: int) -> None:
        """Instances now serving; extra slots take queued requests at once."""
        self._refill(self.clock.now())
        self.in_service = max(0, int(n))
        self._capacity = self.in_service * self.model.slots
        self._rate_rps = self.in_service * self.model.max_rps
        self._burst = max(float(self._capacity), self._rate_rps * START_BURST_S)
        self._tokens = min(self._tokens, self._burst)
        self._queue_limit = self.model.queue_limit(self.in_service, self._queue_cap)
        self._dispatch()

    @property
    def inflight(self) -> int:
        return self.busy + self.queued

    # -- serving ---------------------------------------------------------------------------------

    def invoke(self, respond: Respond) -> None:
        """Admit one invocation; ``respond`` is called exactly once, later or now."""
        now_v = self.clock.now()
        self.total_invocations += 1
        bucket = self.metrics.at(now_v)
        bucket.invocations += 1
        self._arrivals_window += 1
        self._maybe_refresh_load()
        req = _Request(now_v, now_v + self._timeout_ms / 1000.0, respond)
        if not self.queued and self.busy < self._capacity and self._take_token(now_v):
            self._start(req, now_v)
        elif self.queued >= self._queue_limit:
            bucket.err4xx += 1
            respond(Outcome.THROTTLED, 0.0)
            return
        else:
            self.queued += 1
            self._queue.append(req)
            wait_real_s = self.clock.real_duration(req.deadline_v - now_v)
            req.timer = self._loop.call_later(wait_real_s, self._expire, req)
            self._pace(now_v)
        inflight = self.busy + self.queued
        if inflight > bucket.max_inflight:
            bucket.max_inflight = inflight
            bucket.max_inflight_instances = self.in_service

    def _start(self, req: _Request, now_v: float) -> None:
        self.busy += 1
        service_ms = self._times.draw_ms()
        left_ms = (req.deadline_v - now_v) * 1000.0
        speed = self.clock.speed
        if service_ms <= left_ms:
            # Latency = queue wait (measured) + the drawn service time; measuring the completion
            # too would add the event loop's real timer delay, magnified by the speed.
            latency_ms = (now_v - req.arrival_v) * 1000.0 + service_ms
            self._loop.call_later(service_ms / 1000.0 / speed, self._complete, req, latency_ms)
        else:
            # The container keeps the slot until it finishes; the caller gets the timeout.
            self._loop.call_later(left_ms / 1000.0 / speed, self._time_out, req)
            self._loop.call_later(service_ms / 1000.0 / speed, self._release)

    def _complete(self, req: _Request, latency_ms: float) -> None:
        self.metrics.at(self.clock.now()).add_latency(latency_ms)
        req.done = True
        req.respond(Outcome.OK, latency_ms)
        self._release()

    def _release(self) -> None:
        self.busy -= 1
        self._dispatch()

    def _time_out(self, req: _Request) -> None:
        if req.done:
            return
        req.done = True
        self.metrics.at(self.clock.now()).err5xx += 1
        req.respond(Outcome.TIMED_OUT, self._timeout_ms)

    def _expire(self, req: _Request) -> None:
        if req.done:
            return
        self.queued -= 1
        self._time_out(req)
        # Deadlines are arrival + a constant, so expired requests sit at the head: drop them.
        q = self._queue
        while q and q[0].done:
            q.popleft()

    def _dispatch(self) -> None:
        q = self._queue
        if not q:
            return
        now_v = self.clock.now()
        while q and self.busy < self._capacity:
            if q[0].done:
                q.popleft()
                continue
            if not self._take_token(now_v):
                self._pace(now_v)
                return
            req = q.popleft()
            self.queued -= 1
            if req.timer is not None:
                req.timer.cancel()
            self._start(req, now_v)

    # -- start rate: n x max_rps per second, burst = the slots -----------------------------------

    def _refill(self, now_v: float) -> None:
        elapsed = now_v - self._tokens_v
        if elapsed > 0:
            self._tokens = min(self._burst, self._tokens + elapsed * self._rate_rps)
            self._tokens_v = now_v

    def _take_token(self, now_v: float) -> bool:
        if self._tokens < 1.0:
            self._refill(now_v)
            if self._tokens < 1.0:
                return False
        self._tokens -= 1.0
        return True

    def _pace(self, now_v: float) -> None:
        """Wake the queue when the next start is allowed (one timer at a time)."""
        if self._pacer is not None or self._rate_rps <= 0 or self.busy >= self._capacity:
            return
        wait_v = max(0.0, (1.0 - self._tokens) / self._rate_rps)
        self._pacer = self._loop.call_later(self.clock.real_duration(wait_v), self._paced)

    def _paced(self) -> None:
        self._pacer = None
        self._dispatch()

    def _maybe_refresh_load(self) -> None:
        now = self._loop.time()
        elapsed = now - self._window_start
        if elapsed < _LOAD_REFRESH_S:
            return
        virtual_s = elapsed * self.clock.speed
        rps = self._arrivals_window / virtual_s / max(1, self.in_service)
        if math.isfinite(rps):
            self._times.set_load(rps)
        self._arrivals_window = 0
        self._window_start = now
