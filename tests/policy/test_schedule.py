"""Scheduled actions: the AWS cron evaluator against hand-computed times (time zones, DST), the
policy file's ScheduledActions (validation, round trip), and their exports."""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tests.policy.helpers import assert_cfn_lint_passes
from tuner.errors import PolicyError
from tuner.policy import Resource, ScalingPolicy, export_policy, format_diff
from tuner.policy.cron import fire_times, parse_schedule, timezone
from tuner.policy.schedule import ScheduledScalingAction


def _utc(year: int, month: int, day: int, hour: int = 0) -> datetime:
    return datetime(year, month, day, hour, tzinfo=UTC)


def _fires(
    expr: str,
    start: datetime,
    end: datetime,
    zone: str | None = None,
    **window: datetime,
) -> list[str]:
    times = fire_times(parse_schedule(expr), start, end, zone=timezone(zone), **window)
    return [t.strftime("%Y-%m-%d %H:%M") for t in times]


@pytest.mark.parametrize(
    ("expr", "start", "end", "zone", "expected"),
    [
        # 2024-01-01 is a Monday: Friday the 5th, then Monday the 8th
        (
            "cron(0 7 ? * MON-FRI *)",
            _utc(2024, 1, 5),
            _utc(2024, 1, 9),
            None,
            ["2024-01-05 07:00", "2024-01-08 07:00"],
        ),
        (
            "cron(0/15 9 * * ? *)",
            _utc(2024, 1, 1),
            _utc(2024, 1, 2),
            None,
            ["2024-01-01 09:00", "2024-01-01 09:15", "2024-01-01 09:30", "2024-01-01 09:45"],
        ),
        (
            "cron(5-50/20 9 * * ? *)",
            _utc(2024, 1, 1),
            _utc(2024, 1, 2),
            None,
            ["2024-01-01 09:05", "2024-01-01 09:25", "2024-01-01 09:45"],
        ),
        # L: the last day of the month (2024 is a leap year)
        (
            "cron(0 12 L * ? 2024)",
            _utc(2024, 1, 1),
            _utc(2024, 3, 1),
            None,
            ["2024-01-31 12:00", "2024-02-29 12:00"],
        ),
        # 2#1: the first Monday
        (
            "cron(0 10 ? * 2#1 *)",
            _utc(2024, 1, 1),
            _utc(2024, 3, 31),
            None,
            ["2024-01-01 10:00", "2024-02-05 10:00", "2024-03-04 10:00"],
        ),
        # 6L: the last Friday
        (
            "cron(0 10 ? * 6L *)",
            _utc(2024, 1, 1),
            _utc(2024, 3, 1),
            None,
            ["2024-01-26 10:00", "2024-02-23 10:00"],
        ),
        # 15W: 2024-06-15 is a Saturday -> Friday 14th; 2024-09-15 a Sunday -> Monday 16th
        ("cron(0 9 15W * ? *)", _utc(2024, 6, 1), _utc(2024, 7, 1), None, ["2024-06-14 09:00"]),
        ("cron(0 9 15W * ? *)", _utc(2024, 9, 1), _utc(2024, 10, 1), None, ["2024-09-16 09:00"]),
        # names, lists and a year range
        (
            "cron(0 0 1 JAN,jul ? 2025-2026)",
            _utc(2024, 1, 1),
            _utc(2027, 1, 1),
            None,
            ["2025-01-01 00:00", "2025-07-01 00:00", "2026-01-01 00:00", "2026-07-01 00:00"],
        ),
        # Europe/Paris: 08:00 CET is 07:00 UTC; from 2024-03-31 08:00 CEST is 06:00 UTC
        (
            "cron(0 8 * * ? *)",
            _utc(2024, 3, 30),
            _utc(2024, 4, 1),
            "Europe/Paris",
            ["2024-03-30 07:00", "2024-03-31 06:00"],
        ),
        # New York spring forward 2024-03-10: 02:30 does not exist that day -> skipped
        (
            "cron(30 2 * * ? *)",
            _utc(2024, 3, 9),
            _utc(2024, 3, 12),
            "America/New_York",
            ["2024-03-09 07:30", "2024-03-11 06:30"],
        ),
        # New York fall back 2024-11-03: 01:30 happens twice -> runs once, the first (EDT)
        (
            "cron(30 1 * * ? *)",
            _utc(2024, 11, 2),
            _utc(2024, 11, 5),
            "America/New_York",
            ["2024-11-02 05:30", "2024-11-03 05:30", "2024-11-04 06:30"],
        ),
        # at() is read in the time zone too: 08:00 in Tokyo is 23:00 UTC the day before
        (
            "at(2024-06-01T08:00:00)",
            _utc(2024, 5, 1),
            _utc(2024, 7, 1),
            "Asia/Tokyo",
            ["2024-05-31 23:00"],
        ),
    ],
)
def test_fire_times_match_hand_computed_instants(
    expr: str, start: datetime, end: datetime, zone: str | None, expected: list[str]
) -> None:
    assert _fires(expr, start, end, zone) == expected


