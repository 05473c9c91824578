"""The candidate family "target tracking plus a step scale-out companion"."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from tests.conftest import REPO
from tuner.model.capacity import Capacity
from tuner.model.settings import SimulationSettings
from tuner.model.simulator import simulate
from tuner.policy.policy import ScalingPolicy
from tuner.profiles import load_profile
from tuner.tune import CompanionGrid, Objective, companion_candidates, manifest, score, tune

PROFILES = REPO / "locustfiles" / "profiles"


def _tt(target: float, mn: int) -> ScalingPolicy:
    return ScalingPolicy(min_capacity=mn, max_capacity=12, target_value=target)


def test_companions_go_to_the_nearest_misses_cheaper_than_the_best() -> None:
    policies = {p.label: p for p in (_tt(600, 1), _tt(900, 1), _tt(300, 1), _tt(600, 4))}
    labels = list(policies)
    table = pd.DataFrame(
        {
            "candidate": labels,
            "monthly_cost_usd": [300.0, 250.0, 450.0, 400.0],
            "slo_violation_rate": [0.05, 0.30, 0.001, 0.0],
            "meets_objective": [False, False, True, True],
        }
    )
    grid = CompanionGrid(
        bases=1, threshold_factors=(2.0,), change_adjustments=(2,), percent_adjustments=()
    )
    family = companion_candidates(table, policies, grid)
    # cheaper than the best meeting one ($400): t600-min1 and t900-min1; nearest miss: t600
    assert [p.label for p in family] == ["t600-min1-max12-out300-in300-s1200+2"]
    (step,) = family[0].step_policies
    assert (
        step.alarm.threshold,
        step.alarm.evaluation_periods,
        step.alarm.datapoints_to_alarm,
    ) == (
        1200.0,
        1,
        1,
    )
    assert family[0].replace(step_policies=()) == policies[labels[0]]


def test_at_the_same_cost_target_tracking_alone_ranks_first() -> None:
    plain = _tt(600, 2)
    (with_step,) = CompanionGrid(
        threshold_factors=(2.0,), change_adjustments=(2,), percent_adjustments=()
    ).companions(plain)
    rows = []
    for p, cost in ((with_step, 100.0), (plain, 100.0)):
        rows.append(
            dict(
                candidate=p.label,
                profile="x",
                seed=0,
                monthly_cost_usd=cost,
                mean_instances=2.0,
                slo_violation_rate=0.0,
                error_rate=0.0,
                p99_latency_ms=100.0,
                scale_out_events=0,
                scale_in_events=0,
                recovery_s=0.0,
                meets_objective=True,
            )
        )
    objective = Objective(slo_p99_ms=500, max_error_rate=0.01)
    table = score(pd.DataFrame(rows), [with_step, plain], objective)
    assert list(table["candidate"]) == [plain.label, with_step.label]
    rows[0]["monthly_cost_usd"] = 99.0  # strictly cheaper: the companion wins
    table = score(pd.DataFrame(rows), [with_step, plain], objective)
    assert list(table["candidate"]) == [with_step.label, plain.label]


def test_flash_spike_a_companion_scales_out_two_minutes_sooner_but_too_late() -> None:
    # Why the family cannot win on the ready flash-spike with the default capacity: the burst
    # (600-870 s) is shorter than one alarm period + the metric lag + boot (60 + 60 + 300 s).
    profile = load_profile(PROFILES / "flash-spike.toml")
    base = ScalingPolicy(
        min_capacity=1, max_capacity=12, target_value=420.0, scale_out_cooldown_s=0
    )
    (companion,) = CompanionGrid(
        threshold_factors=(1.25,), change_adjustments=(8,), percent_adjustments=()
    ).companions(base)
    r = simulate(
        profile,
        [base, companion],
        Capacity.default(),
        SimulationSettings(boot_jitter_s=0.0),
        initial_capacity=3,
    )
    tt, step = r.timeline(0).set_index("t_s"), r.timeline(1).set_index("t_s")
    # target tracking: 3 datapoints (minutes 10-12) + 60 s lag -> decides at 840 s, serves 1140
    assert tt.loc[780, "desired_capacity"] == 3 and tt.loc[840, "desired_capacity"] == 12
    assert tt.loc[1080, "instances_in_service"] == 3 and tt.loc[1140, "instances_in_service"] == 12
    # the companion: 1 datapoint (minute 10: 125 rps x 60 / 3 = 2500 >= 525) -> decides at 720,
    # 3 + 8 = 11 serve from 1020 s: 150 s after the burst is over (demand back to 20 rps at 900)
    assert step.loc[660, "desired_capacity"] == 3 and step.loc[720, "desired_capacity"] == 11
    assert (
        step.loc[960, "instances_in_service"] == 3 and step.loc[1020, "instances_in_service"] == 11
    )
    assert tt.loc[900, "demand_rps"] == 20.0
    # so the same requests fail either way
    assert r.summary.loc[0, "error_rate"] == r.summary.loc[1, "error_rate"] > 0.25


def test_tune_with_the_family_on_flash_spike_keeps_target_tracking(tmp_path: Path) -> None:
    profile = load_profile(PROFILES / "flash-spike.toml")
    objective = Objective(slo_p99_ms=500, max_error_rate=0.001)
    settings = SimulationSettings(seeds=(0,))
    plain = tune([profile], objective, settings=settings)
    both = tune([profile], objective, settings=settings, companions=CompanionGrid(bases=5))
    family = [label for label, p in both.policies.items() if p.step_policies]
    assert len(family) == 5 * len(CompanionGrid().companions(_tt(600, 1)))
    rows = both.candidates.set_index("candidate")
    assert not rows.loc[family, "meets_objective"].any()
    assert both.recommendation.label == plain.recommendation.label
    assert not both.recommended.step_policies
    meta = manifest(both, tmp_path, profile_paths=[PROFILES / "flash-spike.toml"])
    assert meta["grid"]["step_companions"]["bases"] == 5
    paths = [PROFILES / "flash-spike.toml"]
    assert manifest(plain, tmp_path, profile_paths=paths)["grid"]["step_companions"] is None


def test_companions_are_searched_with_held_out_validation_and_win_only_when_cheaper() -> None:
    """On a history (held-out validation), the companions of the nearest misses pass the same
    gates as the rest; one is recommended only when strictly cheaper than every plain policy
    that passes them."""
    from tuner.profiles import parse_profile

    surge = {"baseline_rps": 20, "peak_rps": 120, "at": "3h", "rise": "2m", "hold": "20m"}
    history = parse_profile(
        {"name": "surges", "segment": [{"spike": "6h", "fall": "2m", **surge}] * 12}
    )
    grid = CompanionGrid(
        threshold_factors=(1.5,), change_adjustments=(4,), percent_adjustments=(), bases=3
    )
    settings = SimulationSettings(seeds=(0,))
    objective = Objective(slo_p99_ms=300, max_error_rate=0.001)
    plain = tune([history], objective, settings=settings, schedules=False)
    mixed = tune([history], objective, settings=settings, schedules=False, companions=grid)
    assert plain.validation["folds"] and mixed.validation["folds"]  # the history path ran
    # three nearest misses, one companion each, searched beside the same plain candidates
    assert mixed.validation["searched"] == plain.validation["searched"] + 3
    assert mixed.companions == grid
    rows = mixed.candidates.set_index("candidate")
    with_steps = [c for c in rows.index if mixed.policies[c].step_policies]
    best = mixed.recommended
    if best.step_policies:
        cheapest_plain = rows[rows["meets_objective"] & ~rows.index.isin(with_steps)]
        assert rows.iloc[0]["monthly_cost_usd"] < cheapest_plain["monthly_cost_usd"].min()
    else:
        assert best.label == plain.recommended.label
