"""Held-out validation on a history: folds, per-window summaries, stress, the tuned result."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests.conftest import REPO
from tuner.cli import main
from tuner.errors import ValidationError
from tuner.model import Capacity, SimulationSettings
from tuner.model.simulator import simulate_demand
from tuner.policy import ScalingPolicy
from tuner.profiles import load_profile
from tuner.tune import Grid, Objective, tune
from tuner.tune.history import (
    DAY_MIN,
    DemandProfile,
    Fold,
    default_holdout_min,
    holdout_minutes,
    parse_holdout,
    walk_forward,
)
from tuner.tune.holdout import FoldResult, required_level
from tuner.tune.refine import ladder, min_levels
from tuner.tune.stress import Shape

OBJECTIVE = Objective(slo_p99_ms=300, max_error_rate=0.001)


def diurnal(days: int, seed: int = 0, growth: float = 0.0) -> np.ndarray:
    """Per-minute rps: a day/night cycle 10..70 rps with lognormal noise, optional growth."""
    t = np.arange(days * DAY_MIN)
    base = 40 - 30 * np.cos(2 * np.pi * t / DAY_MIN)
    noise = np.random.default_rng(seed).lognormal(0, 0.1, len(t))
    return base * noise * (1 + growth * t / len(t))


def test_walk_forward_folds_step_back_from_the_end() -> None:
    # 7 days, 1-day windows: validate on 6-7, 5-6, 4-5 (three folds at most)
    assert walk_forward(7 * DAY_MIN, DAY_MIN) == [
        Fold(6 * DAY_MIN, 7 * DAY_MIN),
        Fold(5 * DAY_MIN, 6 * DAY_MIN),
        Fold(4 * DAY_MIN, 5 * DAY_MIN),
    ]
    # 5 days, 2-day windows: only one fold keeps at least 2 days of training before it
    assert walk_forward(5 * DAY_MIN, 2 * DAY_MIN) == [Fold(3 * DAY_MIN, 5 * DAY_MIN)]
    assert walk_forward(DAY_MIN, 0) == []


@pytest.mark.parametrize(
    ("days", "held"), [(1, 0), (2, 1), (7, 1), (14, 3), (28, 7)], ids=lambda x: str(x)
)
def test_default_holdout_is_a_quarter_in_whole_days(days: int, held: int) -> None:
    assert default_holdout_min(days * DAY_MIN) == held * DAY_MIN


def test_parse_holdout_forms_and_errors() -> None:
    assert parse_holdout("auto") is None
    assert parse_holdout("off") == 0
    assert parse_holdout("3d") == 3 * 86400
    assert holdout_minutes(parse_holdout("0.25"), 4000) == 1000
    assert holdout_minutes(parse_holdout("12h"), 4 * DAY_MIN) == 720
    # more than half the history cannot be held out: no split
    assert holdout_minutes(parse_holdout("3d"), 4 * DAY_MIN) == 0
    for bad in ("soon", "0.9", "10m", "-2d"):
        with pytest.raises(ValidationError, match="--holdout"):
            parse_holdout(bad)


def test_window_summaries_add_up_to_the_whole_run() -> None:
    demand = diurnal(2, seed=3) * 60
    policies = [
        ScalingPolicy(min_capacity=1, max_capacity=8, target_value=v) for v in (600.0, 1100.0)
    ]
    result = simulate_demand(demand, 60, policies, Capacity.default(), SimulationSettings())
    whole = result.summary
    a, b = result.window_summary(0, 1000), result.window_summary(1000, len(demand))
    for col in ("failed", "instance_hours", "requests"):
        np.testing.assert_allclose(a[col] + b[col], whole[col], rtol=1e-9)
    same = result.window_summary(0, len(demand))
    pd.testing.assert_frame_equal(same, whole)


def test_demand_profile_counts_spread_a_minute_evenly() -> None:
    p = DemandProfile("x", np.array([6.0, 12.0]))
    np.testing.assert_allclose(p.counts(60), [360.0, 720.0])
    np.testing.assert_allclose(p.counts(10), [60.0] * 6 + [120.0] * 6)
    assert p.duration_s == 120 and p.opening_rps() == 9.0
    with pytest.raises(ValidationError):
        p.counts(7)


def test_stress_scenarios_match_their_definitions() -> None:
    rates = np.full(3 * DAY_MIN, 10.0)
    rates[DAY_MIN + 600 : DAY_MIN + 700] = 40.0  # day 1 is the busiest; a +30 rps step
    shape = Shape.of(rates, reaction_s=540)  # 9 minutes
    assert shape.busiest_day == 1 and shape.median_rps == 10.0
    assert shape.ramp_rise_rps == 30.0 and shape.steepest_rps_per_min == 30.0
    peaks, growth, ramp, flash = shape.scenarios(2.0)
    # peaks: 10 + 2 x (40 - 10) = 70 where the day was above the median, unchanged elsewhere
    assert peaks.peak_rps == 70.0 and peaks.rates_rps.min() == 10.0
    # growth: the last three days from x1 to x2
    assert growth.rates_rps[0] == 10.0 and growth.rates_rps[-1] == pytest.approx(20.0)
    # ramp: the +30 rise doubled and replayed 6, 12, 18 h later (on top of 10 rps)
    # (the window starts 9 minutes before the jump; the level then holds as long again)
    at = 600 + 6 * 60
    assert ramp.rates_rps[at - 1] == 10.0 and ramp.rates_rps[at] == 70.0
    assert ramp.rates_rps[at + 9] == 70.0 and ramp.rates_rps[at + 10] == 10.0
    assert ramp.rates_rps[600 + 12 * 60] == 70.0
    assert ramp.rates_rps[(600 + 18 * 60) % DAY_MIN] == 70.0  # wraps around the day
    # flash: +60 rps climbed at 30 rps/min, held ten minutes
    extra = flash.rates_rps - shape.day()
    assert extra.max() == 60.0 and int((extra == 60.0).sum()) == 10 + 1
    assert sorted(np.unique(extra)) == [0.0, 30.0, 60.0]
    words = shape.describe(2.0)
    assert "+60 rps" in words["flash"] and "x2" in words["growth"]


def test_required_level_is_the_largest_a_fold_needed() -> None:
    fold = Fold(DAY_MIN, 2 * DAY_MIN)
    fr = [FoldResult(fold, x, "a", True, "a") for x in (1.0, 1.5, 1.25)]
    assert required_level(fr)[0] == 1.5
    # a fold no level fixes does not force the highest level
    fr.append(FoldResult(fold, None, "a", False, None))
    level, why = required_level(fr)
    assert level == 1.5 and "3 of 4" in why
    assert required_level([FoldResult(fold, None, None, False, None)])[0] == 1.0


def test_min_capacity_ladder_covers_the_stressed_peak() -> None:
    rates = np.array([10.0] * 90 + [200.0] * 10)
    low, high = min_levels(rates, 20.0, 1.5)
    assert (low, high) == (1, 15)
    rungs = ladder(low, high)
    assert rungs[0] == 1 and rungs[-1] == 15 and rungs == sorted(set(rungs))


@pytest.fixture(scope="module")
def history_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`tuner tune` on a 4-day replay with growth: the history path end to end."""
    folder = tmp_path_factory.mktemp("history")
    rates = diurnal(4, seed=1, growth=0.3)
    stamps = pd.date_range("2026-01-01", periods=len(rates), freq="min", tz="UTC")
    csv = folder / "history.csv"
    pd.DataFrame(
        {"timestamp": stamps.strftime("%Y-%m-%dT%H:%M:%SZ"), "invocations": rates * 60}
    ).to_csv(csv, index=False)
    out = folder / "run"
    args = ["tune", "--profile", str(csv), "--slo-p99-ms", "300", "--max-error-rate", "0.001"]
    assert main([*args, "--seeds", "2", "--out", str(out)]) == 0
    return out


