"""What one instance sustains: the capacity file, latency by load, and the per-period serving model.

The capacity file (``capacity.json``) is what calibration measured::

    {"instance_type": "ml.m5.xlarge", "hourly_usd": 0.23, "boot_s": 300,
     "max_rps_per_instance": 20.0, "timeout_ms": 60000,
     "latency_ms": [{"rps": 5, "p50": 40, "p99": 80}, {"rps": 20, "p50": 60, "p99": 150}]}

Serving model, one metric period of ``period_s`` at a time, vectorised over candidates:
the ``n`` instances in service serve at most ``n x max_rps_per_instance`` requests per second;
what they cannot serve waits in a queue, oldest first; a request that would wait longer than
``timeout_ms`` fails (SageMaker's invocation timeout), so the queue never holds more than
``n x max_rps_per_instance x timeout`` requests. With no instance in service every request fails.
Latency is the curve's latency at the served load per instance, plus the time spent queued.
"""

from __future__ import annotations

import json
import math
import numbers
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from tuner.errors import CapacityError, plain, read_json_file

_KEYS = {
    "instance_type",
    "hourly_usd",
    "boot_s",
    "max_rps_per_instance",
    "timeout_ms",
    "latency_ms",
    "metric_lag_s",
}
_POINT_KEYS = {"rps", "p50", "p99"}
T = TypeVar("T")
# z of the 99th percentile of a standard normal: the latency of a period is taken as log-normal
# through its p50 and p99 to estimate the share of requests slower than an objective.
_Z99 = 2.3263478740408408


@dataclass(frozen=True)
class LatencyPoint:
    """Measured latency of one instance at one load (requests per second per instance)."""

    rps: float
    p50_ms: float
    p99_ms: float


# Upper bounds: what an instance can mean. A day to boot, an hour's timeout (SageMaker's
# asynchronous limit; real-time invocations time out at 60 s), a million requests a second.
_AT_MOST = {
    "boot_s": (86_400.0, "a day"),
    "timeout_ms": (3_600_000.0, "an hour"),
    "max_rps_per_instance": (1e6, "a million requests a second"),
    "hourly_usd": (1e6, "a million dollars an hour"),
}


