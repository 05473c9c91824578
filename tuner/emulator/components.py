"""An inference component's copies serving token streams, and the instances that hold them.

:class:`ComponentRuntime` runs on the server's event loop, callback-driven as the variant
endpoint is. Each copy in service runs up to ``max_concurrent_sequences`` sequences; a new
request goes to the copy with the fewest (SageMaker's least-outstanding-requests routing), waits
in a FIFO queue when all are full, and is refused at once when no copy is in service (that
refusal is a ``NoCapacityInvocationFailures``). Token times follow :mod:`tuner.emulator.tokens`.

Pacing in virtual time: every sequence keeps the virtual time its next token is due; each copy
has one timer, set for the earliest due token. When it fires it emits every token due by now
(several in one PayloadPart when the loop ran late), so a late timer never slows a stream down:
token n is due at TTFT + the sum of the ITLs before it, whatever the speed-up.

:class:`InstancePool` is the endpoint's managed instance scaling: instances boot (instance_boot_s)
when copies need room beyond the instances running or booting, up to MaxInstanceCount, and are
released as soon as the copies they held are gone (never below MinInstanceCount).
"""

from __future__ import annotations

import asyncio
import enum
import math
import threading
from collections import deque
from typing import Protocol

from tuner.clock import VirtualClock
from tuner.emulator.metrics import MetricBuckets
from tuner.emulator.tokens import LlmServerSpec


class Refusal(enum.Enum):
    """How a request ended before its first token."""

    NO_CAPACITY = 400
    """No copy in service: ValidationError, counted in NoCapacityInvocationFailures."""
    THROTTLED = 429
    TIMED_OUT = 424


class TokenSink(Protocol):
    """Where a sequence's answer goes (the HTTP stream)."""

    @property
    def closed(self) -> bool:
        """The client went away: the sequence stops and frees its place."""
        ...

    def refuse(self, why: Refusal) -> None: ...

    def tokens(self, n: int) -> None:
        """n more tokens (the first call carries the first token)."""
        ...

    def end(self) -> None: ...


class _Sequence:
    __slots__ = ("prompt", "left", "sink", "arrival_v", "next_v", "timer", "copy", "done")

    def __init__(self, prompt: int, left: int, sink: TokenSink, arrival_v: float) -> None:
        self.prompt = prompt
        self.left = left
        self.sink = sink
        self.arrival_v = arrival_v
        self.next_v = math.inf
        self.timer: asyncio.TimerHandle | None = None
        self.copy: _Copy | None = None
        self.done = False


class _Copy:
    __slots__ = ("seqs", "timer", "timer_v")

    def __init__(self) -> None:
        self.seqs: list[_Sequence] = []
        self.timer: asyncio.TimerHandle | None = None
        self.timer_v = math.inf