def test_history_run_validates_on_the_newest_day(history_run: Path) -> None:
    v = json.loads((history_run / "validation.json").read_text())
    assert v["holdout_days"] == 1 and v["in_sample_days"] == 3
    assert [f["fold"] for f in v["folds"]] == [
        "tune on days 0-3, validate on days 3-4",
        "tune on days 0-2, validate on days 2-3",
        "tune on days 0-1, validate on days 1-2",
    ]
    rec = v["candidates"][v["recommended"]]
    assert rec["in_sample"]["meets"] and rec["held_out"]["meets"]
    assert set(rec["stress"]) == {"peaks", "growth", "ramp", "flash"}
    assert all(s["meets"] for s in rec["stress"].values())
    candidates = pd.read_csv(history_run / "candidates.csv")
    assert candidates.iloc[0]["candidate"] == v["recommended"]
    # every integer MinCapacity between the rungs next to the recommendation was tried
    mins = set(candidates["min_capacity"])
    assert len(mins) >= 2
    results = pd.read_csv(history_run / "results.csv")
    assert {"history (in-sample)", "history (held-out)"} <= set(results["profile"])
    # the recommendation's cost is its in-sample + held-out cost, not the stress scenarios'
    mine = results[results["candidate"] == v["recommended"]]
    priced = mine[mine["profile"].str.startswith("history")]
    cost = priced.groupby("profile")["monthly_cost_usd"].mean().mean()
    assert candidates.iloc[0]["monthly_cost_usd"] == pytest.approx(cost)


def test_history_report_shows_in_sample_and_held_out(history_run: Path) -> None:
    md = (history_run / "report.md").read_text()
    assert "## Held-out validation and stress" in md
    assert "Held-out SLO violation" in md and "rule of thumb" in md
    assert "Absorbs" in md and "Stress level x" in md
    html = (history_run / "report.html").read_text()
    assert 'id="held-out"' in html


