"""Stress scenarios built from a history, all scaled by one level ``s`` (1 = as observed).

Each is at most a few days of per-minute demand, so a candidate plays them beside the history
for little cost:

- ``peaks``: the busiest day, its excursions above the history's median multiplied by ``s``;
- ``growth``: the last three days with demand rising linearly from x1 to x``s``;
- ``ramp``: the largest rise seen within one reaction time (boot + metric delay + alarm), x``s``,
  replayed on the busiest day at three other times of day (6, 12 and 18 hours later);
- ``flash``: at the quietest hour of the busiest day, a spike that climbs at the history's
  steepest one-minute ramp rate until it has risen ``s`` x the largest rise, holds ten minutes,
  then stops.

A scenario stands for one such event inside the next window: its failed and slow requests are
judged against the traffic of a held-out window (the objective is a share of a window's
requests), not against the scenario's own few hours, which would count a five-minute spike as
if it happened every day.

The level the tuner uses is calibrated on walk-forward folds (:mod:`tuner.tune.holdout`): the
least ``s`` at which a policy tuned on older data met the objective on the window after it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from tuner.tune.history import DAY_MIN, DemandProfile

KINDS = ("peaks", "growth", "ramp", "flash")
LEVELS = (1.0, 1.1, 1.25, 1.5, 1.75, 2.0, 2.5, 3.0)
"""Levels the calibration tries, in order; the last is also the ceiling for MaxCapacity. The
least is x1: the recommendation must at least survive the extremes already seen, replayed at
other times of day."""
GROWTH_DAYS = 3
FLASH_HOLD_MIN = 10


@dataclass(frozen=True)
class Shape:
    """What the scenarios are made of, measured once on a history."""

    rates_rps: np.ndarray
    reaction_min: int
    busiest_day: int
    median_rps: float
    ramp_start: int
    ramp_rise_rps: float
    steepest_rps_per_min: float

    @classmethod
    def of(cls, rates_rps: np.ndarray, reaction_s: float) -> Shape:
        r = np.asarray(rates_rps, dtype=float)
        w = max(1, math.ceil(reaction_s / 60.0))
        days = max(1, len(r) // DAY_MIN)
        peaks = [r[d * DAY_MIN : (d + 1) * DAY_MIN].max() for d in range(days)]
        rise = r[w:] - r[:-w] if len(r) > w else np.zeros(1)
        start = int(np.argmax(rise))
        steep = float(np.diff(r).max(initial=0.0)) if len(r) > 1 else 0.0
        return cls(
            rates_rps=r,
            reaction_min=w,
            busiest_day=int(np.argmax(peaks)),
            median_rps=float(np.median(r)),
            ramp_start=start,
            ramp_rise_rps=max(float(rise[start]), 0.0),
            steepest_rps_per_min=max(steep, 0.0),
        )

    def day(self) -> np.ndarray:
        d = self.busiest_day
        return self.rates_rps[d * DAY_MIN : (d + 1) * DAY_MIN].copy()

    def scenarios(self, level: float) -> list[DemandProfile]:
        """The four scenarios at ``level``, named ``stress:<kind> x<level>``."""
        s = float(level)
        r, med = self.rates_rps, self.median_rps
        day = self.day()
        peaks = np.where(day > med, med + s * (day - med), day)
        tail = r[-GROWTH_DAYS * DAY_MIN :]
        growth = tail * np.linspace(1.0, s, len(tail))
        ramp = day.copy()
        w = self.reaction_min
        seg = r[self.ramp_start : self.ramp_start + w + 1]
        rise = (seg - seg[0]) * s
        # after the rise, demand stays up for as long as it took to climb (a sustained step)
        shape = np.concatenate([rise, np.full(w, rise[-1])])
        at = (self.ramp_start % DAY_MIN) if len(r) else 0
        for hours in (6, 12, 18):
            i = (at + hours * 60) % len(ramp)
            j = min(len(ramp), i + len(shape))
            ramp[i:j] += shape[: j - i]
        flash = day.copy()
        height = s * self.ramp_rise_rps
        steep = max(self.steepest_rps_per_min, height / max(w, 1))
        # A history without any rise (flat demand) has no ramp to replay: the flash is empty.
        steps = math.ceil(height / steep) if height > 0 and steep > 0 else 0
        climb = np.minimum(np.arange(1, steps + 1) * steep, height)
        spike = np.concatenate([climb, np.full(FLASH_HOLD_MIN, height)]) if steps else climb
        quiet = int(np.argmin(np.convolve(flash, np.ones(60) / 60, mode="valid"))) + 30
        i = min(quiet, max(len(flash) - len(spike), 0))
        flash[i : i + len(spike)] += spike[: len(flash) - i]
        tag = f"x{s:g}"
        return [
            DemandProfile(f"stress:peaks {tag}", peaks),
            DemandProfile(f"stress:growth {tag}", growth),
            DemandProfile(f"stress:ramp {tag}", ramp),
            DemandProfile(f"stress:flash {tag}", flash),
        ]

    def describe(self, level: float) -> dict[str, str]:
        """What each scenario does at ``level``, in words for the report."""
        s = float(level)
        base = max(self.median_rps, 1e-9)
        height = s * self.ramp_rise_rps
        steep = max(self.steepest_rps_per_min, height / max(self.reaction_min, 1))
        minutes = math.ceil(height / steep) if height > 0 else 0
        return {
            "peaks": f"peaks of the busiest day {s:g}x higher above the median "
            f"(to {self.median_rps + s * (self.day().max() - self.median_rps):,.0f} rps)",
            "growth": f"demand growing from x1 to x{s:g} over the last {GROWTH_DAYS} days",
            "ramp": f"the largest rise within {self.reaction_min} min "
            f"(+{self.ramp_rise_rps:,.0f} rps) x{s:g}, replayed 6, 12 and 18 h later",
            "flash": f"a spike of +{height:,.0f} rps ({(base + height) / base:.1f}x the median) "
            f"within {minutes} min at the quietest hour, held {FLASH_HOLD_MIN} min",
        }
