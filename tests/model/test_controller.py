"""Target tracking, checked period by period against hand calculations (target-tracking.md)."""

from __future__ import annotations

import numpy as np
import pytest

from tuner.errors import PolicyError, ValidationError
from tuner.model.controller import TargetTracking
from tuner.model.scaling import AlarmState, ModelChoices, ScalingCause, ScalingKind, ScheduledAction
from tuner.policy.policy import ScalingPolicy
from tuner.policy.tracking import MetricType


def policy(target: float, **kw) -> ScalingPolicy:
    kw.setdefault("min_capacity", 1)
    kw.setdefault("max_capacity", 10)
    return ScalingPolicy(target_value=target, **kw)


def drive(policies, demand, *, lag_s=0.0, boot_s=300.0, concurrency=None, **kw):
    """Step a one-candidate controller; metric = requests / instances in service.

    Returns {t_s: (desired, in_service, alarm_high, alarm_low)} as of the start of each period
    (after the decisions taken at t_s), the events and the controller.
    """
    tt = TargetTracking([policies], choices=ModelChoices(metric_lag_s=lag_s, boot_s=boot_s), **kw)
    rows = {}
    for k, a in enumerate(demand):
        n = tt.in_service[0]
        rows[k * tt.step_s] = (
            int(tt.desired[0]),
            int(n),
            bool(tt.alarm_high_on.any()),
            bool(tt.alarm_low_on.any()),
        )
        conc = None if concurrency is None else concurrency[k] / max(n, 1)
        tt.step(k, a / max(n, 1), conc)
    return rows, tt.events, tt


def desired_at(rows):
    return {t: r[0] for t, r in rows.items()}


def changes(rows, col=0):
    """(t_s, value) wherever the column changes, starting with t = 0."""
    out, last = [], None
    for t, r in sorted(rows.items()):
        if r[col] != last:
            out.append((t, r[col]))
            last = r[col]
    return out


def test_worked_example_of_the_reference_is_reproduced_exactly():
    # §5: 300/min for 10 minutes then 2,100/min; T = 600, Min 1, Max 10, boot 300, lag 0.
    rows, events, _ = drive([policy(600)], [300] * 10 + [2100] * 50)
    assert changes(rows, 0) == [(0, 1), (780, 4)]
    assert changes(rows, 1) == [(0, 1), (1080, 4)]
    # datapoints 10, 11, 12 visible at 660, 720, 780: ALARM from 780 until datapoint 18 (525)
    assert changes(rows, 2) == [(0, False), (780, True), (1140, False)]
    # datapoints 18..32 below 540: AlarmLow from 1980, yet R = ceil(4 x 525 / 600) = 4 = D
    assert changes(rows, 3) == [(0, False), (1980, True)]
    assert len(events) == 1
    e = events[0]
    assert (e.t_s, e.kind, e.from_capacity, e.to_capacity) == (780, ScalingKind.OUT, 1, 4)
    assert e.cause is ScalingCause.ALARM_HIGH and e.completes_at_s == 1080
    assert e.description == "Setting desired instance count to 4."


@pytest.mark.parametrize("lag_s, expected", [(0, 1500), (60, 1560), (120, 1620)], ids=str)
def test_scale_in_comes_15_datapoints_plus_lag_after_load_drops(lag_s, expected):
    # 4 instances at 600/instance (no alarm), then 150/instance from minute 10: datapoints
    # 10..24 are below 540, the 15th is visible at 25 x 60 + lag; R = ceil(4 x 150 / 600) = 1.
    rows, events, _ = drive(
        [policy(600)], [2400] * 10 + [600] * 30, lag_s=lag_s, initial_capacity=4
    )
    assert changes(rows, 0) == [(0, 4), (expected, 1)]
    assert changes(rows, 1) == [(0, 4), (expected, 1)]
    assert [(e.kind, e.t_s, e.completes_at_s) for e in events] == [
        (ScalingKind.IN, expected, expected)
    ]