def capacity_number(
    value: Any,
    where: str,
    at_most: Mapping[str, tuple[float, str]],
    *,
    positive: bool = False,
    whole: bool = False,
) -> float:
    """A capacity file's number, checked: finite, >= 0 (> 0 if ``positive``), whole if asked,
    and at most ``at_most[where]`` (the bound and its words) when the field has one."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise CapacityError(f"{where} must be a number, got {plain(value)!r}")
    number = float(value)
    if not math.isfinite(number) or number < 0 or (positive and number == 0):
        rule = "> 0" if positive else ">= 0"
        raise CapacityError(f"{where} {rule} must hold, got {number:g}")
    if whole and number != int(number):
        raise CapacityError(f"{where} must be a whole number, got {number:g}")
    top, words = at_most.get(where, (math.inf, ""))
    if number > top:
        raise CapacityError(f"{where} <= {top:g} ({words}) must hold, got {number:g}")
    return number


def _number(value: Any, where: str, *, positive: bool = False) -> float:
    return capacity_number(value, where, _AT_MOST, positive=positive)


def check_capacity_keys(data: Any, allowed: set[str]) -> Mapping[str, Any]:
    """``data`` as a JSON object of capacity keys, or the CapacityError naming the first
    unknown key."""
    if not isinstance(data, Mapping):
        raise CapacityError(f"capacity must be a JSON object, got {type(data).__name__}")
    unknown = sorted(set(data) - allowed)
    if unknown:
        raise CapacityError(f"unknown key {unknown[0]!r} (allowed: {', '.join(sorted(allowed))})")
    return data


def read_capacity_file(path: Path, from_dict: Callable[[Any], T]) -> T:
    """Read and validate a capacity file; errors name the file, the field and the rule."""
    data = read_json_file(path, CapacityError, "capacity file")
    try:
        return from_dict(data)
    except CapacityError as e:
        raise CapacityError(f"{path}: {e}") from e


def write_capacity_file(path: Path, data: Mapping[str, Any]) -> Path:
    """Write a capacity file (indented JSON and a final newline)."""
    path.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    return path


@dataclass(frozen=True, kw_only=True)
class Capacity:
    """An instance type's nature: price, boot time, sustainable rate and latency curve."""

    instance_type: str = "ml.m5.xlarge"
    hourly_usd: float = 0.23
    """On-demand price of one instance-hour."""
    boot_s: float = 300
    """Time from a scale-out decision until the new instances serve."""
    max_rps_per_instance: float = 20.0
    """Rate one instance sustains within the latency objective; above it requests queue."""
    timeout_ms: float = 60000
    """A request still queued after this long fails (SageMaker's invocation timeout)."""
    latency: tuple[LatencyPoint, ...]
    """Latency by load per instance, sorted by rps, at least one point."""
    metric_lag_s: float | None = None
    """CloudWatch delay of each datapoint as ``tuner backtest`` fitted it; None: the default."""

    def __post_init__(self) -> None:
        if not isinstance(self.instance_type, str) or not self.instance_type:
            raise CapacityError(
                f"instance_type must be a non-empty string, got {self.instance_type!r}"
            )
        for name in ("hourly_usd", "boot_s"):
            object.__setattr__(self, name, _number(getattr(self, name), name))
        if self.metric_lag_s is not None:
            object.__setattr__(self, "metric_lag_s", _number(self.metric_lag_s, "metric_lag_s"))
        for name in ("max_rps_per_instance", "timeout_ms"):
            object.__setattr__(self, name, _number(getattr(self, name), name, positive=True))
        points = tuple(self.latency)
        if not points:
            raise CapacityError("latency_ms must hold at least one point, got none")
        for i, p in enumerate(points):
            if not isinstance(p, LatencyPoint):
                raise CapacityError(f"latency_ms[{i}] must be a LatencyPoint, got {p!r}")
            _number(p.rps, f"latency_ms[{i}].rps")
            _number(p.p50_ms, f"latency_ms[{i}].p50", positive=True)
            _number(p.p99_ms, f"latency_ms[{i}].p99", positive=True)
            if p.p99_ms < p.p50_ms:
                raise CapacityError(
                    f"latency_ms[{i}]: p50 <= p99 must hold, got {p.p50_ms:g} > {p.p99_ms:g}"
                )
            if i and p.rps <= points[i - 1].rps:
                raise CapacityError(
                    f"latency_ms[{i}].rps must increase along the curve, "
                    f"got {p.rps:g} after {points[i - 1].rps:g}"
                )
        object.__setattr__(self, "latency", points)

    # -- the capacity file ---------------------------------------------------------------------

    @classmethod
    def default(cls) -> Capacity:
        """The example of DESIGN.md: ml.m5.xlarge, 20 rps per instance, 5-minute boot."""
        return cls(latency=(LatencyPoint(5, 40, 80), LatencyPoint(20, 60, 150)))

    @classmethod
    def from_dict(cls, data: Any) -> Capacity:
        data = check_capacity_keys(data, _KEYS)
        if "latency_ms" not in data:
            raise CapacityError("latency_ms is required: a list of {rps, p50, p99} points")
        raw = data["latency_ms"]
        if not isinstance(raw, list):
            raise CapacityError(f"latency_ms must be a list of {{rps, p50, p99}}, got {raw!r}")
        points = []
        for i, item in enumerate(raw):
            where = f"latency_ms[{i}]"
            if not isinstance(item, Mapping):
                raise CapacityError(f"{where} must be an object {{rps, p50, p99}}, got {item!r}")
            extra = sorted(set(item) - _POINT_KEYS)
            missing = sorted(_POINT_KEYS - set(item))
            if extra:
                raise CapacityError(f"{where}: unknown key {extra[0]!r} (allowed: p50, p99, rps)")
            if missing:
                raise CapacityError(f"{where}.{missing[0]} is required")
            points.append(
                LatencyPoint(
                    _number(item["rps"], f"{where}.rps"),
                    _number(item["p50"], f"{where}.p50", positive=True),
                    _number(item["p99"], f"{where}.p99", positive=True),
                )
            )
        kwargs = {k: data[k] for k in _KEYS - {"latency_ms"} if k in data}
        return cls(latency=tuple(points), **kwargs)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "instance_type": self.instance_type,
            "hourly_usd": self.hourly_usd,
            "boot_s": self.boot_s,
            "max_rps_per_instance": self.max_rps_per_instance,
            "timeout_ms": self.timeout_ms,
            "latency_ms": [{"rps": p.rps, "p50": p.p50_ms, "p99": p.p99_ms} for p in self.latency],
        }
        if self.metric_lag_s is not None:
            out["metric_lag_s"] = self.metric_lag_s
        return out

    @classmethod
    def load(cls, path: str | Path) -> Capacity:
        """Read and validate a capacity file; errors name the file, the field and the rule."""
        return read_capacity_file(Path(path), cls.from_dict)

    def save(self, path: str | Path) -> Path:
        return write_capacity_file(Path(path), self.to_dict())

    # -- latency -------------------------------------------------------------------------------

    def latency_ms_at(self, rps_per_instance: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(p50, p99) at a load per instance: linear between points, flat beyond both ends.

        Beyond the last point the curve stays flat: overload is modelled by the queue, not here.
        """
        x = np.asarray(rps_per_instance, dtype=float)
        rps = [p.rps for p in self.latency]
        p50 = np.interp(x, rps, [p.p50_ms for p in self.latency])
        p99 = np.interp(x, rps, [p.p99_ms for p in self.latency])
        return p50, p99

    @property
    def p99_at_max_ms(self) -> float:
        """p99 at max_rps_per_instance: the default latency objective of the simulator."""
        return float(self.latency_ms_at(np.array([self.max_rps_per_instance]))[1][0])


@dataclass(frozen=True)
class PeriodServing:
    """What happened in one period, per candidate (arrays of the same shape)."""

    served: np.ndarray
    """Requests completed in the period."""
    failed: np.ndarray
    """Requests that waited past the timeout (or met no instance) and failed."""
    queue_end: np.ndarray
    """Requests still queued at the end, carried into the next period."""
    p50_ms: np.ndarray
    p99_ms: np.ndarray
    """Latency of the requests served (NaN when none was)."""
    concurrency_per_instance: np.ndarray
    """In-flight requests per instance in service, peak of the period (queued ones included)."""


def serve_period(
    capacity: Capacity,
    arrivals: np.ndarray,
    in_service: np.ndarray,
    queue_start: np.ndarray,
    period_s: float,
    *,
    with_concurrency: bool = True,
) -> PeriodServing:
    """Serve one period: arrivals plus the carried queue meet ``in_service`` instances.

    ``with_concurrency=False`` skips the concurrency estimate (NaN), for callers without use.
    """
    arrivals = np.asarray(arrivals, dtype=float)
    n = np.asarray(in_service, dtype=float)
    queue_start = np.asarray(queue_start, dtype=float)
    rate = n * capacity.max_rps_per_instance
    offered = queue_start + arrivals
    served = np.minimum(offered, rate * period_s)
    backlog = offered - served
    queue_cap = rate * (capacity.timeout_ms / 1000.0)
    failed = np.maximum(backlog - queue_cap, 0.0)
    queue_end = backlog - failed
    with np.errstate(divide="ignore", invalid="ignore"):
        load = np.where(n > 0, served / (period_s * np.maximum(n, 1)), 0.0)
        # Little's law on the queue: a request queued behind Q others waits Q / rate seconds.
        wait_mean_ms = np.where(rate > 0, 500.0 * (queue_start + queue_end) / rate, 0.0)
        wait_peak_ms = np.where(rate > 0, 1000.0 * np.maximum(queue_start, queue_end) / rate, 0.0)
    p50c, p99c = capacity.latency_ms_at(load)
    p50 = np.minimum(p50c + wait_mean_ms, capacity.timeout_ms)
    p99 = np.minimum(p99c + wait_peak_ms, capacity.timeout_ms)
    none = served <= 0
    p50 = np.where(none, np.nan, p50)
    p99 = np.where(none, np.nan, p99)
    if with_concurrency:
        concurrency = concurrency_per_instance(capacity, load, queue_start, queue_end, n)
    else:
        concurrency = np.full(np.shape(served), np.nan)
    return PeriodServing(served, failed, queue_end, p50, p99, concurrency)


def concurrency_per_instance(
    capacity: Capacity,
    load_rps_per_instance: np.ndarray,
    queue_start: np.ndarray,
    queue_end: np.ndarray,
    in_service: np.ndarray,
) -> np.ndarray:
    """Peak in-flight requests per instance: load x median latency (Little) plus the peak queue.

    With no instance in service the whole queue counts against one, so the metric stays high.
    """
    p50c, _ = capacity.latency_ms_at(load_rps_per_instance)
    peak_queue = np.maximum(queue_start, queue_end)
    return np.asarray(
        load_rps_per_instance * p50c / 1000.0 + peak_queue / np.maximum(in_service, 1)
    )


def _norm_sf(z: np.ndarray) -> np.ndarray:
    """Upper tail of the standard normal (Abramowitz-Stegun 7.1.26, error < 1.5e-7)."""
    x = np.abs(z) / math.sqrt(2.0)
    t = 1.0 / (1.0 + 0.3275911 * x)
    poly = t * (
        0.254829592 + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027 + t * 1.061405429)))
    )
    half_erfc = 0.5 * poly * np.exp(-x * x)
    return np.asarray(np.where(z >= 0, half_erfc, 1.0 - half_erfc))


def slow_share(p50_ms: np.ndarray, p99_ms: np.ndarray, objective_ms: float) -> np.ndarray:
    """Share of a period's requests slower than ``objective_ms``, latency log-normal via p50/p99."""
    p50 = np.maximum(np.nan_to_num(np.asarray(p50_ms, dtype=float), nan=1.0), 1e-9)
    p99 = np.maximum(np.nan_to_num(np.asarray(p99_ms, dtype=float), nan=1.0), p50)
    sigma = np.log(p99 / p50) / _Z99
    with np.errstate(divide="ignore", invalid="ignore"):
        z = (math.log(objective_ms) - np.log(p50)) / sigma
    # A degenerate curve (p99 == p50) is a step at p50.
    z = np.where(sigma > 1e-12, z, np.where(p50 > objective_ms, -np.inf, np.inf))
    return _norm_sf(z)
