"""tune --backtest's robustness check: the recommendation at the corners of the fitted values."""

from __future__ import annotations

import math

import pytest

from tuner.model.capacity import Capacity
from tuner.model.settings import SimulationSettings
from tuner.policy.policy import ScalingPolicy
from tuner.profiles.profile_file import parse_profile
from tuner.tune import Objective, robustness
from tuner.tune.robustness import corners


@pytest.mark.parametrize(
    ("value", "u", "expected"),
    [
        (420.0, 5.0, (415.0, 420.0, 425.0)),
        (10.0, 20.0, (0.0, 10.0, 30.0)),  # floored at 0
        (90.0, math.inf, (90.0,)),  # not identifiable: the value alone
        (90.0, 2.886751, (87.1, 90.0, 92.9)),
    ],
    ids=["boot", "floor", "unknown", "rounded"],
)
def test_corners(value: float, u: float, expected: tuple[float, ...]) -> None:
    assert corners(value, u) == pytest.approx(expected)


def test_a_slower_boot_hurts_a_policy_that_relies_on_a_fast_one() -> None:
    # 10 rps for 10 minutes, then 40: one instance (20 rps) overloads until the scale-out serves
    profile = parse_profile(
        {"name": "step", "segment": [{"hold": "10m", "rps": 10}, {"hold": "20m", "rps": 40}]}
    )
    policy = ScalingPolicy(min_capacity=1, max_capacity=4, target_value=600.0, name="tt")
    objective = Objective(slo_p99_ms=150.0, max_error_rate=0.5, max_slo_violation=0.5)
    settings = SimulationSettings(seeds=(0,), boot_jitter_s=0.0, warm_start=False)
    table = robustness(
        [profile],
        policy,
        Capacity.default(),
        objective,
        settings,
        boot_s=(300.0, 120.0),
        metric_lag_s=(60.0, math.inf),
    )
    assert list(table["boot_s"]) == [180.0, 300.0, 420.0]
    assert list(table["metric_lag_s"]) == [60.0, 60.0, 60.0]
    # every extra minute of boot leaves the surge longer on too few instances
    worst = list(table["worst_slo_violation_rate"])
    assert worst[0] < worst[1] < worst[2]