def test_successive_scale_ins_are_spaced_by_the_scale_in_cooldown():
    # T = 100, 10 instances. 1,000/min (100 each) for 5 min, 500/min until minute 20, then 200.
    # Datapoints 5..19 (50 < 90): scale-in at 1200 to ceil(10 x 50/100) = 5. From 1200 the metric
    # is 40: AlarmLow stays in ALARM, R = 2, but the 600-s cooldown holds it until 1800.
    demand = [1000] * 5 + [500] * 15 + [200] * 30
    rows, events, _ = drive(
        [policy(100, max_capacity=20, scale_in_cooldown_s=600)], demand, initial_capacity=10
    )
    assert changes(rows, 0) == [(0, 10), (1200, 5), (1800, 2)]
    assert [e.t_s for e in events] == [1200, 1800]


@pytest.mark.parametrize(
    "cooldown_s, expected",
    [(60, [(0, 1), (900, 4), (1260, 10), (2220, 4)]), (600, [(0, 1), (900, 4)])],
    ids=["short-cooldown-overshoots", "long-cooldown-holds"],
)
def test_overshoot_to_max_when_scale_out_cooldown_is_shorter_than_the_lag(cooldown_s, expected):
    # lag 120: datapoints 10-12 (2,100 on 1 instance) visible at 780, 840, 900 -> D = 4 at 900,
    # in service at 1200. Datapoints up to 19 were measured on 1 instance; datapoint 18 is visible
    # at 1260. With a 60-s cooldown (ends 1260) the base is D = 4 again: R = ceil(4 x 2100 / 600)
    # = 14 -> Max 10. With 600 s the base stays 1 until datapoint 20 (525) clears the alarm.
    # Datapoints 20..34 are below 540 (525 on 4, then 210 on 10), the last visible at 2220: the
    # overshoot is undone to ceil(10 x 210 / 600) = 4; on 4, R = ceil(4 x 525 / 600) = 4 holds.
    p = policy(600, scale_out_cooldown_s=cooldown_s)
    rows, _, _ = drive([p], [300] * 10 + [2100] * 30, lag_s=120)
    assert changes(rows, 0) == expected


def test_max_clamp():
    # 6,000/min on 1 instance: R = 10 but Max = 3; one scale-out, never above 3.
    rows, events, _ = drive([policy(600, max_capacity=3)], [6000] * 30)
    assert changes(rows, 0) == [(0, 1), (180, 3)]
    assert changes(rows, 1) == [(0, 1), (480, 3)]
    assert len(events) == 1


def test_disable_scale_in_keeps_capacity_while_alarm_low_is_in_alarm():
    rows, events, _ = drive(
        [policy(600, disable_scale_in=True)], [2400] * 10 + [600] * 30, initial_capacity=4
    )
    assert set(desired_at(rows).values()) == {4}
    assert rows[1500][3] is True
    assert events == []


def test_high_resolution_alarms_3_and_90_datapoints_of_10_s():
    # ConcurrentRequestsPerModel, T = 5. Total in flight 1 for a minute, 12 until 600 s, then 2.
    # Datapoints 6, 7, 8 (12 > 5) visible at 70, 80, 90: D = ceil(12 / 5) = 3 at 90, in service
    # at 390. From step 39 each instance sees 4 (< 4.5), later 2/3: 90 datapoints 39..128, the
    # last visible at 1290: R = ceil(3 x (2/3) / 5) = 1.
    total = [1] * 6 + [12] * 54 + [2] * 100
    p = policy(5, metric_type=MetricType.CONCURRENT_REQUESTS_PER_MODEL)
    rows, events, tt = drive([p], [0] * len(total), concurrency=total)
    assert tt.step_s == 10
    assert changes(rows, 0) == [(0, 1), (90, 3), (1290, 1)]
    assert changes(rows, 1) == [(0, 1), (390, 3), (1290, 1)]
    assert changes(rows, 3) == [(0, False), (1290, True)]
    assert [e.kind for e in events] == [ScalingKind.OUT, ScalingKind.IN]


