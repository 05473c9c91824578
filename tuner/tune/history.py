"""A history as per-minute demand, and its walk-forward split into older and newer windows.

A *history* is a profile at least two days long (a replay of what the endpoint served): the
tuner can then tune on its older part and validate on its newest window, as an engineer who
applies the result to the weeks that follow would want. Shorter or synthetic profiles (the
ready ones, the demo's) are scenarios, not histories: nothing comes "after" them to hold out.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from tuner.errors import ValidationError
from tuner.profiles.profile import TrafficProfile

MINUTE_S = 60.0
DAY_MIN = 1440
MIN_HISTORY_DAYS = 2
MAX_FOLDS = 3
"""Walk-forward folds at most: each one costs a calibration; three show a trend, not a fluke."""


@dataclass(frozen=True, eq=False)
class DemandProfile:
    """A profile given as mean requests per second of each minute (a window, a scenario)."""

    name: str
    rates_rps: np.ndarray = field(repr=False)
    start_epoch_s: float | None = None
    """The instant of minute 0 (scheduled actions run on this clock); None: the default start."""

    @property
    def duration_s(self) -> float:
        return float(len(self.rates_rps)) * MINUTE_S

    @property
    def peak_rps(self) -> float:
        return float(self.rates_rps.max(initial=0.0))

    def counts(self, period_s: float, *, seed: int | None = None) -> np.ndarray:
        """Requests per period; a minute's requests spread evenly over its 10-s periods."""
        per = MINUTE_S / period_s
        if period_s <= 0 or abs(per - round(per)) > 1e-9:
            raise ValidationError(f"period_s must divide 60 s, got {period_s:g}")
        return np.repeat(self.rates_rps * period_s, int(round(per)))

    def rate_at(self, t_s: float | np.ndarray) -> np.ndarray:
        t = np.asarray(t_s, dtype=float)
        i = np.clip((t // MINUTE_S).astype(np.int64), 0, max(len(self.rates_rps) - 1, 0))
        return np.where((t >= 0) & (t < self.duration_s), self.rates_rps[i], 0.0)

    def opening_rps(self, window_s: float = 300.0) -> float:
        n = max(1, math.ceil(window_s / MINUTE_S))
        return float(self.rates_rps[:n].mean()) if len(self.rates_rps) else 0.0


def per_minute(profile: TrafficProfile) -> np.ndarray:
    """Mean demand (rps) of each minute of ``profile``, without noise (seed None)."""
    return np.asarray(profile.counts(MINUTE_S), dtype=float) / MINUTE_S


def default_holdout_min(duration_min: int) -> int:
    """A quarter of the history in whole days (at least one); 0 when it is under two days."""
    if duration_min < MIN_HISTORY_DAYS * DAY_MIN:
        return 0
    return max(1, duration_min // 4 // DAY_MIN) * DAY_MIN


@dataclass(frozen=True)
class Fold:
    """Tune on minutes [0, train_end), validate on [train_end, end)."""

    train_end: int
    end: int

    def describe(self) -> str:
        return f"tune on {_days(0, self.train_end)}, validate on {_days(self.train_end, self.end)}"


def _days(a: int, b: int) -> str:
    return f"days {a / DAY_MIN:g}-{b / DAY_MIN:g}"


def walk_forward(duration_min: int, holdout_min: int, max_folds: int = MAX_FOLDS) -> list[Fold]:
    """Folds, newest first: validation windows of ``holdout_min`` stepping back from the end,
    each with at least as much training history before it as it is long."""
    if holdout_min <= 0:
        return []
    out = []
    for k in range(1, max_folds + 1):
        start = duration_min - k * holdout_min
        if start < holdout_min:
            break
        out.append(Fold(start, start + holdout_min))
    return out


def parse_holdout(value: str) -> float | None:
    """``--holdout``: "auto" (None), "off" (0), a duration ("3d", "12h") or a share ("0.25")."""
    text = value.strip().lower()
    if text == "auto":
        return None
    if text in ("off", "0", "none"):
        return 0.0
    units = {"d": 86400.0, "h": 3600.0, "m": 60.0}
    try:
        if text[-1] in units:
            seconds = float(text[:-1]) * units[text[-1]]
            if not (math.isfinite(seconds) and seconds >= 3600):
                raise ValueError
            return seconds
        share = float(text)
    except ValueError:
        raise ValidationError(
            f'--holdout must be "auto", "off", a duration >= 1h such as "3d", or a share in '
            f"(0, 0.5], got {value!r}"
        ) from None
    if not 0 < share <= 0.5:
        raise ValidationError(f"--holdout share must be in (0, 0.5], got {value!r}")
    return -share  # negative: a share of the history, resolved once its length is known


def holdout_minutes(setting: float | None, duration_min: int) -> int:
    """Whole minutes held out for ``setting`` (see :func:`parse_holdout`)."""
    if setting is None:
        return default_holdout_min(duration_min)
    if setting == 0:
        return 0
    minutes = int(-setting * duration_min) if setting < 0 else int(setting // MINUTE_S)
    return minutes if 2 * minutes <= duration_min else 0