def test_start_and_end_time_bound_a_recurring_schedule() -> None:
    # AAS runs the action at StartTime, then on the recurrence, and never after EndTime.
    got = _fires(
        "cron(0 8 * * ? *)",
        _utc(2024, 1, 1),
        _utc(2024, 1, 5),
        start_time=_utc(2024, 1, 1, 5),
        end_time=_utc(2024, 1, 3),
    )
    assert got == ["2024-01-01 05:00", "2024-01-01 08:00", "2024-01-02 08:00"]
    rate = _fires(
        "rate(6 hours)", _utc(2024, 1, 1), _utc(2024, 1, 2), start_time=_utc(2024, 1, 1, 3)
    )
    assert rate == ["2024-01-01 03:00", "2024-01-01 09:00", "2024-01-01 15:00", "2024-01-01 21:00"]


@pytest.mark.parametrize(
    ("expr", "message"),
    [
        ("cron(0 7 * * ?)", "cron needs 6 fields"),
        ("cron(0 7 * * MON *)", "exactly one of day-of-month and day-of-week must be '?'"),
        ("cron(0 7 ? * ? *)", "exactly one of day-of-month and day-of-week must be '?'"),
        ("cron(60 7 * * ? *)", "values must be in 0..59, got 60"),
        ("cron(0 7 * FOO ? *)", "'FOO' is not a number or a name"),
        ("cron(0 7 * * ? 1969)", "values must be in 1970..2199"),
        ("cron(0 ? * * ? *)", "'?' is allowed only in day-of-month or day-of-week"),
        ("rate(0 minutes)", "positive integer"),
        ("rate(5 weeks)", "positive integer and one of"),
        ("at(2024-02-30T08:00:00)", "not a valid date and time"),
        ("every day at 8", "must be at(yyyy-mm-ddThh:mm:ss), rate(value unit) or cron"),
    ],
)
def test_bad_schedules_say_which_rule(expr: str, message: str) -> None:
    with pytest.raises(PolicyError, match=message.replace("(", r"\(").replace(")", r"\)")):
        parse_schedule(expr)


POLICY = {
    "ScalableTarget": {"MinCapacity": 1, "MaxCapacity": 12},
    "TargetTrackingScalingPolicyConfiguration": {
        "TargetValue": 600.0,
        "PredefinedMetricSpecification": {
            "PredefinedMetricType": "SageMakerVariantInvocationsPerInstance"
        },
        "ScaleOutCooldown": 60,
        "ScaleInCooldown": 600,
        "DisableScaleIn": False,
    },
    "ScheduledActions": [
        {
            "ScheduledActionName": "weekday-floor",
            "Schedule": "cron(0 7 ? * MON-FRI *)",
            "Timezone": "Europe/Paris",
            "ScalableTargetAction": {"MinCapacity": 6},
        },
        {
            "ScheduledActionName": "weekday-night",
            "Schedule": "cron(0 21 ? * MON-FRI *)",
            "Timezone": "Europe/Paris",
            "ScalableTargetAction": {"MinCapacity": 1, "MaxCapacity": 8},
            "StartTime": "2024-01-01T00:00:00Z",
            "EndTime": "2030-01-01T00:00:00Z",
        },
    ],
}