def test_alarm_in_alarm_invokes_scaling_again_once_a_minute():
    # 10-s metric: AlarmHigh enters ALARM at 90 (R = 6, clamped to Max 2). A scheduled action
    # lifts Max to 10 at 160 without moving D; the next invocation is at 150 + 60 = 210,
    # not at 160..200: R = ceil(2 x 15 / 5) = 6.
    total = [1] * 6 + [30] * 30
    p = policy(
        5,
        max_capacity=2,
        metric_type=MetricType.CONCURRENT_REQUESTS_PER_MODEL,
        scale_out_cooldown_s=0,
    )
    rows, _, _ = drive(
        [p],
        [0] * len(total),
        concurrency=total,
        boot_s=45,
        scheduled=[ScheduledAction(160, max_capacity=10)],
    )
    assert changes(rows, 0) == [(0, 1), (90, 2), (210, 6)]
    assert changes(rows, 1) == [(0, 1), (140, 2), (260, 6)]


def test_scheduled_min_max_move_capacity_at_once_and_ignore_cooldowns():
    # 300/min on 1 instance (AlarmLow from 840, but R = 1 = Min). At 600 Min = 5: D = 5, in
    # service at 900. At 1200 Min 2 / Max 3: D = N = 3 at once; AlarmLow is in ALARM and
    # R = ceil(3 x 60 / 600) = 1 -> Min 2: scale-in to 2 at 1200 (cooldown until 1500). At 1260
    # Min 4: D = 4 at once despite the cooldown, in service at 1560.
    actions = [
        ScheduledAction(600, min_capacity=5),
        ScheduledAction(1200, min_capacity=2, max_capacity=3),
        ScheduledAction(1260, min_capacity=4, max_capacity=10),
    ]
    rows, events, _ = drive([policy(600)], [300] * 40, scheduled=actions)
    assert changes(rows, 0) == [(0, 1), (600, 5), (1200, 2), (1260, 4)]
    assert changes(rows, 1) == [(0, 1), (900, 5), (1200, 2), (1560, 4)]
    assert [(e.t_s, e.cause, e.to_capacity) for e in events] == [
        (600, ScalingCause.SCHEDULED, 5),
        (1200, ScalingCause.SCHEDULED, 3),
        (1200, ScalingCause.ALARM_LOW, 2),
        (1260, ScalingCause.SCHEDULED, 4),
    ]


def test_two_policies_scale_out_to_the_largest_and_scale_in_only_if_all_agree():
    # A: T = 600, B: T = 400. At 780 R_A = 4, R_B = ceil(2100/400) = 6: D = 6. From 1080 each
    # instance sees 350: both alarms low from 1980, but R_B = ceil(6 x 350/400) = 6: no scale-in.
    demand = [300] * 10 + [2100] * 30
    a, b = policy(600, name="a"), policy(400, name="b")
    rows, events, _ = drive([a, b], demand)
    assert changes(rows, 0) == [(0, 1), (780, 6)]
    assert events[0].policy == "b"
    # With B's scale-in disabled only A decides: R_A = ceil(6 x 350 / 600) = 4 at 1980. Then
    # each instance sees 525 > 400: B's datapoints 33-35 are visible at 2160, R_B = 6 again.
    rows, _, _ = drive([a, b.replace(disable_scale_in=True)], demand)
    assert changes(rows, 0) == [(0, 1), (780, 6), (1980, 4), (2160, 6)]


def test_scale_out_cancels_the_scale_in_cooldown():
    # S3's scale-in at 1200 (10 -> 5) opens a 3,600-s cooldown. 1,500/min from minute 20: D = 15
    # at 1380, in service 1680. 300/min from minute 30: AlarmLow at 2700 and R = 3. Without the
    # cancellation the scale-in would wait until 4,800.
    demand = [1000] * 5 + [500] * 15 + [1500] * 10 + [300] * 30
    p = policy(100, max_capacity=20, scale_in_cooldown_s=3600)
    rows, _, _ = drive([p], demand, initial_capacity=10)
    assert changes(rows, 0) == [(0, 10), (1200, 5), (1380, 15), (2700, 3)]