class ComponentRuntime:
    """One inference component's copies in service, queue and metric counters (event loop)."""

    def __init__(
        self,
        name: str,
        spec: LlmServerSpec,
        clock: VirtualClock,
        loop: asyncio.AbstractEventLoop,
        *,
        copies: int = 0,
    ) -> None:
        self.name = name
        self.spec = spec
        self.clock = clock
        self.metrics = MetricBuckets(clock)
        self._loop = loop
        self._copies: list[_Copy] = []
        self._draining: list[_Copy] = []
        self._queue: deque[_Sequence] = deque()
        self.queued = 0
        self.active = 0
        self.total_invocations = 0
        self.no_capacity_total = 0
        self.set_in_service(copies)

    @property
    def in_service(self) -> int:
        """Copies serving new requests."""
        return len(self._copies)

    @property
    def inflight(self) -> int:
        return self.active + self.queued

    def set_in_service(self, n: int) -> None:
        """Copies now serving: new ones take queued requests; removed ones finish their streams."""
        n = max(0, int(n))
        while len(self._copies) < n:
            self._copies.append(self._draining.pop() if self._draining else _Copy())
        if len(self._copies) > n:
            self._copies.sort(key=lambda c: len(c.seqs), reverse=True)
            gone = self._copies[n:]
            del self._copies[n:]
            self._draining.extend(c for c in gone if c.seqs)
        self._dispatch()

    def close(self) -> None:
        """The component is deleted: queued requests fail, streams end now."""
        while self._queue:
            seq = self._queue.popleft()
            if not seq.done:
                self.queued -= 1
                self._refuse(seq, Refusal.TIMED_OUT)
        for copy in [*self._copies, *self._draining]:
            if copy.timer is not None:
                copy.timer.cancel()
            for seq in list(copy.seqs):
                self._finish(copy, seq)
        self._copies, self._draining = [], []

    # -- serving ---------------------------------------------------------------------------------

    def invoke(self, prompt_tokens: int, new_tokens: int, sink: TokenSink) -> None:
        """Admit one streaming request; the sink is told exactly once how it ends."""
        now_v = self.clock.now()
        bucket = self.metrics.at(now_v)
        if not self._copies:
            bucket.no_capacity += 1
            bucket.err4xx += 1
            self.no_capacity_total += 1
            sink.refuse(Refusal.NO_CAPACITY)
            return
        self.total_invocations += 1
        bucket.invocations += 1
        seq = _Sequence(prompt_tokens, new_tokens, sink, now_v)
        copy = self._free_copy() if not self.queued else None
        if copy is not None:
            self._start(copy, seq, now_v)
        elif self.queued >= self.spec.queue_cap:
            bucket.err4xx += 1
            sink.refuse(Refusal.THROTTLED)
            return
        else:
            self.queued += 1
            self._queue.append(seq)
            wait_s = self.clock.real_duration(self.spec.timeout_ms / 1000.0)
            seq.timer = self._loop.call_later(wait_s, self._expire, seq)
        if self.inflight > bucket.max_inflight:
            bucket.max_inflight = self.inflight
            bucket.max_inflight_instances = max(1, len(self._copies))

    def _free_copy(self) -> _Copy | None:
        if not self._copies:
            return None
        best = min(self._copies, key=lambda c: len(c.seqs))
        return best if len(best.seqs) < self.spec.max_concurrent_sequences else None

    def _start(self, copy: _Copy, seq: _Sequence, now_v: float) -> None:
        self.active += 1
        seq.copy = copy
        copy.seqs.append(seq)
        seq.next_v = now_v + self.spec.ttft_s(seq.prompt, len(copy.seqs))
        self._arm(copy, now_v)

    def _arm(self, copy: _Copy, now_v: float) -> None:
        if not copy.seqs:
            return
        due = min(s.next_v for s in copy.seqs)
        if copy.timer is not None:
            if copy.timer_v <= due:
                return
            copy.timer.cancel()
        copy.timer_v = due
        delay = max(0.0, self.clock.real_duration(due - now_v))
        copy.timer = self._loop.call_later(delay, self._fire, copy)

    def _fire(self, copy: _Copy) -> None:
        copy.timer = None
        copy.timer_v = math.inf
        now_v = self.clock.now()
        finished = False
        for seq in list(copy.seqs):
            if seq.sink.closed:
                self._finish(copy, seq)
                finished = True
                continue
            n = 0
            while seq.left > 0 and seq.next_v <= now_v:
                n += 1
                seq.left -= 1
                seq.next_v += self.spec.itl_s(len(copy.seqs))
            if n:
                seq.sink.tokens(n)
            if seq.left <= 0:
                self.metrics.at(now_v).add_latency((now_v - seq.arrival_v) * 1000.0)
                self._finish(copy, seq)
                finished = True
        if finished:
            self._dispatch()
        self._arm(copy, now_v)

    def _finish(self, copy: _Copy, seq: _Sequence) -> None:
        seq.done = True
        copy.seqs.remove(seq)
        self.active -= 1
        seq.sink.end()
        if not copy.seqs and copy in self._draining:
            self._draining.remove(copy)
            if copy.timer is not None:
                copy.timer.cancel()
                copy.timer = None

    def _refuse(self, seq: _Sequence, why: Refusal) -> None:
        seq.done = True
        seq.sink.refuse(why)

    def _expire(self, seq: _Sequence) -> None:
        if seq.done or seq.copy is not None:
            return
        self.queued -= 1
        self.metrics.at(self.clock.now()).err5xx += 1
        self._refuse(seq, Refusal.TIMED_OUT)
        q = self._queue  # deadlines are arrival + a constant: expired ones are at the head
        while q and q[0].done:
            q.popleft()

    def _dispatch(self) -> None:
        q = self._queue
        now_v = self.clock.now()
        while q:
            if q[0].done:
                q.popleft()
                continue
            copy = self._free_copy()
            if copy is None:
                return
            seq = q.popleft()
            self.queued -= 1
            if seq.timer is not None:
                seq.timer.cancel()
            if seq.sink.closed:
                seq.done = True
                seq.sink.end()
                continue
            self._start(copy, seq, now_v)


