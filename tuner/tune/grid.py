"""The candidate grid: the lists whose product are the policies ``tuner tune`` simulates.

Target values are fractions of what one instance sustains per metric period
(``max_rps_per_instance x 60``); scale-out and scale-in cooldowns; MinCapacity levels from demand
percentiles and MaxCapacity from peak demand. A TOML file may override every list::

    target_fractions = [0.4, 0.5, 0.6]      # or target_values = [480.0, 600.0]
    scale_out_cooldowns_s = [60, 300]
    scale_in_cooldowns_s = [300, 900]
    min_capacities = [1]                    # default: from demand percentiles
    max_capacities = [10]                   # default: from peak demand x peak_headroom
    min_percentiles = [10, 50, 100]
    peak_headroom = 1.5

MinCapacity candidates cover the 10th and 50th percentiles and the peak of per-minute demand at
``max_rps_per_instance`` each: the peak level is the only defence against a spike that is over
before new instances finish booting, and the grid lets the tuner price it.
"""

from __future__ import annotations

import itertools
import math
import tomllib
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np

from tuner.errors import ValidationError
from tuner.policy.policy import ScalingPolicy


@dataclass(frozen=True, kw_only=True)
class Grid:
    """The lists the candidate grid is the product of (None: derived from the inputs)."""

    target_fractions: tuple[float, ...] = tuple(round(0.3 + 0.05 * i, 2) for i in range(13))
    target_values: tuple[float, ...] | None = None
    """Absolute TargetValues (invocations per instance per minute); override the fractions."""
    scale_out_cooldowns_s: tuple[int, ...] = (0, 60, 120, 300)
    scale_in_cooldowns_s: tuple[int, ...] = (300, 600, 900, 1800)
    min_capacities: tuple[int, ...] | None = None
    max_capacities: tuple[int, ...] | None = None
    min_percentiles: tuple[float, ...] = (10.0, 50.0, 100.0)
    """MinCapacity candidates cover these percentiles of per-minute demand (100: the peak)."""
    peak_headroom: float = 1.5
    """MaxCapacity covers peak demand times this factor."""

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, list):
                object.__setattr__(self, f.name, tuple(value))
                value = tuple(value)
            if isinstance(value, tuple) and not value:
                raise ValidationError(f"grid.{f.name} must be a non-empty list")
        if any(not 0 <= q <= 100 for q in self.min_percentiles):
            raise ValidationError(
                f"grid.min_percentiles must be in 0..100, got {list(self.min_percentiles)}"
            )
        if self.peak_headroom < 1:
            raise ValidationError(f"grid.peak_headroom >= 1 must hold, got {self.peak_headroom:g}")
        if any(not 0 < f <= 2 for f in self.target_fractions):
            raise ValidationError(
                f"grid.target_fractions must be in (0, 2], got {list(self.target_fractions)}"
            )

    @classmethod
    def load(cls, path: str | Path) -> Grid:
        """Read a grid TOML; unknown keys and wrong types are errors naming the key."""
        path = Path(path)
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except OSError as e:
            raise ValidationError(f"{path}: cannot read grid file ({e.strerror})") from e
        except tomllib.TOMLDecodeError as e:
            raise ValidationError(f"{path}: malformed TOML: {e}") from e
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValidationError(
                f"{path}: unknown key {unknown[0]!r} (allowed: {', '.join(sorted(known))})"
            )
        for key, value in data.items():
            scalar = key == "peak_headroom"
            ok = (
                isinstance(value, int | float) and not isinstance(value, bool)
                if scalar
                else isinstance(value, list)
                and all(isinstance(v, int | float) and not isinstance(v, bool) for v in value)
            )
            if not ok:
                kind = "a number" if scalar else "a list of numbers"
                raise ValidationError(f"{path}: {key} must be {kind}, got {value!r}")
        try:
            return cls(**data)
        except ValidationError as e:
            raise ValidationError(f"{path}: {e}") from e

    def to_dict(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    def capacity_bounds(
        self, profiles: Sequence[Any], max_rps_per_instance: float
    ) -> tuple[tuple[int, ...], int]:
        """(MinCapacity levels, MaxCapacity) from per-minute demand over all profiles."""
        per_minute = np.concatenate([_per_minute_rps(p) for p in profiles])
        levels = sorted(
            {
                max(1, math.ceil(float(np.percentile(per_minute, q)) / max_rps_per_instance - 1e-9))
                for q in self.min_percentiles
            }
        )
        peak = float(per_minute.max()) * self.peak_headroom / max_rps_per_instance
        return tuple(levels), max(levels[-1], math.ceil(peak - 1e-9))

    def candidates(
        self, profiles: Sequence[Any], max_rps_per_instance: float
    ) -> list[ScalingPolicy]:
        """Every policy of the grid, in a stable order."""
        levels, high = self.capacity_bounds(profiles, max_rps_per_instance)
        targets = self.target_values or tuple(
            round(max_rps_per_instance * 60 * f, 3) for f in self.target_fractions
        )
        out: dict[str, ScalingPolicy] = {}
        for target, mn, mx, sout, sin in itertools.product(
            targets,
            self.min_capacities or levels,
            self.max_capacities or (high,),
            self.scale_out_cooldowns_s,
            self.scale_in_cooldowns_s,
        ):
            if mn > mx:
                continue
            policy = ScalingPolicy(
                min_capacity=int(mn),
                max_capacity=int(mx),
                target_value=float(target),
                scale_out_cooldown_s=int(sout),
                scale_in_cooldown_s=int(sin),
            )
            out.setdefault(policy.label, policy)
        if not out:
            raise ValidationError("grid: every MinCapacity exceeds every MaxCapacity")
        return list(out.values())


def _per_minute_rps(profile: Any) -> np.ndarray:
    """Mean demand of each minute of the profile (sampled every 10 s)."""
    minutes = max(1, math.ceil(profile.duration_s / 60))
    t = np.arange(minutes * 6, dtype=float) * 10.0 + 5.0
    rates = np.asarray(profile.rate_at(np.minimum(t, profile.duration_s)), dtype=float)
    return np.asarray(rates.reshape(minutes, 6).mean(axis=1), dtype=float)
