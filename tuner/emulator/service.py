"""What one emulated instance is, derived from the capacity file.

The same serving model as the simulator's (``tuner.model.capacity``), played request by request:
- an instance starts at most ``max_rps_per_instance`` requests per second (a token bucket, burst
  5 virtual seconds of starts and at least ``slots``: see ``endpoint.START_BURST_S``), so n
  instances saturate at exactly n x max_rps, as in the simulator;
- each request holds one of ``slots`` concurrent slots for a service time drawn from a lognormal
  whose median and 99th percentile are the curve's p50/p99 at the current load per instance;
- ``slots`` comes from Little's law, concurrency = rate x mean service time, at max_rps with
  headroom (``UTILIZATION_AT_MAX``) so the slots, not the start rate, rarely bind;
- what cannot start waits in a FIFO queue bounded by what can still be served within
  ``timeout_ms``; beyond it requests are refused (throttled); a request still unanswered after
  ``timeout_ms`` fails as SageMaker's invocation timeout does.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

import numpy as np

from tuner.errors import CapacityError
from tuner.model.capacity import Capacity

# [MODEL] Utilisation of the slots at max_rps_per_instance: headroom so the start rate binds first.
UTILIZATION_AT_MAX = 0.8
# z-score of the 99th percentile of a standard normal distribution.
_Z99 = 2.3263478740408408


def curve_ms(capacity: Capacity, rps_per_instance: float) -> tuple[float, float]:
    """(p50, p99) of the capacity curve at this load per instance."""
    p50, p99 = capacity.latency_ms_at(np.asarray(rps_per_instance, dtype=float))
    return float(p50), float(p99)


def lognormal_params(p50_ms: float, p99_ms: float) -> tuple[float, float]:
    """(mu, sigma) of the lognormal with this median and 99th percentile, in ms."""
    if not (p50_ms > 0 and p99_ms >= p50_ms):
        raise CapacityError(
            f"0 < p50 <= p99 must hold for latency, got p50={p50_ms:g} p99={p99_ms:g}"
        )
    return math.log(p50_ms), math.log(p99_ms / p50_ms) / _Z99


def mean_ms(p50_ms: float, p99_ms: float) -> float:
    """Mean of the lognormal with this median and 99th percentile."""
    mu, sigma = lognormal_params(p50_ms, p99_ms)
    return math.exp(mu + sigma * sigma / 2)


@dataclass(frozen=True)
class InstanceModel:
    """One instance: slots, service-time distribution by load, timeout."""

    slots: int
    max_rps: float
    timeout_ms: float
    boot_s: float
    capacity: Capacity
    """The Capacity it was derived from (for its latency curve)."""

    @classmethod
    def from_capacity(cls, capacity: Capacity) -> InstanceModel:
        """Slots such that one instance sustains max_rps_per_instance within its latency curve."""
        max_rps = float(capacity.max_rps_per_instance)
        if not max_rps > 0:
            raise CapacityError(f"max_rps_per_instance > 0 must hold, got {max_rps:g}")
        p50, p99 = curve_ms(capacity, max_rps)
        slots = max(1, math.ceil(max_rps * mean_ms(p50, p99) / 1000.0 / UTILIZATION_AT_MAX))
        return cls(
            slots=slots,
            max_rps=max_rps,
            timeout_ms=float(capacity.timeout_ms),
            boot_s=float(capacity.boot_s),
            capacity=capacity,
        )

    def service_params(self, rps_per_instance: float) -> tuple[float, float]:
        """Lognormal (mu, sigma) of the service time in ms at this load per instance."""
        p50, p99 = curve_ms(self.capacity, max(0.0, rps_per_instance))
        return lognormal_params(p50, p99)

    def queue_limit(self, instances: int, cap: int) -> int:
        """Queued requests beyond which new ones are refused: what can still be served in time.

        The last admitted request starts after queue / (n x max_rps) seconds; bounding that by
        ``timeout - p99 at max_rps`` lets it finish before its deadline, so an overloaded endpoint
        keeps serving n x max_rps (as the simulator's queue does) instead of starting requests
        that time out anyway.
        """
        _, p99 = curve_ms(self.capacity, self.max_rps)
        per_instance = self.max_rps * max(0.0, self.timeout_ms - p99) / 1000.0
        return max(self.slots, min(cap, math.floor(max(1, instances) * per_instance)))


class ServiceTimes:
    """Draws service times (virtual ms) from the current load's lognormal; seeded."""

    def __init__(self, model: InstanceModel, seed: int | None) -> None:
        self._model = model
        self._rng = random.Random(seed)
        self._mu, self._sigma = model.service_params(0.0)

    def set_load(self, rps_per_instance: float) -> None:
        """Re-read the latency curve for this load (a few times a second, not per request)."""
        self._mu, self._sigma = self._model.service_params(rps_per_instance)

    def draw_ms(self) -> float:
        return self._rng.lognormvariate(self._mu, self._sigma)
