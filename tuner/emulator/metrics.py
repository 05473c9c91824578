"""Per-10-s metric buckets and the AWS/SageMaker datums published from them.

Requests count in the bucket of their virtual arrival time (Invocations, throttles); latencies and
timeouts in the bucket of their completion. The publisher reads a bucket only after its 10 s have
passed, so no request still writes to it.

InvocationsPerInstance: each request adds 1/N, N the instances in service at that moment [DOC].
N changes only at 10-s boundaries (the controller's step grid), so the autoscaler sets a bucket's
``per_instance`` to invocations / N of its step when it closes the step, exactly as the simulator
computes it, and independent of how late in real time the step is processed.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from tuner.clock import VirtualClock

NAMESPACE = "AWS/SageMaker"
BUCKET_S = 10
"""Resolution of the counters: the high-resolution metric period."""
MINUTE_S = 60


class Bucket:
    """Counters of one 10-s virtual interval."""

    __slots__ = (
        "invocations",
        "per_instance",
        "err4xx",
        "err5xx",
        "lat_n",
        "lat_sum_ms",
        "lat_min_ms",
        "lat_max_ms",
        "max_inflight",
        "max_inflight_instances",
        "no_capacity",
    )

    def __init__(self) -> None:
        self.invocations = 0
        self.per_instance = 0.0
        self.err4xx = 0
        self.err5xx = 0
        self.lat_n = 0
        self.lat_sum_ms = 0.0
        self.lat_min_ms = float("inf")
        self.lat_max_ms = 0.0
        self.max_inflight = 0
        self.max_inflight_instances = 1
        self.no_capacity = 0
        """Requests refused because no copy was in service (inference components)."""

    def add_latency(self, ms: float) -> None:
        self.lat_n += 1
        self.lat_sum_ms += ms
        if ms < self.lat_min_ms:
            self.lat_min_ms = ms
        if ms > self.lat_max_ms:
            self.lat_max_ms = ms


@dataclass(frozen=True)
class PeriodSummary:
    """What one metric period (60 s or 10 s) adds up to."""

    start_v: float
    period_s: int
    invocations: int
    invocations_per_instance: float
    err4xx: int
    err5xx: int
    latency_n: int
    latency_sum_ms: float
    latency_min_ms: float
    latency_max_ms: float
    concurrent_per_model: float
    """Maximum in-flight (serving + queued) requests per instance in service."""
    no_capacity: int = 0


class MetricBuckets:
    """10-s buckets keyed by index since the virtual epoch."""

    def __init__(self, clock: VirtualClock) -> None:
        self._clock = clock
        self._buckets: dict[int, Bucket] = {}

    def index(self, virtual_s: float) -> int:
        return int((virtual_s - self._clock.v0) // BUCKET_S)

    def at(self, virtual_s: float) -> Bucket:
        i = int((virtual_s - self._clock.v0) // BUCKET_S)
        b = self._buckets.get(i)
        if b is None:
            # setdefault is atomic: the loop and the autoscaler threads may both reach here.
            b = self._buckets.setdefault(i, Bucket())
        return b

    def summary(self, start_v: float, period_s: int, inflight_now: float = 0.0) -> PeriodSummary:
        """Sum the buckets of [start_v, start_v + period_s); ``inflight_now`` per instance."""
        first = self.index(start_v)
        parts = [self._buckets.get(i) for i in range(first, first + period_s // BUCKET_S)]
        bs = [b for b in parts if b is not None]
        crpm = max([b.max_inflight / max(1, b.max_inflight_instances) for b in bs] + [inflight_now])
        return PeriodSummary(
            start_v=start_v,
            period_s=period_s,
            invocations=sum(b.invocations for b in bs),
            invocations_per_instance=sum(b.per_instance for b in bs),
            err4xx=sum(b.err4xx for b in bs),
            err5xx=sum(b.err5xx for b in bs),
            latency_n=sum(b.lat_n for b in bs),
            latency_sum_ms=sum(b.lat_sum_ms for b in bs),
            latency_min_ms=min((b.lat_min_ms for b in bs if b.lat_n), default=0.0),
            latency_max_ms=max((b.lat_max_ms for b in bs if b.lat_n), default=0.0),
            concurrent_per_model=crpm,
            no_capacity=sum(b.no_capacity for b in bs),
        )

    def forget_before(self, virtual_s: float) -> None:
        """Drop buckets wholly before ``virtual_s`` (already published)."""
        last = self.index(virtual_s)
        for i in [i for i in list(self._buckets) if i < last]:  # list(): a snapshot
            self._buckets.pop(i, None)


def _datum(
    name: str, when: datetime, dims: list[Mapping[str, str]], unit: str, **value: Any
) -> dict[str, Any]:
    return {"MetricName": name, "Timestamp": when, "Dimensions": dims, "Unit": unit, **value}


def _variant_dims(endpoint: str, variant: str) -> list[Mapping[str, str]]:
    return [
        {"Name": "EndpointName", "Value": endpoint},
        {"Name": "VariantName", "Value": variant},
    ]


def _model_latency(
    s: PeriodSummary, when: datetime, dims: list[Mapping[str, str]]
) -> dict[str, Any]:
    """ModelLatency of a period with requests: its statistics in microseconds."""
    us = 1000.0
    return _datum(
        "ModelLatency",
        when,
        dims,
        "Microseconds",
        StatisticValues={
            "SampleCount": float(s.latency_n),
            "Sum": s.latency_sum_ms * us,
            "Minimum": s.latency_min_ms * us,
            "Maximum": s.latency_max_ms * us,
        },
    )


def _peak_datum(
    name: str, s: PeriodSummary, when: datetime, dims: list[Mapping[str, str]]
) -> dict[str, Any]:
    """A 10-s high-resolution datum of the period's peak concurrency (one sample)."""
    v = float(s.concurrent_per_model)
    return _datum(
        name,
        when,
        dims,
        "None",
        StorageResolution=1,
        StatisticValues={"SampleCount": 1.0, "Sum": v, "Minimum": v, "Maximum": v},
    )


