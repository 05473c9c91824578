"""A target with step policies and no target tracking, through the controller, the vectorised
simulator and `tuner simulate`, checked to the period against hand calculations."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import scalar_model

from tests.model.helpers import assert_matches_scalar
from tests.model.test_step_scaling import _scenario
from tuner.model.capacity import Capacity
from tuner.model.controller import TargetTracking
from tuner.model.scaling import AlarmState, ModelChoices, ScalingCause, step_s_for
from tuner.model.settings import SimulationSettings
from tuner.model.simulator import simulate_demand
from tuner.policy import (
    AdjustmentType,
    Comparison,
    ScalingPolicy,
    StepAdjustment,
    StepAlarm,
    StepScalingPolicy,
)

EXACT = ModelChoices(metric_lag_s=0, boot_s=120)
UP = StepScalingPolicy(
    name="up",
    # Sum of InvocationsPerInstance over 1 minute >= 1000: +2 instances
    alarm=StepAlarm(threshold=1000.0),
    steps=(StepAdjustment(2, 0.0, None),),
    cooldown_s=0,
)
DOWN = StepScalingPolicy(
    name="down",
    # 2 of 2 minutes < 100 per instance: -1 instance
    alarm=StepAlarm(
        threshold=100.0,
        evaluation_periods=2,
        datapoints_to_alarm=2,
        comparison=Comparison.LESS,
    ),
    steps=(StepAdjustment(-1, None, 0.0),),
    cooldown_s=0,
)
STEP_ONLY = ScalingPolicy(min_capacity=1, max_capacity=10, step_policies=(UP,))


def run(policy: ScalingPolicy, per_minute: list[float]) -> tuple[list[int], list[tuple]]:
    """Step the controller with InvocationsPerInstance = requests / instances in service."""
    tt = TargetTracking([policy], choices=EXACT)
    desired, events = [], []
    for k, requests in enumerate(per_minute):
        r = tt.step(k, requests / float(tt.in_service[0]))
        desired.append(int(r.desired[0]))
        events += [(e.t_s, e.from_capacity, e.to_capacity, e.cause, e.policy) for e in r.events]
        # the target-tracking slot of a step-only policy has no alarms at all
        assert r.alarm_high.tolist() == r.alarm_low.tolist() == [[AlarmState.INSUFFICIENT_DATA]]
    return desired, events


def test_change_in_capacity_plus_two_at_the_threshold_by_hand():
    # minute 0 (t 0-60): 999 on 1 instance: below 1000, OK.
    # minute 1: 1000 >= 1000 -> at t=120 desired 1 -> 3; the boot ends at t=240.
    # minute 2: 1000 on 1 (still booting at t=180): ALARM, but a running scale-out blocks.
    # minute 3 (t 180-240, 1 in service): 1000 -> at t=240 the boot completes, then +2: 3 -> 5.
    # minute 4 (t 240-300, 3 in service): 3000 / 3 = 1000 -> booting until 360: no change.
    # minute 5 (t 300-360, 3 in service): 900 / 3 = 300: OK. Nothing scales in: no such step.
    desired, events = run(STEP_ONLY, [999, 1000, 1000, 1000, 3000, 900, 0, 0])
    assert desired == [1, 3, 3, 5, 5, 5, 5, 5]
    assert events == [
        (120.0, 1, 3, ScalingCause.STEP_ALARM, "up"),
        (240.0, 3, 5, ScalingCause.STEP_ALARM, "up"),
    ]


def test_a_scale_in_step_policy_alone_scales_in_to_min():
    policy = ScalingPolicy(min_capacity=2, max_capacity=10, step_policies=(UP, DOWN))
    tt = TargetTracking([policy], choices=EXACT, initial_capacity=4)
    # 4 instances, 200 a minute = 50 each: minute 0 is 1 of 2 datapoints, minute 1 the second
    # -> at t=120 4 -> 3; then 200/3 = 66.7: still 2 of 2 below 100 -> t=180 3 -> 2 (Min);
    # at Min the step asks for 1, clamped to 2: no activity.
    desired = [int(tt.step(k, 200 / float(tt.in_service[0])).desired[0]) for k in range(5)]
    assert desired == [4, 3, 2, 2, 2]
    assert [(e.t_s, e.to_capacity, e.policy) for e in tt.events] == [
        (120.0, 3, "down"),
        (180.0, 2, "down"),
    ]


def test_the_simulator_runs_step_only_as_a_step_policy_beside_a_target_tracking_that_never_acts():
    rng = np.random.default_rng(7)
    demand = rng.uniform(0, 4000, 240).round()
    quiet = ScalingPolicy(
        min_capacity=1,
        max_capacity=10,
        target_value=1e9,
        disable_scale_in=True,
        step_policies=(UP, DOWN),
    )
    alone = ScalingPolicy(min_capacity=1, max_capacity=10, step_policies=(UP, DOWN))
    pct = StepScalingPolicy(
        name="pct",
        alarm=StepAlarm(threshold=1500.0),
        steps=(StepAdjustment(50, 0.0, None),),
        adjustment_type=AdjustmentType.PERCENT_CHANGE_IN_CAPACITY,
        min_adjustment_magnitude=2,
        cooldown_s=300,
    )
    alone_pct = ScalingPolicy(min_capacity=1, max_capacity=10, step_policies=(pct, DOWN))
    quiet_pct = quiet.replace(step_policies=(pct, DOWN))
    settings = SimulationSettings(boot_s=120, metric_lag_s=60, boot_jitter_s=0.0)
    r = simulate_demand(
        demand, 60, [quiet, alone, quiet_pct, alone_pct], Capacity.default(), settings=settings
    )
    assert r.desired[:, 0].tolist() == r.desired[:, 1].tolist()
    assert r.desired[:, 2].tolist() == r.desired[:, 3].tolist()
    assert r.desired[:, 1].max() > 1 and r.desired[:, 3].max() > 1  # they did scale
    assert r.summary.label[1] == "step-min1-max10-s1000+2-s100-1"
    assert not r.alarm_low[:, 1].any() and not r.alarm_high[:, 1].any()


def test_cli_simulate_a_step_only_policy_file(tmp_path: Path, capsys) -> None:
    from tuner.cli import main

    profile = tmp_path / "spike.toml"
    profile.write_text(
        'name = "spike"\n[[segment]]\nhold = "10m"\nrps = 5\n[[segment]]\nhold = "20m"\nrps = 35\n'
    )
    pol = tmp_path / "step.policy.json"
    pol.write_text(
        json.dumps(
            {
                "ScalableTarget": {"MinCapacity": 1, "MaxCapacity": 10},
                "StepScalingPolicies": [
                    {
                        "PolicyName": "up",
                        "StepScalingPolicyConfiguration": {
                            "AdjustmentType": "ChangeInCapacity",
                            "Cooldown": 300,
                            "StepAdjustments": [
                                {"MetricIntervalLowerBound": 0, "ScalingAdjustment": 2}
                            ],
                        },
                        "Alarm": {
                            "MetricName": "InvocationsPerInstance",
                            "Statistic": "Sum",
                            "Period": 60,
                            "EvaluationPeriods": 1,
                            "Threshold": 1800,
                            "ComparisonOperator": "GreaterThanOrEqualToThreshold",
                        },
                    }
                ],
            }
        )
    )
    out = tmp_path / "out"
    args = ["simulate", "--profile", str(profile), "--policy", str(pol), "--out", str(out)]
    assert main([*args, "--metric-lag-s", "0", "--boot-s", "120", "--boot-jitter-s", "0"]) == 0
    tl = pd.read_csv(out / "timeline.csv").set_index("t_s")
    # 300 a minute on 1 instance for 10 minutes, then 2100: the minute 600-660 is visible at
    # 660 (no lag) -> +2: desired 3, in service at 780. The alarm stays in ALARM (2100 on the
    # 1 instance serving until 780), but the cooldown (300 s from 780) counts the +2 already
    # added: 1 + 2 = 3 is no larger scale-out. From 780, 2100 / 3 = 700 < 1800: OK.
    assert tl.loc[600, "desired_capacity"] == 1 and tl.loc[660, "desired_capacity"] == 3
    assert tl.loc[720, "instances_in_service"] == 1 and tl.loc[780, "instances_in_service"] == 3
    assert set(tl.loc[660:, "desired_capacity"]) == {3}
    assert (tl["alarm_low"] == 0).all() and (tl["alarm_high"] == 0).all()
    summary = json.loads((out / "summary.json").read_text())
    assert summary["scale_out_events"] == 1 and summary["scale_in_events"] == 0
    assert "step-min1-max10-s1800+2" in capsys.readouterr().out + json.dumps(summary)


def test_vectorised_simulator_matches_the_scalar_model_with_step_policies_alone():
    # the random scenarios of test_step_scaling.py, each candidate's step policies without its
    # target tracking; the scalar model then runs with no target-tracking rule at all
    serving = scalar_model.Serving(20.0, 60.0, [(5, 40.0), (20, 60.0)])
    compared = scaled = 0
    for seed in range(60):
        sc = _scenario(seed)
        alone = [
            ScalingPolicy(
                min_capacity=p.min_capacity,
                max_capacity=p.max_capacity,
                step_policies=p.step_policies,
            )
            for p in sc["candidates"]
            if p.step_policies
        ]
        if not alone or step_s_for(alone) != sc["step_s"]:
            continue  # a 10-s scenario whose step alarms are all 60-s ones
        result = simulate_demand(
            sc["demand"],
            sc["step_s"],
            alone,
            Capacity.default(),
            initial_capacity=sc["initial"],
            scheduled=sc["scheduled"],
            settings=SimulationSettings(
                boot_s=sc["boot_s"], metric_lag_s=sc["lag_s"], boot_jitter_s=0.0
            ),
        )
        for i, p in enumerate(alone):
            where = f"seed {seed} candidate {i} ({p.label})"
            ref = assert_matches_scalar(result, i, p, sc, [], serving, where)
            compared += 1
            scaled += (ref.scale_outs + ref.scale_ins) > 0
    # worth something only if many candidates were compared and most of them did scale
    assert compared >= 60 and scaled >= compared // 2, (compared, scaled)