class InstancePool:
    """The endpoint's instances under managed instance scaling (thread-safe).

    Copies are counted per component; ``need`` = ceil(copies / copies_per_instance) clipped to
    [min_instances, max_instances]. More: instances boot now (ready after instance_boot_s);
    fewer: booting ones are cancelled first, then running ones released.
    """

    def __init__(self, spec: LlmServerSpec, clock: VirtualClock, *, running: int = 0) -> None:
        self.spec = spec
        self.clock = clock
        start = clock.now()
        n = min(spec.max_instances, max(spec.min_instances, running))
        self._ready_at: list[float] = [start] * n
        self._copies: dict[str, int] = {}
        self._lock = threading.Lock()

    def settle(self) -> None:
        """Instances booting are running now (the state at start-up)."""
        with self._lock:
            now_v = self.clock.now()
            self._ready_at = [min(r, now_v) for r in self._ready_at]

    def instances(self, now_v: float | None = None) -> tuple[int, int]:
        """(running, booting) instances now."""
        t = self.clock.now() if now_v is None else now_v
        with self._lock:
            running = sum(1 for r in self._ready_at if r <= t)
            return running, len(self._ready_at) - running

    def set_copies(self, component: str, copies: int) -> None:
        """The copies a component wants placed; instances boot or go to hold them."""
        with self._lock:
            self._set_copies(component, copies)

    def _set_copies(self, component: str, copies: int) -> None:
        if copies > 0:
            self._copies[component] = copies
        else:
            self._copies.pop(component, None)
        spec = self.spec
        total = sum(self._copies.values())
        need = -(-total // spec.copies_per_instance)
        need = min(spec.max_instances, max(spec.min_instances, need))
        now_v = self.clock.now()
        if need > len(self._ready_at):
            self._ready_at += [now_v + spec.instance_boot_s] * (need - len(self._ready_at))
        elif need < len(self._ready_at):
            self._ready_at.sort()  # running first: the newest (booting) go first
            del self._ready_at[need:]

    def placeable(self, component: str) -> int:
        """Copies of ``component`` that running instances can hold now."""
        running, _ = self.instances()
        with self._lock:
            others = sum(n for c, n in self._copies.items() if c != component)
        return max(0, running * self.spec.copies_per_instance - others)

    def copy_ready_s(self, component: str) -> float:
        """Virtual seconds until one more copy of ``component`` would serve, placed now."""
        spec = self.spec
        now_v = self.clock.now()
        with self._lock:
            total = sum(self._copies.values())
            slots = sorted(self._ready_at)
        # the next copy goes in slot number ``total`` of the instances in ready order
        i = total // spec.copies_per_instance
        if i < len(slots):
            return max(0.0, slots[i] - now_v) + spec.copy_load_s
        return spec.instance_boot_s + spec.copy_load_s
