"""Scheduled floors end to end on the local AWS: a tuning on a diurnal history recommends a floor,
`tuner apply` puts it (replacing the scheduled action that was there), the local AWS runs it at
its virtual time (08:00 UTC of the emulated clock), and `tuner restore` puts back exactly what
`tuner snapshot` saw."""

from __future__ import annotations

import dataclasses
import json
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import local_client
from tuner.cli import main
from tuner.emulator import EmulatorConfig, LocalAws
from tuner.model.capacity import Capacity
from tuner.model.settings import SimulationSettings
from tuner.profiles.profile import Profile
from tuner.profiles.profile_file import parse_profile
from tuner.tune import Grid, Objective, tune

ENDPOINT = "floor-endpoint"
RESOURCE_ID = f"endpoint/{ENDPOINT}/variant/AllTraffic"
DIMENSION = "sagemaker:variant:DesiredInstanceCount"
SPEED = 60.0
CAPACITY = dataclasses.replace(Capacity.default(), boot_s=60)


def busy_days(days: int = 2) -> Profile:
    """Quiet nights (4 rps), 40 rps from 09:00 to 19:00 UTC with a 3-minute surge to 300 rps every
    two hours (shorter than target tracking can absorb: only standing capacity meets it)."""
    segments: list[dict[str, Any]] = []
    for _ in range(days):
        segments += [{"hold": "8h", "rps": 4}, {"ramp": "1h", "to_rps": 40}]
        segments += [
            {
                "spike": "2h",
                "baseline_rps": 40,
                "peak_rps": 300,
                "at": "50m",
                "rise": "30s",
                "hold": "3m",
                "fall": "30s",
            }
        ] * 5
        segments += [{"ramp": "1h", "to_rps": 4}, {"hold": "4h", "rps": 4}]
    return parse_profile({"name": "busy-days", "segment": segments})


def _tuner(capsys: pytest.CaptureFixture[str], *args: str) -> str:
    """The CLI in this process (a subprocess takes seconds to import; the clock runs meanwhile)."""
    capsys.readouterr()
    assert main(list(args)) == 0, capsys.readouterr().err
    return capsys.readouterr().out


def _actions(aas: Any) -> list[dict[str, Any]]:
    out = aas.describe_scheduled_actions(ServiceNamespace="sagemaker", ResourceId=RESOURCE_ID)
    return sorted(
        (
            {k: v for k, v in a.items() if k not in ("CreationTime", "ScheduledActionARN")}
            for a in out["ScheduledActions"]
        ),
        key=lambda a: a["ScheduledActionName"],
    )