def test_short_profiles_say_why_no_holdout(tmp_path: Path) -> None:
    grid = tmp_path / "grid.toml"
    grid.write_text("target_fractions = [0.5]\nscale_in_cooldowns_s = [300]\n")
    out = tmp_path / "run"
    args = ["tune", "--profile", "steady", "--profile", "flash-spike", "--grid", str(grid)]
    args += ["--slo-p99-ms", "300", "--max-error-rate", "0.001", "--seeds", "1"]
    assert main([*args, "--out", str(out)]) == 0
    note = json.loads((out / "validation.json").read_text())["note"]
    assert "does not apply: several profiles" in note
    assert note in (out / "report.md").read_text()
    tuning = tune(
        [load_profile(REPO / "locustfiles" / "profiles" / "flash-spike.toml")],
        OBJECTIVE,
        settings=SimulationSettings(seeds=(0,)),
        grid=Grid(target_fractions=(0.5,)),
    )
    assert "flash-spike lasts" in tuning.validation["note"]


def test_bad_holdout_exits_2(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code = main(
        [
            "tune",
            "--profile",
            "steady",
            "--slo-p99-ms",
            "300",
            "--max-error-rate",
            "0.001",
            "--holdout",
            "soon",
            "--out",
            str(tmp_path / "x"),
        ]
    )
    assert code == 2
    assert "--holdout" in capsys.readouterr().err


def test_a_flat_history_is_tuned_with_an_empty_flash_scenario() -> None:
    """Demand that never rises has no ramp to replay: stress builds no flash spike (it divided
    by a zero ramp rate before) and the steady level is covered by the recommendation."""
    from tuner.profiles import parse_profile

    flat = parse_profile({"name": "flat", "segment": [{"hold": "3d", "rps": 10}]})
    tuning = tune(
        [flat],
        Objective(slo_p99_ms=300, max_error_rate=0.001),
        settings=SimulationSettings(seeds=(0,)),
    )
    assert tuning.validation.get("note") is None  # the history path ran
    policy = tuning.recommended
    # 10 rps x 60 s at the recommended target: the steady count the policy settles at
    assert policy.steady_capacity(10.0) >= 1
    assert tuning.recommendation.meets_objective


def test_surge_folds_do_not_set_the_level_unless_every_fold_is_one() -> None:
    fold = Fold(DAY_MIN, 2 * DAY_MIN)
    surge = FoldResult(fold, 1.25, "a", False, "b", surge=True, peak_ratio=1.78)
    calm = FoldResult(fold, 0.0, "a", True, "a", surge=False, peak_ratio=0.37)
    lost = FoldResult(fold, None, "a", False, None, surge=True, peak_ratio=3.8)
    level, why = required_level([surge, calm, lost])
    assert level == 0.0
    assert "2 of 3 folds met a surge" in why and "1.78x, 3.80x" in why and "x0" in why
    # a fold within its past's range that needed x1 lifts the level
    assert required_level([calm, FoldResult(fold, 1.0, "a", False, "c")])[0] == 1.0
    # every fold a surge: the past keeps being outgrown (a trend), so they count
    assert required_level([surge, lost])[0] == 1.25


def test_x0_judges_the_whole_history_as_one_against_the_objective_itself() -> None:
    """A steady history: the folds' x0 picks meet their next windows, so no margin or stress is
    bought and the recommendation's figures are its run over the whole history."""
    from tuner.profiles import parse_profile
    from tuner.tune import simulate_candidates

    steady = parse_profile({"name": "calm", "segment": [{"hold": "3d", "rps": 30}]})
    settings = SimulationSettings(seeds=(0, 1))
    tuning = tune([steady], OBJECTIVE, settings=settings)
    v = tuning.validation
    assert v["stress_level"] == 0 and [f["level"] for f in v["folds"]] == [0.0, 0.0]
    assert v["stress_scenarios"] == {} and v["judged"].startswith("history as one")
    assert set(tuning.results["profile"]) == {"calm (whole history)"}
    assert tuning.objective.margin == 0.8  # the user's objective is kept; the rows judge x0
    rec = tuning.recommended
    # the pooled figures are the whole run's: simulate it once over the 3 days, worst seed
    runs = [
        simulate_candidates(steady, [rec], Capacity.default(), OBJECTIVE, settings, s).summary
        for s in settings.seeds
    ]
    figs = v["candidates"][v["recommended"]]["history"]
    assert figs["error_rate"] == pytest.approx(max(float(r["error_rate"].iloc[0]) for r in runs))
    assert figs["slo_violation_rate"] == pytest.approx(
        max(float(r["slo_violation_rate"].iloc[0]) for r in runs), abs=1e-12
    )
    assert figs["slo_violation_rate"] <= OBJECTIVE.max_slo_violation
    assert figs["error_rate"] <= OBJECTIVE.max_error_rate
    # 30 rps at 20 rps per instance: at least two instances stand whatever the target
    assert rec.steady_capacity(30.0) >= 2


def test_stress_level_between_0_and_1_exits_2(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    args = ["tune", "--profile", "steady", "--slo-p99-ms", "300", "--max-error-rate", "0.001"]
    assert main([*args, "--stress-level", "0.5", "--out", str(tmp_path / "x")]) == 2
    assert "--stress-level must be 0 or in [1, 10], got 0.5" in capsys.readouterr().err