def test_policy_file_round_trips_scheduled_actions(tmp_path: Path) -> None:
    path = tmp_path / "p.policy.json"
    path.write_text(json.dumps(POLICY))
    policy = ScalingPolicy.load(path)
    assert [a.name for a in policy.scheduled_actions or ()] == ["weekday-floor", "weekday-night"]
    night = (policy.scheduled_actions or ())[1]
    assert (night.min_capacity, night.max_capacity) == (1, 8)
    assert night.end_time == _utc(2030, 1, 1)
    assert policy.to_dict() == POLICY
    assert ScalingPolicy.load(policy.save(tmp_path / "again.policy.json")) == policy
    # the label tells a scheduled candidate from the same policy without a schedule
    assert policy.label != policy.replace(scheduled_actions=None).label
    # a file without the key does not manage scheduled actions at all
    plain = {k: v for k, v in POLICY.items() if k != "ScheduledActions"}
    assert ScalingPolicy.from_dict(plain).scheduled_actions is None
    assert "ScheduledActions" not in ScalingPolicy.from_dict(plain).to_dict()


def _with_action(**changes: object) -> dict[str, object]:
    action = dict(POLICY["ScheduledActions"][0], **changes)  # type: ignore[index]
    return dict(POLICY, ScheduledActions=[action])


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (
            _with_action(Schedule="cron(0 7 * * MON *)"),
            "ScheduledActions['weekday-floor'].Schedule",
        ),
        (_with_action(Timezone="Mars/Olympus"), "Timezone must be an IANA time zone name"),
        (_with_action(ScalableTargetAction={}), "must set MinCapacity, MaxCapacity or both"),
        (
            _with_action(ScalableTargetAction={"MinCapacity": 5, "MaxCapacity": 2}),
            "MinCapacity <= MaxCapacity must hold, got 5 > 2",
        ),
        (
            _with_action(ScalableTargetAction={"MinCapacity": 0}),
            "MinCapacity >= 1 must hold for an endpoint variant, got 0",
        ),
        (_with_action(Colour="red"), "unknown key 'Colour'"),
        (_with_action(StartTime="tomorrow"), "StartTime must be an ISO-8601 date and time"),
        (dict(POLICY, ScheduledActions={"a": 1}), "ScheduledActions must be a JSON list"),
        (
            dict(POLICY, ScheduledActions=[POLICY["ScheduledActions"][0]] * 2),  # type: ignore[index]
            "'weekday-floor' appears twice",
        ),
    ],
)
def test_invalid_scheduled_actions_fail_with_one_clear_line(
    data: dict[str, object], message: str
) -> None:
    with pytest.raises(PolicyError) as info:
        ScalingPolicy.from_dict(data)
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_cli_rejects_a_bad_schedule_with_exit_2(tmp_path: Path) -> None:
    path = tmp_path / "bad.policy.json"
    path.write_text(json.dumps(_with_action(Schedule="cron(99 7 * * ? *)")))
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "tuner",
            "export",
            str(path),
            "--endpoint",
            "e",
            "--format",
            "aws-cli",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert "minutes field '99': values must be in 0..59, got 99" in proc.stderr
    assert "Traceback" not in proc.stderr


RESOURCE = Resource.for_variant("my-endpoint", "AllTraffic")


