"""The virtual clock: one real second is ``speed`` virtual seconds.

``virtual = virtual_epoch_s + speed x (real - real_epoch_s)``. The virtual epoch is the real start
time rounded down to a whole minute, so CloudWatch timestamps look recent and the emulator's 60-s
metric periods start on minute boundaries (a query with a whole-minute StartTime lines up with
them). Clients read the clock at ``GET /_tuner/clock``.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from tuner.errors import ValidationError


@dataclass(frozen=True)
class VirtualClock:
    """Maps real time to virtual time; every time in the emulator is virtual epoch seconds."""

    speed: float = 1.0
    real_epoch_s: float = field(default_factory=time.time)
    virtual_epoch_s: float | None = None
    """Virtual time at ``real_epoch_s``; None: ``real_epoch_s`` rounded down to a minute."""
    real_time: Callable[[], float] = field(default=time.time, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not (math.isfinite(self.speed) and self.speed > 0):
            raise ValidationError(f"speed > 0 must hold, got {self.speed:g}")
        if self.virtual_epoch_s is None:
            object.__setattr__(self, "virtual_epoch_s", math.floor(self.real_epoch_s / 60) * 60.0)

    @property
    def v0(self) -> float:
        return float(self.virtual_epoch_s)  # type: ignore[arg-type]  # set in __post_init__

    def now(self) -> float:
        """Virtual epoch seconds now."""
        return self.to_virtual(self.real_time())

    def to_virtual(self, real_s: float) -> float:
        return self.v0 + self.speed * (real_s - self.real_epoch_s)

    def to_real(self, virtual_s: float) -> float:
        return self.real_epoch_s + (virtual_s - self.v0) / self.speed

    def real_duration(self, virtual_duration_s: float) -> float:
        """Real seconds that ``virtual_duration_s`` virtual seconds take."""
        return virtual_duration_s / self.speed

    def elapsed_s(self) -> float:
        """Virtual seconds since the virtual epoch."""
        return self.now() - self.v0

    def datetime_at(self, virtual_s: float) -> datetime:
        return datetime.fromtimestamp(virtual_s, tz=UTC)

    def wait_until(self, virtual_s: float, stop: threading.Event) -> bool:
        """Sleep until virtual time ``virtual_s``; False if ``stop`` was set first."""
        while True:
            remaining = self.to_real(virtual_s) - self.real_time()
            if remaining <= 0:
                return not stop.is_set()
            if stop.wait(min(remaining, 0.5)):
                return False

    def sleep_until(self, virtual_s: float) -> None:
        """Sleep until virtual time ``virtual_s`` (nothing can cut it short)."""
        self.wait_until(virtual_s, threading.Event())

    def to_json(self) -> dict[str, Any]:
        """The ``/_tuner/clock`` document."""
        return {
            "speed": self.speed,
            "real_epoch_s": self.real_epoch_s,
            "virtual_epoch_s": self.v0,
            "virtual_now_s": self.now(),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> VirtualClock:
        """The clock a client reads from ``/_tuner/clock`` (same mapping, local real time)."""
        return cls(
            speed=float(data["speed"]),
            real_epoch_s=float(data["real_epoch_s"]),
            virtual_epoch_s=float(data["virtual_epoch_s"]),
        )
