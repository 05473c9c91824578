"""What one copy of a generative model sustains: the token-aware capacity file.

The file (contract §3 of issue #16; ``tuner calibrate`` writes it against a streaming endpoint)::

    {"kind": "llm", "instance_type": "ml.g6.2xlarge", "hourly_usd": 1.2224,
     "copies_per_instance": 1, "instance_boot_s": 300, "copy_load_s": 258,
     "max_concurrency_per_copy": 8, "timeout_ms": 60000,
     "prompt_tokens": 512, "output_tokens": 256,
     "ttft_ms": [{"concurrency": 1, "p50": 180, "p99": 260}, ...],
     "itl_ms":  [{"concurrency": 1, "p50": 22,  "p99": 30}, ...]}

Optional: ``min_instances`` / ``max_instances``, the endpoint's managed instance scaling range
(default 0 and unbounded). TTFT and ITL are per copy, functions of the sequences in flight on
that copy, linear between points and flat beyond both ends, measured at the stated mean prompt
and output tokens. A request lasts ``TTFT + output_tokens x ITL`` (p50s: the mean duration of
Little's law). Above ``max_concurrency_per_copy`` requests queue and fail after ``timeout_ms``.

[MODEL] Other token counts (a token trace's means): TTFT scales with the prompt tokens (prefill
dominates it) and the duration with the output tokens; ITL does not change.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from tuner.errors import CapacityError, plain, read_json_file
from tuner.model.capacity import (
    capacity_number,
    check_capacity_keys,
    read_capacity_file,
    write_capacity_file,
)

KIND = "llm"
_REQUIRED = {
    "kind",
    "instance_type",
    "hourly_usd",
    "copies_per_instance",
    "instance_boot_s",
    "copy_load_s",
    "max_concurrency_per_copy",
    "timeout_ms",
    "prompt_tokens",
    "output_tokens",
    "ttft_ms",
    "itl_ms",
}
_OPTIONAL = {"min_instances", "max_instances"}
_KEYS = _REQUIRED | _OPTIONAL
_POINT_KEYS = {"concurrency", "p50", "p99"}
_AT_MOST = {
    "instance_boot_s": (86_400.0, "a day"),
    "copy_load_s": (86_400.0, "a day"),
    "timeout_ms": (3_600_000.0, "an hour"),
    "hourly_usd": (1e6, "a million dollars an hour"),
    "max_concurrency_per_copy": (100_000.0, "100,000 sequences"),
    "copies_per_instance": (1_000.0, "1,000 copies"),
}


def _number(value: Any, where: str, *, positive: bool = False, whole: bool = False) -> float:
    return capacity_number(value, where, _AT_MOST, positive=positive, whole=whole)


@dataclass(frozen=True)
class CurvePoint:
    """Latency (ms) of one copy at ``concurrency`` sequences in flight."""

    concurrency: float
    p50_ms: float
    p99_ms: float


def _curve(raw: Any, where: str) -> tuple[CurvePoint, ...]:
    if not isinstance(raw, list) or not raw:
        raise CapacityError(
            f"{where} must be a non-empty list of {{concurrency, p50, p99}}, got {plain(raw)!r}"
        )
    points: list[CurvePoint] = []
    for i, item in enumerate(raw):
        at = f"{where}[{i}]"
        if isinstance(item, CurvePoint):
            item = {"concurrency": item.concurrency, "p50": item.p50_ms, "p99": item.p99_ms}
        if not isinstance(item, Mapping):
            raise CapacityError(f"{at} must be an object {{concurrency, p50, p99}}, got {item!r}")
        extra, missing = sorted(set(item) - _POINT_KEYS), sorted(_POINT_KEYS - set(item))
        if extra:
            raise CapacityError(f"{at}: unknown key {extra[0]!r} (allowed: concurrency, p50, p99)")
        if missing:
            raise CapacityError(f"{at}.{missing[0]} is required")
        point = CurvePoint(
            _number(item["concurrency"], f"{at}.concurrency"),
            _number(item["p50"], f"{at}.p50", positive=True),
            _number(item["p99"], f"{at}.p99", positive=True),
        )
        if point.p99_ms < point.p50_ms:
            raise CapacityError(
                f"{at}: p50 <= p99 must hold, got {point.p50_ms:g} > {point.p99_ms:g}"
            )
        if points and point.concurrency <= points[-1].concurrency:
            raise CapacityError(
                f"{at}.concurrency must increase along the curve, "
                f"got {point.concurrency:g} after {points[-1].concurrency:g}"
            )
        points.append(point)
    return tuple(points)


@dataclass(frozen=True, kw_only=True)
class LlmCapacity:
    """One model copy's nature: price, placement, load time, concurrency limit, TTFT and ITL."""

    instance_type: str = "ml.g6.2xlarge"
    hourly_usd: float = 1.2224
    copies_per_instance: int = 1
    instance_boot_s: float = 300.0
    """A new instance's launch, before a copy can load on it."""
    copy_load_s: float = 258.0
    """A copy's load on an instance in service (model download, container start)."""
    max_concurrency_per_copy: int = 8
    timeout_ms: float = 60_000.0
    prompt_tokens: float = 512.0
    output_tokens: float = 256.0
    ttft: tuple[CurvePoint, ...]
    itl: tuple[CurvePoint, ...]
    min_instances: int = 0
    max_instances: int | None = None
    _x_table: np.ndarray = field(init=False, repr=False, compare=False)
    _rate_table: np.ndarray = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        if not isinstance(self.instance_type, str) or not self.instance_type:
            raise CapacityError(
                f"instance_type must be a non-empty string, got {self.instance_type!r}"
            )
        for name in ("hourly_usd", "instance_boot_s", "copy_load_s"):
            set_(self, name, _number(getattr(self, name), name))
        for name in ("timeout_ms", "prompt_tokens", "output_tokens"):
            set_(self, name, _number(getattr(self, name), name, positive=True))
        for name in ("copies_per_instance", "max_concurrency_per_copy"):
            set_(self, name, int(_number(getattr(self, name), name, positive=True, whole=True)))
        set_(self, "min_instances", int(_number(self.min_instances, "min_instances", whole=True)))
        if self.max_instances is not None:
            top = int(_number(self.max_instances, "max_instances", positive=True, whole=True))
            if top < self.min_instances:
                raise CapacityError(
                    f"min_instances <= max_instances must hold, got {self.min_instances} > {top}"
                )
            set_(self, "max_instances", top)
        set_(self, "ttft", _curve(list(self.ttft), "ttft_ms"))
        set_(self, "itl", _curve(list(self.itl), "itl_ms"))
        # Little's law per copy: x = rate x D(x), D the mean duration at x in flight. D is linear
        # between the curves' points, D = a + b x, so within one piece rate = x / (a + b x) and
        # x = rate a / (1 - rate b): tabulate the rate at the breakpoints, invert piece by piece.
        limit = float(self.max_concurrency_per_copy)
        inner = [p.concurrency for p in (*self.ttft, *self.itl) if 0 < p.concurrency < limit]
        xs = np.unique(np.array([0.0, *inner, limit]))
        rates = np.maximum.accumulate(xs / self.duration_s_at(xs))
        set_(self, "_x_table", xs)
        set_(self, "_rate_table", rates)

    # -- the file ------------------------------------------------------------------------------

    @classmethod
    def default(cls) -> LlmCapacity:
        """examples/llm-capacity.json: an 8B model on ml.g6.2xlarge (one L4), 258-s copy load."""
        return cls(
            ttft=(CurvePoint(1, 200, 300), CurvePoint(4, 350, 600), CurvePoint(8, 700, 1300)),
            itl=(CurvePoint(1, 55, 65), CurvePoint(4, 60, 75), CurvePoint(8, 70, 95)),
        )

    @classmethod
    def from_dict(cls, data: Any) -> LlmCapacity:
        data = check_capacity_keys(data, _KEYS)
        missing = sorted(_REQUIRED - set(data))
        if missing:
            raise CapacityError(f"{missing[0]} is required in an LLM capacity file")
        if data["kind"] != KIND:
            raise CapacityError(f"kind must be {KIND!r} for an LLM capacity, got {data['kind']!r}")
        kwargs = {k: data[k] for k in _KEYS - {"kind", "ttft_ms", "itl_ms"} if k in data}
        ttft, itl = _curve(data["ttft_ms"], "ttft_ms"), _curve(data["itl_ms"], "itl_ms")
        return cls(ttft=ttft, itl=itl, **kwargs)

    def to_dict(self) -> dict[str, Any]:
        def points(curve: tuple[CurvePoint, ...]) -> list[dict[str, float]]:
            return [{"concurrency": p.concurrency, "p50": p.p50_ms, "p99": p.p99_ms} for p in curve]

        out: dict[str, Any] = {
            "kind": KIND,
            "instance_type": self.instance_type,
            "hourly_usd": self.hourly_usd,
            "copies_per_instance": self.copies_per_instance,
            "instance_boot_s": self.instance_boot_s,
            "copy_load_s": self.copy_load_s,
            "max_concurrency_per_copy": self.max_concurrency_per_copy,
            "timeout_ms": self.timeout_ms,
            "prompt_tokens": self.prompt_tokens,
            "output_tokens": self.output_tokens,
            "ttft_ms": points(self.ttft),
            "itl_ms": points(self.itl),
        }
        if self.min_instances:
            out["min_instances"] = self.min_instances
        if self.max_instances is not None:
            out["max_instances"] = self.max_instances
        return out

    @classmethod
    def load(cls, path: str | Path) -> LlmCapacity:
        """Read and validate an LLM capacity file; errors name the file, the field and the rule."""
        return read_capacity_file(Path(path), cls.from_dict)

    def save(self, path: str | Path) -> Path:
        return write_capacity_file(Path(path), self.to_dict())

    def with_tokens(self, prompt_tokens: float | None, output_tokens: float | None) -> LlmCapacity:
        """The copy serving other mean token counts: TTFT scaled by the prompt ratio."""
        prompt = self.prompt_tokens if prompt_tokens is None else float(prompt_tokens)
        output = self.output_tokens if output_tokens is None else float(output_tokens)
        if (prompt, output) == (self.prompt_tokens, self.output_tokens):
            return self
        _number(prompt, "mean_prompt_tokens", positive=True)
        _number(output, "mean_output_tokens", positive=True)
        f = prompt / self.prompt_tokens
        ttft = tuple(CurvePoint(p.concurrency, p.p50_ms * f, p.p99_ms * f) for p in self.ttft)
        return replace(self, ttft=ttft, prompt_tokens=prompt, output_tokens=output)

    # -- serving -------------------------------------------------------------------------------

    @staticmethod
    def _at(curve: tuple[CurvePoint, ...], x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        c = [p.concurrency for p in curve]
        xs = np.asarray(x, dtype=float)
        return (
            np.interp(xs, c, [p.p50_ms for p in curve]),
            np.interp(xs, c, [p.p99_ms for p in curve]),
        )

    def ttft_ms_at(self, concurrency: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(p50, p99) TTFT at sequences in flight per copy (without queueing)."""
        return self._at(self.ttft, concurrency)

    def itl_ms_at(self, concurrency: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(p50, p99) inter-token latency at sequences in flight per copy."""
        return self._at(self.itl, concurrency)

    def duration_s_at(self, concurrency: np.ndarray) -> np.ndarray:
        """Mean request duration (s): TTFT p50 + (output tokens - 1) x ITL p50.

        The first token ends the TTFT; each later one comes an inter-token gap after the one
        before it, so N tokens take N - 1 gaps (as a streaming client measures ITL)."""
        t50, _ = self.ttft_ms_at(concurrency)
        i50, _ = self.itl_ms_at(concurrency)
        return np.asarray((t50 + self.gaps * i50) / 1000.0)

    @property
    def gaps(self) -> float:
        """Inter-token gaps of a mean request: output tokens - 1 (at least 0)."""
        return max(float(self.output_tokens) - 1.0, 0.0)

    @property
    def max_rps_per_copy(self) -> float:
        """Requests per second one copy completes at its concurrency limit (Little's law)."""
        return float(self._rate_table[-1])

    def concurrency_at(self, rps_per_copy: np.ndarray) -> np.ndarray:
        """Sequences in flight per copy at a served rate per copy (Little's law, <= the limit)."""
        lam = np.clip(np.asarray(rps_per_copy, dtype=float), 0.0, self.max_rps_per_copy)
        xs, rates = self._x_table, self._rate_table
        i = np.clip(np.searchsorted(rates, lam, side="right") - 1, 0, len(xs) - 2)
        x0, x1 = xs[i], xs[i + 1]
        d0, d1 = self.duration_s_at(x0), self.duration_s_at(x1)
        b = (d1 - d0) / (x1 - x0)
        a = d0 - b * x0
        with np.errstate(divide="ignore", invalid="ignore"):
            x = lam * a / (1.0 - lam * b)
        x = np.where(np.isfinite(x), x, x1)
        return np.asarray(np.where(lam >= self.max_rps_per_copy, xs[-1], np.clip(x, x0, x1)))

    @property
    def ttft_p99_at_max_ms(self) -> float:
        """TTFT p99 at the concurrency limit: the default TTFT objective."""
        return float(self.ttft_ms_at(np.array([self.max_concurrency_per_copy]))[1][0])

    @property
    def itl_p99_at_max_ms(self) -> float:
        """ITL p99 at the concurrency limit: the default ITL objective."""
        return float(self.itl_ms_at(np.array([self.max_concurrency_per_copy]))[1][0])

    # -- placement and cost --------------------------------------------------------------------

    def instances_for(self, copies: np.ndarray) -> np.ndarray:
        """Billed instances: ceil(copies / copies_per_instance) within managed instance scaling."""
        n = np.ceil(np.asarray(copies, dtype=float) / self.copies_per_instance - 1e-9)
        top = math.inf if self.max_instances is None else float(self.max_instances)
        return np.asarray(np.clip(n, self.min_instances, top))

    @property
    def max_copies(self) -> float:
        """Copies the endpoint can place (inf without max_instances)."""
        if self.max_instances is None:
            return math.inf
        return float(self.max_instances * self.copies_per_instance)

    def boot_s_for(self, desired: np.ndarray) -> np.ndarray:
        """A scale-out's load time from ``desired`` copies: a copy's load, plus an instance's
        launch when the next copy finds no room on the instances already running.

        [MODEL] Judged on the first copy added: with one copy per instance every scale-out
        launches instances; with several, only one from a full instance does.
        """
        d = np.asarray(desired, dtype=float)
        running = np.maximum(self.instances_for(d), self.min_instances)
        needs_instance = d + 1 > running * self.copies_per_instance
        return np.asarray(self.copy_load_s + np.where(needs_instance, self.instance_boot_s, 0.0))


def is_llm_capacity(path: str | Path) -> bool:
    """Whether a capacity file says ``"kind": "llm"`` (other files are read as before)."""
    data = read_json_file(Path(path), CapacityError, "capacity file")
    return isinstance(data, Mapping) and data.get("kind") == KIND
