"""Is the recommendation robust to what the backtest could not pin down?

``tune --backtest`` tunes with the fitted boot time and metric delay; :func:`robustness` then
simulates the recommended policy at the corners of their uncertainty (each value ± its
uncertainty, floored at 0) and says whether it still meets the objective everywhere.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import replace

import pandas as pd

from tuner.model.capacity import Capacity
from tuner.model.settings import SimulationSettings
from tuner.policy.policy import ScalingPolicy
from tuner.profiles.profile import TrafficProfile
from tuner.tune.search import Objective, evaluate

ROBUSTNESS_COLUMNS = (
    "boot_s",
    "metric_lag_s",
    "worst_slo_violation_rate",
    "worst_error_rate",
    "monthly_cost_usd",
    "meets_objective",
)


def corners(value: float, uncertainty: float) -> tuple[float, ...]:
    """value - u, value, value + u to 0.1 s (floored at 0; just the value when u is unknown)."""
    if not math.isfinite(uncertainty) or uncertainty <= 0:
        return (value,)
    u = round(uncertainty, 1)
    return tuple(sorted({round(max(0.0, value - u), 1), value, round(value + u, 1)}))


def robustness(
    profiles: Sequence[TrafficProfile],
    policy: ScalingPolicy,
    capacity: Capacity,
    objective: Objective,
    settings: SimulationSettings,
    *,
    boot_s: tuple[float, float],
    metric_lag_s: tuple[float, float],
) -> pd.DataFrame:
    """One row per (boot, delay) corner: the policy's worst seed and profile there.

    ``boot_s`` and ``metric_lag_s`` are (fitted value, uncertainty).
    """
    rows = []
    for boot in corners(*boot_s):
        for lag in corners(*metric_lag_s):
            at = replace(settings, boot_s=boot, metric_lag_s=lag)
            results = evaluate(profiles, [policy], capacity, objective, at)
            rows.append(
                (
                    boot,
                    lag,
                    float(results["slo_violation_rate"].max()),
                    float(results["error_rate"].max()),
                    float(results["monthly_cost_usd"].mean()),
                    bool(results["meets_objective"].all()),
                )
            )
    return pd.DataFrame(rows, columns=list(ROBUSTNESS_COLUMNS))