def minute_datums(
    s: PeriodSummary, when: datetime, endpoint: str, variant: str
) -> list[dict[str, Any]]:
    """The 60-s AWS/SageMaker datums; zeros too, as SageMaker emits them for an idle endpoint."""
    dims = _variant_dims(endpoint, variant)
    out = [
        _datum("Invocations", when, dims, "None", Value=float(s.invocations)),
        _datum("InvocationsPerInstance", when, dims, "None", Value=s.invocations_per_instance),
        _datum("Invocation4XXErrors", when, dims, "None", Value=float(s.err4xx)),
        _datum("Invocation5XXErrors", when, dims, "None", Value=float(s.err5xx)),
    ]
    if s.latency_n:
        out.append(_model_latency(s, when, dims))
        # The emulator adds no overhead of its own beyond the queue, which is in ModelLatency.
        out.append(
            _datum(
                "OverheadLatency",
                when,
                dims,
                "Microseconds",
                StatisticValues={
                    "SampleCount": float(s.latency_n),
                    "Sum": 0.0,
                    "Minimum": 0.0,
                    "Maximum": 0.0,
                },
            )
        )
    return out


def concurrency_datum(
    s: PeriodSummary, when: datetime, endpoint: str, variant: str
) -> dict[str, Any]:
    """The 10-s ConcurrentRequestsPerModel datum (high resolution)."""
    return _peak_datum("ConcurrentRequestsPerModel", s, when, _variant_dims(endpoint, variant))


def component_datums(
    s: PeriodSummary, when: datetime, component: str, *, minute: bool
) -> list[dict[str, Any]]:
    """An inference component's datums (dimension InferenceComponentName).

    Every 10 s: ConcurrentRequestsPerCopy (high resolution, its Maximum the peak in-flight per
    copy). Every 60 s (``minute``): InvocationsPerCopy, Invocations, NoCapacityInvocationFailures,
    the error counts and ModelLatency (end to end, microseconds).
    """
    dims: list[Mapping[str, str]] = [{"Name": "InferenceComponentName", "Value": component}]
    if not minute:
        return [_peak_datum("ConcurrentRequestsPerCopy", s, when, dims)]
    out = [
        _datum("InvocationsPerCopy", when, dims, "None", Value=s.invocations_per_instance),
        _datum("Invocations", when, dims, "None", Value=float(s.invocations)),
        _datum("NoCapacityInvocationFailures", when, dims, "None", Value=float(s.no_capacity)),
        _datum("Invocation4XXErrors", when, dims, "None", Value=float(s.err4xx)),
        _datum("Invocation5XXErrors", when, dims, "None", Value=float(s.err5xx)),
    ]
    if s.latency_n:
        out.append(_model_latency(s, when, dims))
    return out
