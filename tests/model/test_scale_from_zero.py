"""Scale out from zero copies: a step policy whose alarm reads NoCapacityInvocationFailures.

The controller runs on 10-s steps with metric_lag_s = 0 and boot_s = 120: the 60-s datapoint of
steps 6k..6k+5 is visible at t = 60(k + 1), the 10-s one of step k at t = 10(k + 1); a scale-out
decided at t serves from t + 120.
"""

from __future__ import annotations

import numpy as np
import pytest

from tuner.errors import PolicyError
from tuner.model.controller import TargetTracking
from tuner.model.scaling import ModelChoices, ScalingCause
from tuner.policy.alarm import Comparison, StepAlarm
from tuner.policy.policy import ScalingPolicy
from tuner.policy.resource import ResourceKind
from tuner.policy.step import StepAdjustment, StepScalingPolicy
from tuner.policy.tracking import MetricType

EXACT = ModelChoices(metric_lag_s=0, boot_s=120)


def from_zero(period_s: int = 60, cooldown_s: int = 0, statistic: str = "Sum") -> ScalingPolicy:
    """AWS's pattern: target tracking on ConcurrentRequestsPerCopy down to 0, a step policy up."""
    step = StepScalingPolicy(
        name="scale-from-zero",
        alarm=StepAlarm(
            metric_name="NoCapacityInvocationFailures",
            statistic=statistic,
            period_s=period_s,
            threshold=1,
            comparison=Comparison.GREATER_OR_EQUAL,
        ),
        steps=(StepAdjustment(1, 0, None),),
        cooldown_s=cooldown_s,
    )
    return ScalingPolicy(
        min_capacity=0,
        max_capacity=4,
        target_value=4,
        metric_type=MetricType.CONCURRENT_REQUESTS_PER_COPY,
        kind=ResourceKind.INFERENCE_COMPONENT,
        step_policies=(step,),
    )


def run(policy: ScalingPolicy, failures: dict[int, float], steps: int, **kw: object):
    tt = TargetTracking([policy], choices=EXACT, initial_capacity=0)
    desired, served, events = [], [], []
    for k in range(steps):
        served.append(int(tt.in_service[0]))
        r = tt.step(k, 0.0, 0.0, no_capacity_failures=np.array([failures.get(k, 0.0)]))
        desired.append(int(r.desired[0]))
        events += r.events
    return desired, served, events


def test_a_60_s_alarm_scales_out_at_the_minute_boundary_and_serves_after_the_boot():
    # 3 failures in step 7 (t 70..80): the minute [60, 120) sums 3 >= 1, visible at t = 120
    # (the boundary closing step 11) -> +1 copy; it serves from 120 + 120 = 240 (step 24).
    desired, served, events = run(from_zero(), {7: 3.0}, 30)
    assert desired[:11] == [0] * 11
    assert desired[11] == 1
    assert served[:24] == [0] * 24 and served[24] == 1
    (e,) = events
    assert (e.t_s, e.from_capacity, e.to_capacity, e.cause, e.policy, e.completes_at_s) == (
        120.0,
        0,
        1,
        ScalingCause.STEP_ALARM,
        "scale-from-zero",
        240.0,
    )


def test_a_10_s_alarm_acts_at_the_next_boundary():
    desired, served, events = run(from_zero(period_s=10), {7: 1.0}, 30)
    assert desired[6] == 0 and desired[7] == 1  # decided at t = 80
    assert served[19] == 0 and served[20] == 1  # in service from 80 + 120 = 200
    assert [e.t_s for e in events] == [80.0]


def test_no_failures_no_scale_out_and_the_input_defaults_to_zero():
    tt = TargetTracking([from_zero()], choices=EXACT, initial_capacity=0)
    assert tt.tracks_no_capacity
    for k in range(60):
        r = tt.step(k, 0.0, 0.0)  # no_capacity_failures omitted: zeros
    assert int(r.desired[0]) == 0 and not tt.events


def test_failures_during_the_boot_wait_for_it_then_ask_once_more_without_a_cooldown():
    # Failures in every step of minutes 0-3: the alarm enters ALARM at t = 60 (+1) and is called
    # again each minute, but at t = 120 the boot is in progress (Updating): no change. At t = 180
    # the boot completes first, then the alarm (minute 2 failed too) adds one more copy: with
    # Cooldown 0 nothing holds it back (the reason AWS's example sets a cooldown).
    fails = {k: 2.0 for k in range(0, 24)}
    desired, served, events = run(from_zero(), fails, 40)
    assert desired[5] == 1  # minute 0 visible at t = 60
    assert served[18] == 1 and served[17] == 0  # in service from 60 + 120 = 180 (step 18)
    # the alarm is still ALARM at t = 180 (minute 2 failed): it asks +1 again once idle
    assert max(desired) == 2
    assert [(e.t_s, e.to_capacity) for e in events] == [(60.0, 1), (180.0, 2)]


def test_other_statistics_of_the_failure_metric_are_refused():
    with pytest.raises(PolicyError, match="NoCapacityInvocationFailures is modelled with"):
        TargetTracking([from_zero(statistic="Average")], choices=EXACT)