def test_aws_cli_export_applied_by_the_real_cli_reads_back_equal(
    moto_server: str, subprocess_env: dict[str, str]
) -> None:
    import boto3

    from tuner.aws import AutoScaling

    policy = ScalingPolicy.from_dict(POLICY)
    text = export_policy(policy, RESOURCE, "aws-cli")
    commands = [shlex.split(block) for block in text.strip().split("\n\n")]
    assert [c[2] for c in commands] == [
        "register-scalable-target",
        "put-scaling-policy",
        "put-scheduled-action",
        "put-scheduled-action",
    ]
    # the first two are run by the real CLI in test_export.py; here the scheduled actions are
    client = boto3.client("application-autoscaling", endpoint_url=moto_server)
    scaling = AutoScaling(client)
    for args in (
        policy.register_scalable_target_args(RESOURCE),
        policy.put_scaling_policy_args(RESOURCE),
    ):
        (client.register_scalable_target if "MinCapacity" in args else client.put_scaling_policy)(
            **args
        )
    for argv in commands[2:]:
        argv = [str(Path(sys.executable).parent / "aws"), *argv[1:], "--endpoint-url", moto_server]
        result = subprocess.run(
            argv, capture_output=True, text=True, env=subprocess_env, timeout=120
        )
        assert result.returncode == 0, result.stderr
    assert scaling.read_policy(RESOURCE, with_schedules=True) == policy


def test_cloudformation_export_carries_scheduled_actions_and_passes_cfn_lint(
    tmp_path: Path,
) -> None:
    import yaml  # cfn-lint depends on PyYAML

    text = export_policy(ScalingPolicy.from_dict(POLICY), RESOURCE, "cloudformation")
    template = yaml.safe_load(text)
    target = template["Resources"]["ScalableTarget"]["Properties"]
    assert target["ScheduledActions"] == POLICY["ScheduledActions"]
    path = tmp_path / "asg.yaml"
    path.write_text(text)
    assert_cfn_lint_passes(path)


def test_terraform_export_has_one_scheduled_action_resource_each() -> None:
    text = export_policy(ScalingPolicy.from_dict(POLICY), RESOURCE, "terraform")
    blocks = text.split('resource "aws_appautoscaling_scheduled_action" ')[1:]
    assert len(blocks) == 2
    floor, night = blocks
    assert floor.startswith('"my_endpoint_weekday_floor" {')
    assert 'schedule           = "cron(0 7 ? * MON-FRI *)"' in floor
    assert 'timezone           = "Europe/Paris"' in floor
    assert "min_capacity = 6" in floor and "max_capacity" not in floor
    assert 'start_time         = "2024-01-01T00:00:00Z"' in night
    assert 'end_time           = "2030-01-01T00:00:00Z"' in night
    assert "min_capacity = 1" in night and "max_capacity = 8" in night
    # puts on one target are serialised
    assert "depends_on = [aws_appautoscaling_scheduled_action.my_endpoint_weekday_floor]" in night
    assert text.count("{") == text.count("}")


def test_diff_lists_added_changed_and_deleted_scheduled_actions() -> None:
    wanted = ScalingPolicy.from_dict(POLICY)
    old_floor = ScheduledScalingAction(
        name="weekday-floor", schedule="cron(0 8 ? * MON-FRI *)", min_capacity=4
    )
    gone = ScheduledScalingAction(
        name="old-weekend", schedule="cron(0 9 ? * SAT *)", min_capacity=2
    )
    live = wanted.replace(scheduled_actions=(old_floor, gone))
    text = format_diff(live, wanted)
    assert (
        "ScheduledAction weekday-floor  cron(0 8 ? * MON-FRI *) UTC Min 4 -> "
        "cron(0 7 ? * MON-FRI *) Europe/Paris Min 6"
    ) in text
    assert "ScheduledAction weekday-night  (none) -> cron(0 21 ? * MON-FRI *)" in text
    assert "ScheduledAction old-weekend    cron(0 9 ? * SAT *) UTC Min 2 -> (deleted)" in text
    # a file without ScheduledActions leaves them out of the diff
    assert "ScheduledAction" not in format_diff(live, wanted.replace(scheduled_actions=None))
