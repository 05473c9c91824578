"""The candidate grid, scoring, Pareto front and recommendation (tuner.tune search, recommend)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tuner.errors import ValidationError
from tuner.model import SimulationSettings
from tuner.policy.policy import ScalingPolicy
from tuner.profiles.profile_file import parse_profile
from tuner.tune import Grid, Objective, evaluate
from tuner.tune.recommend import nearest_alternatives, pareto_mask, recommend, score


def _profile(name: str, *segments: dict) -> object:
    return parse_profile({"name": name, "segment": list(segments)})


STEADY = _profile("steady", {"hold": "30m", "rps": 20})
SPIKE = _profile(
    "spike",
    {"hold": "10m", "rps": 20},
    {
        "spike": "20m",
        "baseline_rps": 20,
        "peak_rps": 160,
        "rise": "30s",
        "hold": "3m",
        "fall": "1m",
    },
)


def test_default_grid_derives_min_and_max_from_demand() -> None:
    grid = Grid()
    # Steady 20 rps on 20 rps/instance: every percentile needs 1; peak 20 x 1.5 = 30 rps needs 2.
    assert grid.capacity_bounds([STEADY], 20.0) == ((1,), 2)
    # With the spike, p10 and p50 are still 20 rps (Min 1) but the 160-rps peak needs Min 8,
    # and MaxCapacity covers 160 x 1.5 = 240 rps: 12 instances.
    assert grid.capacity_bounds([STEADY, SPIKE], 20.0) == ((1, 8), 12)
    # With 8 rps/instance the 20-rps baseline needs ceil(2.5) = 3, Max ceil(30 / 8) = 4.
    assert grid.capacity_bounds([STEADY], 8.0) == ((3,), 4)
    policies = grid.candidates([STEADY, SPIKE], 20.0)
    assert len(policies) == 13 * 4 * 4 * 2
    assert len({p.label for p in policies}) == len(policies)
    targets = sorted({p.target_value for p in policies})
    assert targets[0] == pytest.approx(0.3 * 20 * 60) and targets[-1] == pytest.approx(0.9 * 1200)
    assert {p.scale_out_cooldown_s for p in policies} == {0, 60, 120, 300}
    assert {p.scale_in_cooldown_s for p in policies} == {300, 600, 900, 1800}
    assert {(p.min_capacity, p.max_capacity) for p in policies} == {(1, 12), (8, 12)}


def test_grid_toml_overrides_lists(tmp_path: Path) -> None:
    path = tmp_path / "grid.toml"
    path.write_text(
        "target_values = [500, 700]\nscale_out_cooldowns_s = [60]\n"
        "scale_in_cooldowns_s = [300, 900]\nmin_capacities = [2, 5]\nmax_capacities = [4]\n"
    )
    policies = Grid.load(path).candidates([STEADY], 20.0)
    # Min 5 > Max 4 is skipped, leaving 2 targets x 1 x 2 cooldowns x (Min 2, Max 4).
    assert sorted(p.label for p in policies) == [
        "t500-min2-max4-out60-in300",
        "t500-min2-max4-out60-in900",
        "t700-min2-max4-out60-in300",
        "t700-min2-max4-out60-in900",
    ]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("targets = [1]", "unknown key 'targets'"),
        ("scale_in_cooldowns_s = 300", "scale_in_cooldowns_s must be a list of numbers"),
        ("scale_in_cooldowns_s = []", "grid.scale_in_cooldowns_s must be a non-empty list"),
        ("peak_headroom = 0.5", "grid.peak_headroom >= 1 must hold, got 0.5"),
        ("target_fractions = [0.5, 3]", "grid.target_fractions must be in (0, 2]"),
        ("target_values = [", "malformed TOML"),
    ],
    ids=["unknown", "scalar", "empty", "headroom", "fraction", "syntax"],
)
def test_grid_file_errors_name_the_key(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "grid.toml"
    path.write_text(text + "\n")
    with pytest.raises(ValidationError, match=None) as info:
        Grid.load(path)
    assert message in str(info.value) and str(path) in str(info.value)


def test_objective_rejects_out_of_range_values() -> None:
    with pytest.raises(ValidationError, match=r"--max-error-rate must be in \(0, 1\], got 2"):
        Objective(slo_p99_ms=100, max_error_rate=2)
    with pytest.raises(ValidationError, match="--slo-p99-ms > 0 must hold, got -1"):
        Objective(slo_p99_ms=-1, max_error_rate=0.01)
    o = Objective(slo_p99_ms=100, max_error_rate=0.01, max_slo_violation=0.02, margin=0.5)
    assert (o.error_bound, o.violation_bound) == (0.005, 0.01)


def test_pareto_mask_by_hand() -> None:
    cost = [1, 2, 3, 2, 1]
    viol = [3, 2, 1, 3, 3]
    # (2, 3) is beaten by (2, 2); the two identical (1, 3) points dominate neither each other.
    assert pareto_mask(cost, viol).tolist() == [True, True, True, False, True]


def _results(rows: list[tuple[str, str, int, float, float, float]]) -> pd.DataFrame:
    """Hand-made results: (candidate, profile, seed, monthly cost, SLO violation, error rate)."""
    df = pd.DataFrame(
        rows,
        columns=[
            "candidate",
            "profile",
            "seed",
            "monthly_cost_usd",
            "slo_violation_rate",
            "error_rate",
        ],
    )
    df["mean_instances"] = df["monthly_cost_usd"] / (730 * 0.23)
    df["p99_latency_ms"] = 100.0
    df["scale_out_events"] = 1.0
    df["scale_in_events"] = 1.0
    df["recovery_s"] = np.nan
    df["meets_objective"] = (df["slo_violation_rate"] <= 0.008) & (df["error_rate"] <= 0.008)
    return df


def _policy(target: float, sin: int = 300) -> ScalingPolicy:
    return ScalingPolicy(
        min_capacity=1, max_capacity=8, target_value=target, scale_in_cooldown_s=sin
    )


def test_score_ranks_cheapest_meeting_candidate_first_and_explains() -> None:
    objective = Objective(slo_p99_ms=200, max_error_rate=0.01)  # bounds 0.8% with margin 0.8
    a, b, c, d = _policy(900), _policy(700), _policy(600), _policy(500)
    results = _results(
        [
            # a: cheapest, but one seed of the spike breaks the SLO bound
            (a.label, "steady", 0, 100, 0.0, 0),
            (a.label, "steady", 1, 100, 0.0, 0),
            (a.label, "spike", 0, 150, 0.001, 0),
            (a.label, "spike", 1, 160, 0.05, 0),
            # b: meets everywhere: (120 + (200 + 220) / 2) / 2 = 165 a month
            (b.label, "steady", 0, 120, 0.0, 0),
            (b.label, "steady", 1, 120, 0.0, 0),
            (b.label, "spike", 0, 200, 0.004, 0),
            (b.label, "spike", 1, 220, 0.006, 0),
            # c: meets, dearer; it is the rule of thumb
            (c.label, "steady", 0, 160, 0.0, 0),
            (c.label, "steady", 1, 160, 0.0, 0),
            (c.label, "spike", 0, 190, 0.001, 0),
            (c.label, "spike", 1, 190, 0.001, 0),
            # d: meets, dearest
            (d.label, "steady", 0, 200, 0.0, 0),
            (d.label, "steady", 1, 200, 0.0, 0),
            (d.label, "spike", 0, 300, 0.0, 0),
            (d.label, "spike", 1, 300, 0.0, 0),
        ]
    )
    table = score(results, [a, b, c, d], objective, rule_of_thumb=c.label)
    rows = table.set_index("candidate")
    # Monthly cost: mean over profiles of the mean over seeds.
    assert rows.loc[b.label, "monthly_cost_usd"] == pytest.approx((120 + 210) / 2)
    assert rows.loc[c.label, "monthly_cost_usd"] == pytest.approx((160 + 190) / 2)
    assert rows.loc[a.label, "slo_violation_rate"] == pytest.approx(0.05)
    assert list(table["candidate"]) == [b.label, c.label, d.label, a.label]
    assert list(table["role"]) == ["recommended", "rule-of-thumb", "candidate", "candidate"]
    assert rows["meets_objective"].to_dict() == {
        a.label: False,
        b.label: True,
        c.label: True,
        d.label: True,
    }
    # Front: a (cheapest), b, c (cheaper than d, and lower violation than b), d (zero violation).
    assert rows["pareto"].to_dict() == {a.label: True, b.label: True, c.label: True, d.label: True}
    # Neighbours in target value with the same other settings: 900 above, 600 below.
    assert nearest_alternatives(table, b.label) == [a.label, c.label]
    rec = recommend(table, results, objective)
    assert rec.label == b.label and rec.meets_objective
    text = " ".join(rec.reasons)
    assert "Cheapest of the 3 of 4 candidates" in text
    assert (
        f"Versus the AWS rule-of-thumb policy ({c.label}, which meets the objective): "
        "saves $10/month (6%)"
    ) in text
    # On the spike the rule of thumb is cheaper (190 vs 210) but dearer over both profiles.
    assert "On spike the AWS rule-of-thumb policy is cheaper ($190 vs $210/month)" in text
    assert f"Alternative {a.label}" in text and "misses the objective" in text


def test_no_candidate_meeting_the_objective_recommends_the_closest() -> None:
    objective = Objective(slo_p99_ms=200, max_error_rate=0.01)
    a, b = _policy(900), _policy(500)
    results = _results(
        [
            (a.label, "steady", 0, 100, 0.10, 0),
            (b.label, "steady", 0, 300, 0.02, 0),
        ]
    )
    table = score(results, [a, b], objective, rule_of_thumb=a.label)
    rec = recommend(table, results, objective)
    assert rec.label == b.label and not rec.meets_objective
    assert rec.reasons[0].startswith("No candidate meets the objective")


def test_evaluate_costs_a_fixed_size_endpoint_by_hand() -> None:
    from tuner.model.capacity import Capacity

    capacity = Capacity.default()  # 20 rps/instance, $0.23/h
    fixed = ScalingPolicy(min_capacity=2, max_capacity=2, target_value=600)
    objective = Objective(slo_p99_ms=1000, max_error_rate=0.01)
    results = evaluate(
        [STEADY], [fixed], capacity, objective, SimulationSettings(seeds=(0, 1), boot_jitter_s=0.0)
    )
    assert list(results["seed"]) == [0, 1]
    # Two instances for 30 minutes: 1 instance-hour, $0.23; a month of it: 2 x 730 h x $0.23.
    assert results["instance_hours"].tolist() == pytest.approx([1.0, 1.0])
    assert results["monthly_cost_usd"].tolist() == pytest.approx([2 * 730 * 0.23] * 2)
    assert results["mean_instances"].tolist() == pytest.approx([2.0, 2.0])
    # 20 rps on 2 instances is half load: nothing fails, nothing is slow.
    assert results["meets_objective"].all()
    assert results["scale_out_events"].sum() == 0
