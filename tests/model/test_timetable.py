"""Scheduled actions on the simulated clock: cron in a time zone turned into profile seconds, and
a scheduled floor simulated against hand-computed capacity and cost."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd

from tuner.model.capacity import Capacity
from tuner.model.scaling import ScheduledAction
from tuner.model.settings import EXACT
from tuner.model.timetable import DEFAULT_START, profile_start, timeline_actions
from tuner.policy.policy import ScalingPolicy
from tuner.policy.schedule import ScheduledScalingAction
from tuner.profiles.profile_file import parse_profile
from tuner.tune.search import Objective, simulate_candidates

CAPACITY = Capacity.default()  # 20 rps per instance, boot 300 s


def _action(
    name: str, schedule: str, zone: str | None = None, **capacity: int
) -> ScheduledScalingAction:
    return ScheduledScalingAction(name=name, schedule=schedule, timezone=zone, **capacity)  # type: ignore[arg-type]


def test_profile_start_is_the_profile_key_a_replay_or_monday_2024(tmp_path: Path) -> None:
    plain = parse_profile({"name": "p", "segment": [{"hold": "1h", "rps": 1}]})
    assert profile_start(plain) == DEFAULT_START == datetime(2024, 1, 1, tzinfo=UTC)
    assert DEFAULT_START.weekday() == 0  # a Monday
    keyed = parse_profile(
        {"name": "p", "start": "2024-03-30T00:00:00Z", "segment": [{"hold": "1h", "rps": 1}]}
    )
    assert profile_start(keyed) == datetime(2024, 3, 30, tzinfo=UTC)
    csv = tmp_path / "h.csv"
    csv.write_text(
        "timestamp,invocations\n2024-05-06T09:00:00Z,60\n2024-05-06T09:01:00Z,60\n"
        "2024-05-06T09:02:00Z,60\n"
    )
    replay = parse_profile(
        {"name": "r", "segment": [{"replay": "h.csv", "start": "1m"}]}, base_dir=tmp_path
    )
    assert profile_start(replay) == datetime(2024, 5, 6, 9, 1, tzinfo=UTC)
    squeezed = parse_profile(
        {"name": "r", "segment": [{"replay": "h.csv", "time_scale": 0.5}]}, base_dir=tmp_path
    )
    assert squeezed.start_epoch_s is None  # compressed time is not wall-clock time


def test_cron_in_paris_lands_on_profile_seconds_across_dst() -> None:
    # 2024-03-31 02:00 CET -> 03:00 CEST: 08:00 Paris is 07:00 UTC on the 30th, 06:00 UTC on
    # the 31st; the run of the 29th is in force at t = 0
    start = datetime(2024, 3, 30, tzinfo=UTC)
    got = timeline_actions(
        [_action("a", "cron(0 8 * * ? *)", "Europe/Paris", min_capacity=3)], start, 2 * 86400
    )
    assert got == [
        ScheduledAction(0.0, min_capacity=3),
        ScheduledAction(7 * 3600.0, min_capacity=3),
        ScheduledAction(86400 + 6 * 3600.0, min_capacity=3),
    ]


def test_range_in_force_at_t0_comes_from_the_runs_before_it() -> None:
    # the profile starts at 10:00 UTC: the 08:00 floor is already up, the 20:00 one ran yesterday
    on = _action("on", "cron(0 8 * * ? *)", min_capacity=6)
    off = _action("off", "cron(0 20 * * ? *)", min_capacity=1)
    start = datetime(2024, 1, 2, 10, tzinfo=UTC)
    got = timeline_actions([on, off], start, 86400)
    assert got == [
        ScheduledAction(0.0, min_capacity=1),  # off ran at 20:00 the day before ...
        ScheduledAction(0.0, min_capacity=6),  # ... then on at 08:00 today: it wins
        ScheduledAction(10 * 3600.0, min_capacity=1),
        ScheduledAction(22 * 3600.0, min_capacity=6),
    ]


def test_scheduled_floor_simulated_against_hand_computed_capacity() -> None:
    # 10 rps for 3 h from Monday 00:00 UTC; the policy never scales by itself (huge target, no
    # scale-in). 01:00 raises Min to 4 (instances boot 300 s), 02:00 sets Min 1 and Max 2: the
    # capacity, in range after the Min change alone, is moved to Max at once.
    profile = parse_profile({"name": "flat", "segment": [{"hold": "3h", "rps": 10}]})
    base = ScalingPolicy(min_capacity=1, max_capacity=10, target_value=1e6, disable_scale_in=True)
    floor = base.replace(
        scheduled_actions=(
            _action("floor-on", "at(2024-01-01T01:00:00)", min_capacity=4),
            _action("floor-off", "at(2024-01-01T02:00:00)", min_capacity=1, max_capacity=2),
        )
    )
    objective = Objective(slo_p99_ms=1000, max_error_rate=0.01)
    result = simulate_candidates(
        profile, [base, floor, base.replace(max_capacity=9)], CAPACITY, objective, EXACT, 0
    )
    t = np.arange(180) * 60
    desired, in_service = result.desired[:, 1], result.in_service[:, 1]
    assert (desired[t < 3600] == 1).all()
    assert (desired[(t >= 3600) & (t < 7200)] == 4).all()
    assert (desired[t >= 7200] == 2).all()
    assert (in_service[t < 3900] == 1).all() and (in_service[(t >= 3900) & (t < 7200)] == 4).all()
    # billed from launch: 60 min x 1 + 60 min x 4 + 60 min x 2 = 7 instance-hours
    summary = result.summary
    assert summary.loc[1, "instance_hours"] == 7.0
    assert summary.loc[0, "instance_hours"] == summary.loc[2, "instance_hours"] == 3.0
    assert list(summary["scale_out_events"]) == [0, 1, 0]
    # the unscheduled candidates beside it are exactly what they are alone
    alone = simulate_candidates(profile, [base], CAPACITY, objective, EXACT, 0)
    pd.testing.assert_frame_equal(
        result.summary.iloc[[0]].drop(columns="label").reset_index(drop=True),
        alone.summary.drop(columns="label"),
    )
    assert result.timeline(1)["desired_capacity"].tolist() == desired.tolist()


def test_simulate_cli_runs_a_policy_files_scheduled_actions(tmp_path: Path) -> None:
    from tuner.cli import main

    (tmp_path / "flat.toml").write_text('name = "flat"\n[[segment]]\nhold = "3h"\nrps = 10\n')
    floor = ScalingPolicy(
        min_capacity=1,
        max_capacity=10,
        target_value=1e6,
        disable_scale_in=True,
        scheduled_actions=(
            _action("floor-on", "at(2024-01-01T01:00:00)", min_capacity=4),
            _action("floor-off", "at(2024-01-01T02:00:00)", min_capacity=1, max_capacity=2),
        ),
    )
    floor.save(tmp_path / "floor.policy.json")
    args = ["simulate", "--profile", str(tmp_path / "flat.toml"), "--metric-lag-s", "0"]
    args += ["--policy", str(tmp_path / "floor.policy.json"), "--out", str(tmp_path / "out")]
    assert main(args) == 0
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["instance_hours"] == 7.0  # as by hand above: 1 h x 1 + 1 h x 4 + 1 h x 2
    assert summary["policy"]["ScheduledActions"][0]["ScheduledActionName"] == "floor-off"
