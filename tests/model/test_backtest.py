"""The backtest's replay, comparison and fit, on the reference's worked example (§5) by hand.

Load 300/min for 10 minutes, then 2,100/min; T = 600, Min 1, Max 10; with no metric delay
AlarmHigh sees datapoints 10, 11, 12 above T at t = 780 s and D := ceil(2100/600) = 4;
instances serve 300 s later, at 1,080 s.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest

from tuner.errors import ValidationError
from tuner.model.backtest import (
    PolicySpan,
    RecordedActivity,
    Recording,
    backtest,
    compare,
    desired_per_minute,
    recorded_decisions,
    replay,
)
from tuner.model.recording import choices_from_alarms, recording_from
from tuner.model.scaling import ModelChoices, ScalingKind
from tuner.policy.policy import ScalingPolicy

T0 = 1_800_000_000.0  # a whole minute
POLICY = ScalingPolicy(min_capacity=1, max_capacity=10, target_value=600.0, name="tt")
DEMAND = np.array([300.0] * 10 + [2100.0] * 20)
DEFAULTS = ModelChoices(metric_lag_s=60.0, boot_s=300.0)


def _recording(activities: tuple[RecordedActivity, ...], **kw: object) -> Recording:
    args: dict[str, object] = {
        "start_s": T0,
        "invocations": DEMAND,
        "activities": activities,
        "spans": (PolicySpan(T0, (POLICY,)),),
        "initial_capacity": 1,
    }
    args.update(kw)
    return Recording(**args)  # type: ignore[arg-type]


RECORDED = (RecordedActivity(T0 + 780, T0 + 1080, 4),)


def test_replay_reproduces_the_worked_example() -> None:
    decisions = replay(_recording(RECORDED), metric_lag_s=0.0, boot_s=300.0)
    assert [(d.t_s, d.kind, d.from_capacity, d.to_capacity) for d in decisions] == [
        (780.0, ScalingKind.OUT, 1, 4)
    ]
    # each 10 s of delay moves the decision by 10 s (the replay runs in 10-s steps)
    later = replay(_recording(RECORDED), metric_lag_s=90.0, boot_s=300.0)
    assert [d.t_s for d in later] == [870.0]


def test_desired_per_minute_counts_a_decision_at_the_minute_end() -> None:
    got = desired_per_minute(1, recorded_decisions(_recording(RECORDED)), 30)
    # 780 s is the end of minute 12 (720..780): from that minute on, 4
    assert got.tolist() == [1.0] * 12 + [4.0] * 18


def test_compare_scores_agreement_errors_and_events_by_hand() -> None:
    rec = _recording(RECORDED)
    exact = compare(rec, metric_lag_s=0.0, boot_s=300.0)
    assert exact.agreement == 1.0 and exact.scale_out_errors_s == (0.0,)
    assert (exact.missed, exact.extra) == (0, 0)
    late = compare(rec, metric_lag_s=120.0, boot_s=300.0)
    # decision at 900 s: minutes 12 and 13 (ends 780, 840) disagree -> 28/30
    assert late.scale_out_errors_s == (120.0,)
    assert late.agreement == pytest.approx(28 / 30)
    # no recorded event at all: the model's scale-out is extra
    none = compare(_recording(()), metric_lag_s=0.0, boot_s=300.0)
    assert (none.missed, none.extra) == (0, 1)


def test_backtest_fits_boot_and_delay_and_defaults_score_worse() -> None:
    # two scale-outs recorded with a 90-s delay and a 420-s boot: 1 -> 4 at 870, then the
    # demand doubles and the model asks ceil(4 x 4200/600 ...) within Max 10
    demand = np.array([300.0] * 10 + [2100.0] * 20 + [4200.0] * 20)
    truth = _recording((), invocations=demand)
    decisions = replay(truth, metric_lag_s=90.0, boot_s=420.0)
    assert len(decisions) >= 2
    acts = tuple(RecordedActivity(T0 + d.t_s, T0 + d.t_s + 420, d.to_capacity) for d in decisions)
    rec = _recording(acts, invocations=demand)
    result = backtest(rec, defaults=DEFAULTS)
    f = result.fitted
    assert (f.boot_s, f.boot_spread_s, f.boot_samples) == (420.0, 0.0, len(decisions))
    assert f.metric_lag_s == 90.0
    assert f.metric_lag_uncertainty_s == pytest.approx(10 / np.sqrt(12))
    assert result.fitted_score.agreement == 1.0
    assert result.default_score.agreement < 1.0
    assert result.default_score.mean_scale_out_error_s == pytest.approx(-30.0)
    table = result.minutes_table(T0)
    assert (table["recorded_desired"] == table["simulated_desired"]).all()


def test_each_policy_plays_its_own_span() -> None:
    # at 600 s the target became 3000: 2,100/min then needs 1 instance, so no scale-out
    relaxed = POLICY.replace(target_value=3000.0)
    spans = (PolicySpan(T0 - 3600, (POLICY,)), PolicySpan(T0 + 600, (relaxed,)))
    rec = _recording((), spans=spans)
    assert replay(rec, metric_lag_s=0.0, boot_s=300.0) == []
    assert compare(rec, metric_lag_s=0.0, boot_s=300.0).agreement == 1.0
    only_first = _recording((), spans=spans[:1])
    assert len(replay(only_first, metric_lag_s=0.0, boot_s=300.0)) == 1


def _alarm(kind: str, n: int, of: int, threshold: float) -> dict[str, object]:
    return {
        "AlarmName": f"TargetTracking-endpoint/e/variant/AllTraffic-{kind}-1234",
        "DatapointsToAlarm": n,
        "EvaluationPeriods": of,
        "Period": 60,
        "Threshold": threshold,
    }


def test_alarms_as_created_override_the_defaults_and_say_so() -> None:
    alarms = [_alarm("AlarmHigh", 2, 2, 600.0), _alarm("AlarmLow", 10, 15, 480.0)]
    choices, notes = choices_from_alarms(alarms, POLICY, DEFAULTS)
    assert (choices.high_datapoints, choices.low_datapoints) == (2, 10)
    assert choices.low_ratio == pytest.approx(0.8)
    assert len(notes) == 4  # high count, low "10 of 15", low count, low ratio
    assert any("10 of 15" in n for n in notes)
    # the same shape as the defaults: nothing to say
    same, quiet = choices_from_alarms(
        [_alarm("AlarmHigh", 3, 3, 600.0), _alarm("AlarmLow", 15, 15, 540.0)], POLICY, DEFAULTS
    )
    assert same == DEFAULTS and quiet == ()
    # AlarmHigh on 2 datapoints: 10 and 11 are above T at 720 s, one minute earlier
    rec = _recording((), choices=choices)
    assert [d.t_s for d in replay(rec, metric_lag_s=0.0, boot_s=300.0)] == [720.0]


def test_recording_from_collected_files() -> None:
    stamps = pd.date_range(pd.Timestamp(T0, unit="s", tz="UTC"), periods=30, freq="60s")
    history = pd.DataFrame(
        {
            "timestamp": stamps.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "invocations": DEMAND,
            "instances": [1.0] * 30,
        }
    )
    target = {
        "MinCapacity": 1,
        "MaxCapacity": 10,
        "ScalableDimension": "sagemaker:variant:DesiredInstanceCount",
    }
    doc: dict[str, Any] = {
        "policy_spans": [
            {
                "from": "2027-01-15T08:00:00Z",  # put at the window's start: alarms fresh
                "target": target,
                "policies": [
                    {
                        "PolicyName": "tt",
                        "PolicyType": "TargetTrackingScaling",
                        "TargetTrackingScalingPolicyConfiguration": {
                            "TargetValue": 600.0,
                            "PredefinedMetricSpecification": {
                                "PredefinedMetricType": "SageMakerVariantInvocationsPerInstance"
                            },
                        },
                    }
                ],
            }
        ],
        "activities": [
            {
                "StartTime": "2027-01-15T08:13:00Z",  # T0 + 780
                "EndTime": "2027-01-15T08:18:00Z",
                "Description": "Setting desired instance count to 4.",
                "StatusCode": "Successful",
            },
            {  # outside the window: ignored
                "StartTime": "2027-01-15T09:00:00Z",
                "Description": "Setting desired instance count to 2.",
                "StatusCode": "InProgress",
            },
        ],
        "alarms": [],
    }
    assert pd.Timestamp("2027-01-15T08:13:00Z").timestamp() == T0 + 780
    rec = recording_from(history, doc, defaults=DEFAULTS)
    assert rec.minutes == 30 and rec.initial_capacity == 1
    assert [(a.start_s - T0, a.to_capacity) for a in rec.activities] == [(780.0, 4)]
    assert len(rec.alarm_notes) == 2  # neither alarm found
    assert rec.warmup_s == 0.0
    assert backtest(rec, defaults=DEFAULTS).fitted.metric_lag_s == 0.0
    # a policy put long before the window: AWS's alarms had history the replay lacks, so the
    # first 16 minutes (15 AlarmLow datapoints + 1) are not scored, and the report says so
    old = dict(doc, policy_spans=[dict(doc["policy_spans"][0], **{"from": "2020-01-01T00:00Z"})])
    warm = recording_from(history, old, defaults=DEFAULTS)
    assert warm.warmup_s == 960.0
    result = backtest(warm, defaults=DEFAULTS)
    assert any("first 16 minutes" in n for n in result.notes)
    assert result.minutes_table(T0)["scored"].tolist() == [False] * 16 + [True] * 14
    assert result.fitted_score.scale_out_errors_s == ()  # the only decision is at 780 s
    # the newest activity before the window gives the capacity it starts with
    before = {"StartTime": "2027-01-15T07:00:00Z", "Description": "Setting desired instance "
              "count to 3.", "StatusCode": "Successful"}  # fmt: skip
    assert recording_from(history, dict(doc, activity_before=before), defaults=DEFAULTS)\
        .initial_capacity == 3  # fmt: skip
    with pytest.raises(ValidationError, match="per-minute"):
        recording_from(history.iloc[::5], doc, defaults=DEFAULTS)
    broken = dict(doc, policy_spans=[dict(doc["policy_spans"][0], target={"MinCapacity": 1})])
    with pytest.raises(ValidationError, match=r"policy_spans\[0\]: field 'MaxCapacity'"):
        recording_from(history, broken, defaults=DEFAULTS)
    with pytest.raises(ValidationError, match="no scaling activities"):
        recording_from(history, dict(doc, activities_unavailable="moto"), defaults=DEFAULTS)
