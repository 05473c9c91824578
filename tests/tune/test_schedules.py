"""The scheduled-floor search: rhythm detection, candidates, the rule that keeps only cheaper
floors, and the pipeline and CLI around it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from tuner.cli import main
from tuner.model.settings import SimulationSettings
from tuner.policy.policy import ScalingPolicy
from tuner.profiles.profile import Profile
from tuner.profiles.profile_file import parse_profile
from tuner.tune import Grid, Objective, tune
from tuner.tune.schedules import (
    FLOOR_OFF,
    FLOOR_ON,
    detect_rhythm,
    keep_cheaper,
    schedule_candidates,
)

OBJECTIVE = Objective(slo_p99_ms=300, max_error_rate=0.001)
FAST = SimulationSettings(seeds=(0,))
SMALL = Grid(target_fractions=(0.85,), scale_out_cooldowns_s=(0,), scale_in_cooldowns_s=(300,))


def busy_days(days: int = 2, weekend: bool = False) -> Profile:
    """Nights at 4 rps, 40 rps 09:00-19:00 UTC with 3-minute surges to 300 rps every 2 hours;
    ``weekend``: 7 days from Monday whose Saturday and Sunday stay at 4 rps."""
    segments: list[dict[str, Any]] = []
    for day in range(days):
        if weekend and day % 7 in (5, 6):
            segments.append({"hold": "24h", "rps": 4})
            continue
        segments += [{"hold": "8h", "rps": 4}, {"ramp": "1h", "to_rps": 40}]
        surge = {"baseline_rps": 40, "peak_rps": 300, "at": "50m", "rise": "30s", "hold": "3m"}
        segments += [{"spike": "2h", "fall": "30s", **surge}] * 5
        segments += [{"ramp": "1h", "to_rps": 4}, {"hold": "4h", "rps": 4}]
    return parse_profile({"name": "busy-days", "segment": segments})


def test_rhythm_is_found_with_its_busy_hours_and_not_in_flat_or_short_traffic() -> None:
    rhythm = detect_rhythm(busy_days())
    assert rhythm is not None
    assert rhythm.daily_autocorrelation > 0.99  # two identical days
    # demand is above the middle of its daily range from 09:00 to 19:00; the floor starts at 08:00
    assert (rhythm.start_h, rhythm.end_h, rhythm.weekdays_only) == (8, 19, False)
    assert rhythm.description == "08:00-19:00 UTC, every day"
    # the window's demand: 11 hours a day x 60 minutes x 2 days, peaking at the surges
    assert len(rhythm.busy_rps) == 11 * 60 * 2 and max(rhythm.busy_rps) == pytest.approx(300)
    # in New York (EST, UTC-5 in January) the same hours are 04:00-14:00, the floor from 03:00
    local = detect_rhythm(busy_days(), "America/New_York")
    assert local is not None and (local.start_h, local.end_h) == (3, 14)
    assert local.description == "03:00-14:00 America/New_York, every day"
    flat = parse_profile({"name": "flat", "segment": [{"hold": "3d", "rps": 20}]})
    assert detect_rhythm(flat) is None
    one_day = busy_days(days=1)  # a rhythm needs two periods to show
    assert detect_rhythm(one_day) is None


def test_weekly_rhythm_with_quiet_weekends_gives_weekday_floors() -> None:
    rhythm = detect_rhythm(busy_days(days=14, weekend=True))
    assert rhythm is not None and rhythm.weekdays_only
    assert rhythm.weekly_autocorrelation > 0.99
    base = ScalingPolicy(min_capacity=15, max_capacity=23, target_value=1020.0)
    candidates = schedule_candidates(rhythm, [base], [1, 15], 20.0)
    floors = {
        (p.min_capacity, a.min_capacity)
        for p in candidates
        for a in p.scheduled_actions or ()
        if a.name == FLOOR_ON
    }
    # nights at 1 (the lowest level) or at the base's 15 never below; floors cover the window's
    # 10th percentile (4 rps -> 1, dropped: not above the night), median (40 -> 2), peak (300 -> 15)
    assert floors == {(1, 2), (1, 15)}
    on = next(a for a in candidates[0].scheduled_actions or () if a.name == FLOOR_ON)
    off = next(a for a in candidates[0].scheduled_actions or () if a.name == FLOOR_OFF)
    assert on.schedule == "cron(0 8 ? * MON-FRI *)" and off.schedule == "cron(0 19 ? * MON-FRI *)"


def test_keep_cheaper_keeps_only_floors_that_beat_the_best_unscheduled_candidate() -> None:
    base = ScalingPolicy(min_capacity=15, max_capacity=23, target_value=1020.0)
    rhythm = detect_rhythm(busy_days())
    assert rhythm is not None
    cheap, dear = schedule_candidates(rhythm, [base], [1, 15], 20.0)
    failing = dear.replace(target_value=900.0)
    rows = pd.DataFrame(
        {
            "candidate": [base.label, cheap.label, dear.label, failing.label],
            "monthly_cost_usd": [100.0, 80.0, 100.0, 10.0],
            "meets_objective": [True, True, True, False],
        }
    )
    kept, kept_rows = keep_cheaper(rows, [base, cheap, dear, failing])
    assert kept == [cheap] and list(kept_rows["candidate"]) == [cheap.label]
    # no unscheduled candidate meets the objective: every floor that does is kept
    rows.loc[0, "meets_objective"] = False
    kept, _ = keep_cheaper(rows, [base, cheap, dear, failing])
    assert kept == [cheap, dear]


def test_tune_recommends_a_floor_only_when_cheaper_and_no_schedules_turns_it_off() -> None:
    # Floors are searched on the scenario path: a single history is held out unless holdout=0.
    with_floor = tune([busy_days()], OBJECTIVE, settings=FAST, grid=SMALL, holdout=0)
    plain = tune([busy_days()], OBJECTIVE, settings=FAST, grid=SMALL, schedules=False, holdout=0)
    best = with_floor.recommended
    assert best.scheduled_actions and with_floor.recommendation.meets_objective
    assert plain.recommended.scheduled_actions is None and plain.recommendation.meets_objective
    cost = with_floor.candidates.set_index("candidate")["monthly_cost_usd"]
    plain_cost = plain.candidates.set_index("candidate")["monthly_cost_usd"]
    # the unscheduled best needs MinCapacity 15 all day: 15 instances x 730 h x $0.23
    assert plain.recommended.min_capacity == 15
    assert plain_cost.iloc[0] == pytest.approx(15 * 730 * 0.23, rel=0.02)
    # the floor keeps 15 from 08:00 to 19:00 only (11 of 24 hours), ~1-2 instances otherwise
    assert cost.iloc[0] < 0.7 * plain_cost.iloc[0]
    assert cost.iloc[0] > 11 / 24 * plain_cost.iloc[0]
    assert any(
        "scheduled floor: MinCapacity 15 over 08:00-19:00 UTC" in r
        for r in with_floor.recommendation.reasons
    )
    assert with_floor.rhythm is not None and plain.rhythm is None


def test_cli_writes_the_floor_into_the_recommended_policy_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    profile = busy_days()
    # the same traffic as a replay CSV of per-minute counts (a history, as `tuner collect` writes)
    counts = np.asarray(profile.counts(60.0))
    stamps = pd.date_range("2024-01-01T00:00:00Z", periods=len(counts), freq="60s")
    csv = tmp_path / "history.csv"
    pd.DataFrame(
        {"timestamp": stamps.strftime("%Y-%m-%dT%H:%M:%SZ"), "invocations": counts}
    ).to_csv(csv, index=False)
    grid = tmp_path / "grid.toml"
    grid.write_text(
        "target_fractions = [0.85]\nscale_out_cooldowns_s = [0]\nscale_in_cooldowns_s = [300]\n"
    )
    out = tmp_path / "run"
    args = [
        "tune",
        "--profile",
        str(csv),
        "--slo-p99-ms",
        "300",
        "--max-error-rate",
        "0.001",
        "--seeds",
        "1",
        "--grid",
        str(grid),
        "--holdout",
        "off",
        "--out",
        str(out),
    ]
    assert main(args) == 0
    saved = json.loads((out / "recommended.policy.json").read_text())
    assert [a["ScheduledActionName"] for a in saved["ScheduledActions"]] == [FLOOR_OFF, FLOOR_ON]
    assert (
        json.loads((out / "manifest.json").read_text())["scheduled_floors"]["busy_window"]
        == "08:00-19:00 UTC, every day"
    )
    # --no-schedules reaches the pipeline (tune(schedules=False) is checked above)
    from tuner.cli import build_parser

    assert build_parser().parse_args([*args, "--no-schedules"]).schedules is False
    assert build_parser().parse_args(args).schedules is True
    capsys.readouterr()
    assert main([*args[:-1], str(tmp_path / "tz"), "--schedule-timezone", "Mars/Olympus"]) == 2
    assert "--schedule-timezone must be an IANA time zone name" in capsys.readouterr().err


def test_floors_are_searched_with_held_out_validation_and_kept_only_when_cheaper() -> None:
    """Five busy days are a history: the floors pass the same gates (in-sample, held-out,
    stress on the history's clock) and win only by being cheaper than the plain policy. Each
    day's surges keep to 08:00-19:00 (11 of 24 hours): by chance 5 days would all land there
    with probability (11/24)^5 = 2%, under the 5% the floors need on a history."""
    with_floor = tune([busy_days(5)], OBJECTIVE, settings=FAST, grid=SMALL)
    plain = tune([busy_days(5)], OBJECTIVE, settings=FAST, grid=SMALL, schedules=False)
    v = with_floor.validation
    assert v["holdout_days"] == 1 and len(v["folds"]) == 3  # the history path ran
    best = with_floor.recommended
    assert best.scheduled_actions and with_floor.recommendation.meets_objective
    assert plain.recommended.scheduled_actions is None
    # the plain policy needs MinCapacity 15 all day for the 300-rps surges (300 / 20 rps each)
    assert plain.recommended.min_capacity == 15
    cost = with_floor.candidates.set_index("candidate")["monthly_cost_usd"]
    plain_cost = plain.candidates.set_index("candidate")["monthly_cost_usd"]
    assert plain_cost.iloc[0] == pytest.approx(15 * 730 * 0.23, rel=0.02)
    # the floor holds 15 over 08:00-19:00 (11 of 24 hours): cheaper, never below that share
    assert 11 / 24 * plain_cost.iloc[0] < cost.iloc[0] < 0.7 * plain_cost.iloc[0]
    figs = v["candidates"][v["recommended"]]
    assert figs["held_out"]["meets"] or figs["history"]["meets"]
    assert all(s["meets"] for s in figs["stress"].values())
    assert any(
        "scheduled floor: MinCapacity 15 over 08:00-19:00 UTC" in r
        and "at the same held-out objective" in r
        for r in with_floor.recommendation.reasons
    )
    assert with_floor.rhythm is not None and plain.rhythm is None
    # under stress a floor runs on the history's clock: the scenarios last whole days and
    # start at the busiest day's midnight, so each keeps its time of day
    from tuner.model.timetable import profile_start
    from tuner.tune.history import DAY_MIN, per_minute
    from tuner.tune.holdout import stress_profile
    from tuner.tune.stress import Shape

    history = busy_days(5)
    shape = Shape.of(per_minute(history), 540.0)
    start = profile_start(history).timestamp() + shape.busiest_day * DAY_MIN * 60
    sprof, parts = stress_profile(shape, 1.0, "final", start)
    assert sprof.start_epoch_s == start
    assert all(a % DAY_MIN == 0 and b % DAY_MIN == 0 for a, b in parts.values())


def test_extremes_that_may_have_landed_in_the_busy_hours_by_chance_are_no_rhythm() -> None:
    from tuner.model.timetable import profile_start
    from tuner.tune.history import per_minute
    from tuner.tune.schedules import extremes_keep_to

    history = busy_days(5)
    rhythm = detect_rhythm(history)
    assert rhythm is not None
    rates, start = per_minute(history), profile_start(history)
    ok, words = extremes_keep_to(rhythm, rates, start, 9)
    assert ok and "5 of the 5 days' largest rises" in words and "by chance: 2%" in words
    # the same rhythm with the surges on two days only: (11/24)^2 = 21% by chance
    calm = rates.copy()
    for day in range(2, 5):
        day_rates = calm[day * 1440 : (day + 1) * 1440]
        day_rates[day_rates > 40.5] = 40.0
    ok, words = extremes_keep_to(rhythm, calm, start, 9)
    assert not ok and "2 of the 2 days' largest rises" in words and "21%" in words