def test_tuned_floor_is_applied_fired_at_its_virtual_time_and_restored(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    tuning = tune(
        [busy_days()],
        Objective(slo_p99_ms=300, max_error_rate=0.001),
        capacity=CAPACITY,
        settings=SimulationSettings(seeds=(0,)),
        grid=Grid(
            target_fractions=(0.85,), scale_out_cooldowns_s=(0,), scale_in_cooldowns_s=(300,)
        ),
        holdout=0,  # floors are searched on the scenario path (no held-out split)
    )
    policy = tuning.recommended
    actions = {a.name: a for a in policy.scheduled_actions or ()}
    assert set(actions) == {"tuner-floor-on", "tuner-floor-off"}, tuning.recommendation.reasons
    on = actions["tuner-floor-on"]
    # busy 09:00-19:00, raised an hour early; surges of 300 rps need 15 instances of 20 rps
    assert on.schedule == "cron(0 8 * * ? *)" and on.min_capacity == 15
    assert actions["tuner-floor-off"].schedule == "cron(0 19 * * ? *)"
    assert policy.min_capacity == actions["tuner-floor-off"].min_capacity == 1
    path = policy.save(tmp_path / "recommended.policy.json")

    floor_at = datetime(2024, 1, 1, 8, tzinfo=UTC)
    config = EmulatorConfig(
        speed=SPEED,
        endpoint=ENDPOINT,
        capacity=CAPACITY,
        instances=1,
        # 10 virtual minutes (10 s) for the CLI calls below before the floor's time
        virtual_start_s=(floor_at - timedelta(minutes=10)).timestamp(),
    )
    with LocalAws(config) as aws:
        for key, value in aws.env.items():
            monkeypatch.setenv(key, value)
        aas = local_client(aws, "application-autoscaling")
        # what was there before: a range and a scheduled action of the team's own
        aas.register_scalable_target(
            ServiceNamespace="sagemaker",
            ResourceId=RESOURCE_ID,
            ScalableDimension=DIMENSION,
            MinCapacity=1,
            MaxCapacity=4,
        )
        aas.put_scheduled_action(
            ServiceNamespace="sagemaker",
            ResourceId=RESOURCE_ID,
            ScalableDimension=DIMENSION,
            ScheduledActionName="team-weekend",
            Schedule="cron(0 9 ? * SAT *)",
            Timezone="Europe/Paris",
            StartTime=datetime(2024, 1, 6, tzinfo=UTC),
            ScalableTargetAction={"MinCapacity": 2, "MaxCapacity": 4},
        )
        before = _actions(aas)
        _tuner(capsys, "snapshot", "--endpoint", ENDPOINT, "--out", str(tmp_path / "before.json"))

        dry = _tuner(capsys, "apply", str(path), "--endpoint", ENDPOINT, "--dry-run")
        assert "ScheduledAction team-weekend" in dry and "-> (deleted)" in dry
        assert "ScheduledAction tuner-floor-on   (none) -> cron(0 8 * * ? *) UTC Min 15" in dry
        assert "DeleteScheduledAction" in dry and dry.count("PutScheduledAction") == 2
        assert _actions(aas) == before  # a dry run changes nothing
        _tuner(capsys, "apply", str(path), "--endpoint", ENDPOINT)
        assert aws.clock.now() < floor_at.timestamp() - 10, "the machine is too slow for this test"
        assert [a["ScheduledActionName"] for a in _actions(aas)] == [
            "tuner-floor-off",
            "tuner-floor-on",
        ]

        # wait for 08:00 + boot (60 s) + a step, in virtual time
        deadline = floor_at.timestamp() + 90
        while aws.clock.now() < deadline:
            time.sleep(0.2)
        target = aas.describe_scalable_targets(
            ServiceNamespace="sagemaker", ResourceIds=[RESOURCE_ID]
        )["ScalableTargets"][0]
        assert (target["MinCapacity"], target["MaxCapacity"]) == (15, policy.max_capacity)
        activities = aas.describe_scaling_activities(
            ServiceNamespace="sagemaker", ResourceId=RESOURCE_ID
        )["ScalingActivities"]
        fired = [a for a in activities if "tuner-floor-on" in a["Cause"]]
        assert len(fired) == 1, activities
        assert fired[0]["StartTime"] == floor_at
        assert fired[0]["Description"] == "Setting desired instance count to 15."
        assert fired[0]["StatusCode"] == "Successful"
        assert fired[0]["EndTime"] == floor_at + timedelta(seconds=60)
        # instances: 1 until 08:00, 15 desired from 08:00, in service after the boot
        rows = aws.timeline()["rows"]
        by_time = {datetime.fromtimestamp(t, tz=UTC): (n, d) for t, n, d in rows}
        assert by_time[floor_at - timedelta(seconds=10)] == (1, 1)
        assert by_time[floor_at] == (1, 15)
        assert by_time[floor_at + timedelta(seconds=60)] == (15, 15)
        variant = local_client(aws, "sagemaker").describe_endpoint(EndpointName=ENDPOINT)
        assert variant["ProductionVariants"][0]["CurrentInstanceCount"] == 15

        _tuner(capsys, "restore", str(tmp_path / "before.json"))
        assert _actions(aas) == before
        restored = aas.describe_scalable_targets(
            ServiceNamespace="sagemaker", ResourceIds=[RESOURCE_ID]
        )["ScalableTargets"][0]
        assert (restored["MinCapacity"], restored["MaxCapacity"]) == (1, 4)
        assert (
            json.loads((tmp_path / "before.json").read_text())["scheduled_actions"][0]["Timezone"]
            == "Europe/Paris"
        )