def test_boot_time_rounds_up_to_whole_periods():
    rows, _, _ = drive([policy(600)], [3000] * 20, boot_s=330)
    assert changes(rows, 0) == [(0, 1), (180, 5)]
    assert changes(rows, 1) == [(0, 1), (540, 5)]  # ceil(330 / 60) = 6 periods


def test_alarms_start_in_insufficient_data():
    tt = TargetTracking([policy(600)], choices=ModelChoices(metric_lag_s=0))
    states = []
    for k in range(16):
        r = tt.step(k, 100.0)
        states.append((int(r.alarm_high[0, 0]), int(r.alarm_low[0, 0])))
    insufficient, ok, alarm = AlarmState.INSUFFICIENT_DATA, AlarmState.OK, AlarmState.ALARM
    assert states[1] == (insufficient, insufficient)
    assert states[2] == (ok, insufficient)
    assert states[13] == (ok, insufficient)
    assert states[14] == (ok, alarm)


def test_set_policies_moves_capacity_into_the_new_range_and_resets_changed_alarms():
    tt = TargetTracking([policy(600)], choices=ModelChoices(metric_lag_s=0), initial_capacity=6)
    for k in range(5):
        tt.step(k, 2000.0 / 6)
    assert tt.alarm_state(high=False)[0, 0] == AlarmState.INSUFFICIENT_DATA
    events = tt.set_policies([policy(600, max_capacity=4)])
    assert (tt.desired[0], tt.in_service[0]) == (4, 4)
    assert [(e.from_capacity, e.to_capacity, e.cause) for e in events] == [
        (6, 4, ScalingCause.REGISTERED)
    ]
    assert tt.high_run[0, 0] == 0 and tt._count["inv"] == 5  # same target: alarm history kept
    tt.step(5, 100.0)
    tt.set_policies([policy(300, max_capacity=4)])
    assert tt.alarm_state(high=True)[0, 0] == AlarmState.INSUFFICIENT_DATA
    events = tt.set_policies([policy(300, min_capacity=5, max_capacity=8)])
    assert tt.desired[0] == 5 and tt.in_service[0] == 4 and tt.updating[0]
    assert events[0].completes_at_s == 360 + 300


def test_vectorised_candidates_are_independent():
    # The same two scenarios side by side give the same timelines as alone.
    demand = [300] * 10 + [2100] * 30
    p1, p2 = policy(600), policy(600, max_capacity=3)
    tt = TargetTracking([p1, p2], choices=ModelChoices(metric_lag_s=0))
    both = []
    for k, a in enumerate(demand):
        both.append(tt.desired.copy())
        tt.step(k, a / tt.in_service)
    rows1, _, _ = drive([p1], demand)
    rows2, _, _ = drive([p2], demand)
    assert [int(d[0]) for d in both] == [r[0] for _, r in sorted(rows1.items())]
    assert [int(d[1]) for d in both] == [r[0] for _, r in sorted(rows2.items())]


def test_bad_inputs_are_rejected_with_the_rule():
    with pytest.raises(ValidationError, match="boot_s >= 0"):
        TargetTracking([policy(600)], boot_s=-1)
    with pytest.raises(ValidationError, match="metric_lag_s >= 0"):
        ModelChoices(metric_lag_s=-5)
    custom = ScalingPolicy(
        min_capacity=1,
        max_capacity=2,
        target_value=5,
        metric_type=None,
        customized_metric={"MetricName": "X"},
    )
    with pytest.raises(PolicyError, match="PredefinedMetricType must be one of"):
        TargetTracking([custom])
    with pytest.raises(PolicyError, match="share its MinCapacity"):
        TargetTracking([[policy(600), policy(300, max_capacity=5)]])
    tt = TargetTracking([policy(600)])
    with pytest.raises(ValidationError, match="in order"):
        tt.step(3, 1.0)
    with pytest.raises(ValidationError, match="MinCapacity <= MaxCapacity"):
        TargetTracking([policy(600)], scheduled=[ScheduledAction(0, min_capacity=20)])
    assert np.all(TargetTracking([policy(600)] * 3).desired == 1)
