"""Capacity polled during a trial: a thread that samples (virtual time, status, current, desired).

Real AWS publishes no instance- or copy-count metric a trial could read afterwards, so a trial
polls the describe call every ``every_virtual_s`` virtual seconds while its load plays:
DescribeEndpoint for a variant (:class:`VariantPoller`), DescribeInferenceComponent for an
inference component (:class:`CopyPoller`). A failed describe is skipped, not fatal.
"""

from __future__ import annotations

import contextlib
import threading
from dataclasses import dataclass, field
from typing import Self

from tuner.aws import Endpoints
from tuner.clock import VirtualClock
from tuner.errors import TunerError


@dataclass
class Poller:
    """The polling thread; subclasses say what one sample reads: (status, current, desired)."""

    endpoints: Endpoints
    clock: VirtualClock
    every_virtual_s: float
    rows: list[tuple[float, str, int, int]] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def read(self) -> tuple[str, int, int]:
        raise NotImplementedError

    def sample(self) -> None:
        self.rows.append((self.clock.now(), *self.read()))

    def _loop(self) -> None:
        while not self._stop.is_set():
            with contextlib.suppress(TunerError):
                self.sample()
            self._stop.wait(max(0.2, self.clock.real_duration(self.every_virtual_s)))

    def __enter__(self) -> Self:
        name = f"describe-{type(self).__name__.lower()}"
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)


@dataclass
class VariantPoller(Poller):
    """DescribeEndpoint: the variant's status and current/desired instance counts."""

    endpoint: str = ""
    variant: str = "AllTraffic"

    def read(self) -> tuple[str, int, int]:
        state = self.endpoints.describe(self.endpoint)
        counts = state.variant(self.variant)
        return state.status, counts.current, counts.desired


@dataclass
class CopyPoller(Poller):
    """DescribeInferenceComponent: the component's status and current/desired copy counts."""

    component: str = ""

    def read(self) -> tuple[str, int, int]:
        state = self.endpoints.describe_component(self.component)
        return state.status, state.current, state.desired
