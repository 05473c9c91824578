"""The simulation's knobs in one frozen object: what simulate, search, the controller's model
choices and the emulator's autoscaler all take.

Defaults are the CLI's (``tuner tune``): a 60-s metric delay, boot times spread by ±60 s, three
seeds and a warm start, so the Python API and the command line give the same answers.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from tuner.errors import ValidationError
from tuner.model.capacity import Capacity
from tuner.model.scaling import ModelChoices


@dataclass(frozen=True, kw_only=True)
class SimulationSettings:
    """How a candidate is simulated: model delays, seeds and the latency objective."""

    metric_lag_s: float = 60.0
    """CloudWatch publishing delay of each datapoint (target-tracking.md §4.1)."""
    boot_s: float | None = None
    """Scale-out decision to instances in service; None: the capacity file's ``boot_s``."""
    boot_jitter_s: float = 60.0
    """Seed-dependent spread of boot times: each scale-out boots in boot_s ± uniform(this)."""
    seeds: tuple[int, ...] = (0, 1, 2)
    """Each candidate is simulated once per seed (Poisson noise and boot jitter)."""
    slo_p99_ms: float | None = None
    """A request slower than this violates the SLO; None: the capacity's p99 at full load."""
    warm_start: bool = True
    """Start each candidate at the capacity its policy settles on for the opening rate."""

    def __post_init__(self) -> None:
        for name, value in (
            ("--metric-lag-s", self.metric_lag_s),
            ("--boot-jitter-s", self.boot_jitter_s),
            ("--boot-s", self.boot_s),
        ):
            if value is not None and not (math.isfinite(value) and value >= 0):
                raise ValidationError(f"{name} >= 0 must hold, got {float(value):g}")
        if self.slo_p99_ms is not None and not (
            math.isfinite(self.slo_p99_ms) and self.slo_p99_ms > 0
        ):
            raise ValidationError(f"--slo-p99-ms > 0 must hold, got {float(self.slo_p99_ms):g}")
        if not self.seeds:
            raise ValidationError("seeds must hold at least one seed")

    def boot_for(self, capacity: Capacity) -> float:
        """The boot time in force: this object's, else the capacity file's."""
        return float(capacity.boot_s if self.boot_s is None else self.boot_s)

    def slo_for(self, capacity: Capacity) -> float:
        """The latency objective in force: this object's, else the capacity's p99 at full load."""
        return float(capacity.p99_at_max_ms if self.slo_p99_ms is None else self.slo_p99_ms)

    def model_choices(self, capacity: Capacity) -> ModelChoices:
        """The controller's model choices with this object's delays."""
        return ModelChoices(metric_lag_s=self.metric_lag_s, boot_s=self.boot_for(capacity))


EXACT = SimulationSettings(metric_lag_s=0.0, boot_jitter_s=0.0, seeds=(0,), warm_start=False)
"""No metric delay, no jitter, one seed, cold start: hand-computed scenarios use this."""
