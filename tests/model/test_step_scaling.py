"""Step scaling in the one controller: hand-computed scenarios, and agreement with the scalar model.

Hand-computed scenarios run the controller with metric_lag_s = 0 and boot_s = 120 on 60-s
periods: datapoint k (the minute [60k, 60k + 60)) is visible at t = 60(k + 1), a scale-out
decided at t serves from t + 120.
"""

from __future__ import annotations

import functools

import numpy as np
import pytest
import scalar_model

from tests.model.helpers import assert_matches_scalar, tracking_rule
from tuner.errors import PolicyError
from tuner.model.capacity import Capacity
from tuner.model.controller import TargetTracking
from tuner.model.scaling import ModelChoices, ScalingCause, ScheduledAction
from tuner.model.settings import SimulationSettings
from tuner.model.simulator import simulate_demand
from tuner.policy.alarm import Comparison, StepAlarm
from tuner.policy.policy import ScalingPolicy
from tuner.policy.step import AdjustmentType, MetricAggregation, StepAdjustment, StepScalingPolicy
from tuner.policy.tracking import MetricType

CAPACITY = Capacity.default()
EXACT = ModelChoices(metric_lag_s=0, boot_s=120)
# target tracking that never acts (its alarm needs IPI above 1e9), so a step policy acts alone
QUIET = dict(min_capacity=1, max_capacity=20, target_value=1e9, disable_scale_in=True)


def step(threshold: float, *steps: StepAdjustment, **kw) -> StepScalingPolicy:
    alarm_kw = {
        k: kw.pop(k)
        for k in (
            "evaluation_periods",
            "datapoints_to_alarm",
            "comparison",
            "metric_name",
            "statistic",
            "period_s",
        )
        if k in kw
    }
    kw.setdefault("cooldown_s", 0)
    return StepScalingPolicy(
        name=kw.pop("name", "step"),
        alarm=StepAlarm(threshold=threshold, **alarm_kw),
        steps=steps,
        **kw,
    )


def run(policy: ScalingPolicy, per_minute: list[float], choices: ModelChoices = EXACT):
    """Step the controller with InvocationsPerInstance = requests / instances in service."""
    tt = TargetTracking([policy], choices=choices)
    desired, events = [], []
    for k, requests in enumerate(per_minute):
        r = tt.step(k, requests / max(float(tt.in_service[0]), 1.0))
        desired.append(int(r.desired[0]))
        events += r.events
    return desired, events


def test_change_in_capacity_with_bounds_at_the_interval_edges():
    # threshold 1000, steps [0, 500) +1, [500, null) +3. Datapoints (1 instance until a boot
    # completes): 1000 (delta 0: lower bound inclusive -> +1), then in service 2 from t=180+120.
    p = ScalingPolicy(
        **QUIET,
        step_policies=(step(1000, StepAdjustment(1, 0, 500), StepAdjustment(3, 500, None)),),
    )
    # minute 0: 999 (< threshold: OK); minute 1: 1000 -> at t=120 +1 -> 2, serves from 240
    desired, events = run(p, [999, 1000, 1000, 1000, 3000, 3000, 0, 0])
    # t=180 (minute 2 = 1000 per 1 instance, alarm still ALARM, re-called 60 s after entering):
    # booting, no change. t=240: in service 2, minute 3 = 1000 / 1 = 1000 (step 3 ran on 1
    # instance) -> +1 from 2 -> 3. t=300: minute 4 = 3000/2 = 1500: delta 500 -> upper step
    # (lower bound inclusive): +3 -> but booting until 360. t=360: minute 5 = 3000/2 = 1500 -> +3
    # from 3 = 6.
    assert desired == [1, 2, 2, 3, 3, 6, 6, 6]
    assert [(e.t_s, e.from_capacity, e.to_capacity) for e in events] == [
        (120.0, 1, 2),
        (240.0, 2, 3),
        (360.0, 3, 6),
    ]
    assert {e.cause for e in events} == {ScalingCause.STEP_ALARM}
    assert {e.policy for e in events} == {"step"}


def test_upper_bound_is_exclusive_above_and_inclusive_below_the_threshold():
    above = step(100, StepAdjustment(1, 0, 50), StepAdjustment(5, 50, None))
    # metric exactly threshold + 50: the upper step ([50, null)) applies
    desired, _ = run(ScalingPolicy(**QUIET, step_policies=(above,)), [150, 0])
    assert desired == [6, 6]
    below = step(
        100,
        StepAdjustment(-1, -50, 0),
        StepAdjustment(-3, None, -50),
        comparison=Comparison.LESS_OR_EQUAL,
    )
    p = ScalingPolicy(**{**QUIET, "min_capacity": 1}, step_policies=(below,))
    tt = TargetTracking([p], choices=EXACT, initial_capacity=10)
    # 500 requests on 10 instances = 50 per instance: delta -50, inside (-50, 0]? no: the upper
    # bound of (None, -50] is inclusive below the threshold -> -3
    r = tt.step(0, 50.0)
    assert r.desired.tolist() == [7]
    r = tt.step(1, 99.0)  # delta -1 -> (-50, 0] -> -1
    assert r.desired.tolist() == [6]


@pytest.mark.parametrize(
    ("adjustment", "magnitude", "capacity", "expected"),
    [
        (25, None, 4, 5),  # 25% of 4 = 1
        (25, 2, 4, 6),  # at least MinAdjustmentMagnitude 2 (the API reference's example)
        (25, None, 2, 3),  # 0.5 rounds up to 1
        (50, None, 7, 10),  # 3.5 rounds down to 3
        (-50, None, 7, 4),  # -3.5 -> -3
        (-10, None, 7, 6),  # -0.7 -> -1
        (-10, 3, 7, 4),  # at least 3
    ],
    ids=["25of4", "25of4-min2", "25of2", "50of7", "-50of7", "-10of7", "-10of7-min3"],
)
def test_percent_change_in_capacity_rounding_and_min_adjustment_magnitude(
    adjustment, magnitude, capacity, expected
):
    comparison = Comparison.GREATER_OR_EQUAL if adjustment > 0 else Comparison.LESS_OR_EQUAL
    bound = (0.0, None) if adjustment > 0 else (None, 0.0)
    s = step(
        100,
        StepAdjustment(adjustment, *bound),
        adjustment_type=AdjustmentType.PERCENT_CHANGE_IN_CAPACITY,
        min_adjustment_magnitude=magnitude,
        comparison=comparison,
    )
    tt = TargetTracking(
        [ScalingPolicy(**QUIET, step_policies=(s,))], choices=EXACT, initial_capacity=capacity
    )
    r = tt.step(0, 500.0 if adjustment > 0 else 10.0)
    assert int(r.desired[0]) == expected


def test_exact_capacity_sets_the_capacity_and_clamps_to_the_range():
    s = step(
        100,
        StepAdjustment(4, 0, 100),
        StepAdjustment(50, 100, None),
        adjustment_type=AdjustmentType.EXACT_CAPACITY,
    )
    desired, events = run(ScalingPolicy(**QUIET, step_policies=(s,)), [150, 150, 150, 1000, 0])
    # t=60: exactly 4. Boot until 180; t=180: 150/1 (minute 2 ran on 1) -> 4 = D: nothing.
    # t=240: minute 3 = 1000/4 = 250: delta 150 -> 50, clamped to MaxCapacity 20.
    assert desired == [4, 4, 4, 20, 20]
    assert [e.to_capacity for e in events] == [4, 20]


def test_cooldown_counts_the_capacity_the_initiating_scale_out_added():
    # The API reference's example: +2, then during the cooldown a +3 step adds only 1.
    s = step(100, StepAdjustment(2, 0, 900), StepAdjustment(3, 900, None), cooldown_s=600)
    p = ScalingPolicy(**QUIET, step_policies=(s,))
    # minutes 0-2 run on 1 instance, 3-7 on 3, 8- on 4; InvocationsPerInstance 500 (step +2)
    # until minute 4, then 3000 (delta 2900 >= 900: step +3)
    per_minute = [500, 500, 500, 1500, 1500, 9000, 9000, 9000] + [12000] * 12
    desired, events = run(p, per_minute)
    # t=60: 1 + 2 = 3, serves from 180, cooldown 180..780 with base 1. t=180..300: +2 on base 1
    # = 3 = D: no change. t=360: +3 on base 1 = 4 > 3: scale out by 1 (not to 6). Serves from
    # 480; the cooldown restarts 480..1080, base still 1: +3 on 1 = 4 = D. t=1080: the cooldown
    # is over: 4 + 3 = 7.
    assert [(e.t_s, e.from_capacity, e.to_capacity) for e in events] == [
        (60.0, 1, 3),
        (360.0, 3, 4),
        (1080.0, 4, 7),
    ]
    assert desired == [3] * 5 + [4] * 12 + [7] * 3


def test_cooldown_blocks_scale_in_until_it_expires_and_a_scale_out_ends_it():
    down = step(
        100, StepAdjustment(-1, None, 0), comparison=Comparison.LESS, cooldown_s=180, name="down"
    )
    up = step(1000, StepAdjustment(2, 0, None), cooldown_s=0, name="up")
    p = ScalingPolicy(**QUIET, step_policies=(down, up))
    tt = TargetTracking([p], choices=EXACT, initial_capacity=8)
    seen = []
    for k, ipi in enumerate([10, 10, 10, 10, 2000, 10, 10, 10]):
        seen.append(int(tt.step(k, ipi).desired[0]))
    # t=60: 8 -> 7, scale-in cooldown to 240; t=120, 180: blocked; t=240: 7 -> 6 (cooldown to
    # 420); t=300: 2000 >= 1000: +2 -> 8 (ends the scale-in cooldown), serves from 420;
    # t=360: booting; t=420: cooldown ended by the scale-out: 8 -> 7.
    assert seen == [7, 7, 7, 6, 8, 8, 7, 7]


def test_datapoints_to_alarm_m_of_n_and_aggregation_pick_the_step():
    s = step(
        100,
        StepAdjustment(1, 0, 100),
        StepAdjustment(4, 100, None),
        evaluation_periods=3,
        datapoints_to_alarm=2,
        metric_aggregation=MetricAggregation.MAXIMUM,
    )
    p = ScalingPolicy(**QUIET, step_policies=(s,))
    # datapoints 150, 50, 250: only 1 of 3 breach after minute 1 (150, 50), 2 of 3 at t=180:
    # Maximum 250 -> delta 150 -> +4.
    desired, _ = run(p, [150, 50, 250, 0])
    assert desired == [1, 1, 5, 5]
    avg = step(
        100,
        StepAdjustment(1, 0, 100),
        StepAdjustment(4, 100, None),
        evaluation_periods=3,
        datapoints_to_alarm=2,
    )
    desired, _ = run(ScalingPolicy(**QUIET, step_policies=(avg,)), [150, 50, 250, 0])
    # Average of 150, 50, 250 = 150 -> delta 50 -> +1
    assert desired == [1, 1, 2, 2]


def test_step_beside_target_tracking_the_largest_capacity_wins():
    # target tracking T=600 (3 of 3 above) and a step companion at 1200 (+1 per 600 above)
    s = step(
        1200,
        StepAdjustment(1, 0, 600),
        StepAdjustment(2, 600, None),
        cooldown_s=300,
        name="companion",
    )
    p = ScalingPolicy(
        min_capacity=1,
        max_capacity=10,
        target_value=600,
        scale_out_cooldown_s=300,
        step_policies=(s,),
    )
    desired, events = run(p, [300, 300, 2400, 2400, 2400, 2400, 2400, 2400, 2400])
    # t=180: minute 2 = 2400 >= 1200, delta 1200 -> +2 -> 3 (target tracking has 1 of 3).
    # Boot to 300. t=300: target tracking has 3 of 3 (minutes 2-4, all on 1 instance) and no
    # cooldown of its own running, so B = D = 3: R = ceil(3 x 2400 / 600) = 12 -> Max 10; the
    # step policy's cooldown started at 300 with base 1: +2 -> 3 = D. The largest, 10, wins and
    # the activity names target tracking.
    assert [(e.t_s, e.to_capacity, e.cause, e.policy) for e in events][:2] == [
        (180.0, 3, ScalingCause.STEP_ALARM, "companion"),
        (300.0, 10, ScalingCause.ALARM_HIGH, "tuner-target-tracking"),
    ]
    assert desired[:6] == [1, 1, 3, 3, 10, 10]


def test_unmodelled_step_alarms_are_refused_with_the_rule():
    s = step(100, StepAdjustment(1, 0, None), metric_name="CPUUtilization")
    with pytest.raises(PolicyError, match="MetricName must be one of"):
        TargetTracking([ScalingPolicy(**QUIET, step_policies=(s,))])
    s = step(100, StepAdjustment(1, 0, None), period_s=10)
    with pytest.raises(PolicyError, match="InvocationsPerInstance is modelled with Period 60"):
        TargetTracking([ScalingPolicy(**QUIET, step_policies=(s,))])


# -- agreement with the scalar model -----------------------------------------------------------


def _random_step(rng: np.random.Generator, i: int, high_res: bool) -> StepScalingPolicy:
    stream = "inv"
    if high_res and rng.random() < 0.5:
        stream = str(rng.choice(["conc", "conc60"]))
    out = rng.random() < 0.7
    if stream == "inv":
        threshold = float(rng.choice([300, 600, 900, 1500, 3000] if out else [50, 150, 300]))
        width = float(rng.choice([100, 300, 600]))
    else:
        threshold = float(rng.choice([2, 5, 10, 30] if out else [0.5, 1, 2]))
        width = float(rng.choice([1, 3, 10]))
    kind = list(AdjustmentType)[int(rng.integers(3))]
    if kind is AdjustmentType.EXACT_CAPACITY:
        adj = [int(a) for a in rng.integers(1, 12, size=2)]
    elif kind is AdjustmentType.PERCENT_CHANGE_IN_CAPACITY:
        adj = [int(a) for a in rng.choice([10, 25, 50, 100, 200], size=2)]
    else:
        adj = [int(a) for a in rng.integers(1, 4, size=2)]
    if out:
        steps = (StepAdjustment(adj[0], 0.0, width), StepAdjustment(adj[1], width, None))
        comparison = Comparison.GREATER_OR_EQUAL if rng.random() < 0.5 else Comparison.GREATER
    else:
        if kind is not AdjustmentType.EXACT_CAPACITY:
            adj = [-a if kind is AdjustmentType.CHANGE_IN_CAPACITY else -min(a, 90) for a in adj]
        steps = (StepAdjustment(adj[0], -width, 0.0), StepAdjustment(adj[1], None, -width))
        comparison = Comparison.LESS if rng.random() < 0.5 else Comparison.LESS_OR_EQUAL
    n = int(rng.integers(1, 4))
    return StepScalingPolicy(
        name=f"s{i}",
        alarm=StepAlarm(
            metric_name="InvocationsPerInstance"
            if stream == "inv"
            else "ConcurrentRequestsPerModel",
            statistic="Sum" if stream == "inv" else "Maximum",
            period_s=10 if stream == "conc" else 60,
            evaluation_periods=n,
            datapoints_to_alarm=int(rng.integers(1, n + 1)),
            threshold=threshold,
            comparison=comparison,
        ),
        steps=steps,
        adjustment_type=kind,
        min_adjustment_magnitude=(
            int(rng.integers(1, 4))
            if kind is AdjustmentType.PERCENT_CHANGE_IN_CAPACITY and rng.random() < 0.5
            else None
        ),
        metric_aggregation=list(MetricAggregation)[int(rng.integers(3))],
        cooldown_s=int(rng.choice([0, 60, 120, 300, 600])),
    )


def _scenario(seed: int):
    rng = np.random.default_rng(10_000 + seed)
    high_res = rng.random() < 0.3
    step_s = 10 if high_res else 60
    n = int(rng.integers(40, 140)) * (3 if high_res else 1)
    levels = rng.choice([0, 120, 600, 1500, 3000, 8000, 30000], size=int(rng.integers(2, 7)))
    cuts = np.sort(rng.integers(0, n, size=len(levels) - 1))
    per_min = np.repeat(levels, np.diff(np.concatenate([[0], cuts, [n]])))
    demand = rng.poisson(per_min * step_s / 60.0).astype(float)
    candidates = []
    for c in range(4):
        lo = int(rng.integers(1, 4))
        hi = lo + int(rng.integers(0, 12))
        conc = high_res and rng.random() < 0.4
        tt = ScalingPolicy(
            min_capacity=lo,
            max_capacity=hi,
            target_value=float(rng.choice([2.5, 8]) if conc else rng.choice([300, 600, 1100])),
            metric_type=(
                MetricType.CONCURRENT_REQUESTS_PER_MODEL
                if conc
                else MetricType.INVOCATIONS_PER_INSTANCE
            ),
            scale_out_cooldown_s=int(rng.choice([0, 60, 300])),
            scale_in_cooldown_s=int(rng.choice([0, 300, 900])),
            disable_scale_in=bool(rng.random() < 0.3),
            step_policies=tuple(
                _random_step(rng, i, high_res) for i in range(int(rng.integers(0, 3)))
            ),
            name=f"tt{c}",
        )
        candidates.append(tt)
    scheduled = []
    if rng.random() < 0.2:
        lo = int(rng.integers(1, 5))
        scheduled.append(ScheduledAction(float(rng.integers(0, n) * step_s), lo, lo + 6))
    return dict(
        demand=demand,
        step_s=step_s,
        candidates=candidates,
        lag_s=float(rng.choice([0, 30, 60, 120])),
        boot_s=float(rng.choice([0, 60, 120, 300])),
        initial=None if rng.random() < 0.5 else int(rng.integers(1, 6)),
        scheduled=scheduled,
    )


@functools.cache
def _simulated(seed: int):
    sc = _scenario(seed)
    result = simulate_demand(
        sc["demand"],
        sc["step_s"],
        sc["candidates"],
        CAPACITY,
        initial_capacity=sc["initial"],
        scheduled=sc["scheduled"],
        settings=SimulationSettings(
            boot_s=sc["boot_s"], metric_lag_s=sc["lag_s"], boot_jitter_s=0.0
        ),
    )
    return sc, result


@pytest.mark.parametrize("seed", range(80))
def test_vectorised_simulator_matches_the_scalar_model_with_step_policies(seed):
    sc, result = _simulated(seed)
    serving = scalar_model.Serving(20.0, 60.0, [(5, 40.0), (20, 60.0)])
    for i, p in enumerate(sc["candidates"]):
        where = f"candidate {i} ({p.label})"
        assert_matches_scalar(result, i, p, sc, [tracking_rule(p)], serving, where)


def test_step_scenarios_exercise_every_path():
    # The random scenarios are only worth something if step policies really act in them: replay
    # the 60-s ones (InvocationsPerInstance needs no queue) through the controller with events.
    seen = dict.fromkeys(
        ["step_out", "step_in", "percent", "exact", "conc", "conc60", "m_of_n", "tt_wins"], 0
    )
    for seed in range(40):
        sc, _ = _simulated(seed)
        for p in sc["candidates"]:
            for s in p.step_policies:
                seen["percent"] += s.adjustment_type is AdjustmentType.PERCENT_CHANGE_IN_CAPACITY
                seen["exact"] += s.adjustment_type is AdjustmentType.EXACT_CAPACITY
                seen["conc"] += s.alarm.period_s == 10
                seen["conc60"] += s.alarm.metric_name == "ConcurrentRequestsPerModel" and (
                    s.alarm.period_s == 60
                )
                seen["m_of_n"] += s.alarm.datapoints_to_alarm < s.alarm.evaluation_periods
            if sc["step_s"] != 60 or not p.step_policies:
                continue
            tt = TargetTracking(
                [p],
                choices=ModelChoices(metric_lag_s=sc["lag_s"], boot_s=sc["boot_s"]),
                initial_capacity=sc["initial"],
                scheduled=sc["scheduled"],
            )
            for k, a in enumerate(sc["demand"]):
                tt.step(k, a / max(float(tt.in_service[0]), 1.0))
            for e in tt.events:
                if e.cause is ScalingCause.STEP_ALARM:
                    seen["step_out" if e.to_capacity > e.from_capacity else "step_in"] += 1
                elif e.cause is ScalingCause.ALARM_HIGH:
                    seen["tt_wins"] += 1
    assert min(seen.values()) >= 5, seen


def test_a_step_policy_scales_an_inference_component_out_of_zero():
    # The pattern AWS documents for MinCopyCount 0: target tracking cannot leave zero
    # (R = ceil(0 x M / T) = 0), a step policy can. Here on InvocationsPerCopy (requests per copy,
    # divided by 1 with no copy), ExactCapacity 2 when any request arrives; the model does not
    # have NoCapacityInvocationFailures, the metric AWS's pattern uses.
    from tuner.policy.resource import ResourceKind

    wake = step(
        1,
        StepAdjustment(2, 0, None),
        adjustment_type=AdjustmentType.EXACT_CAPACITY,
        metric_name="InvocationsPerCopy",
        name="wake-from-zero",
    )
    p = ScalingPolicy(
        min_capacity=0,
        max_capacity=4,
        target_value=600.0,
        metric_type=MetricType.INVOCATIONS_PER_COPY,
        kind=ResourceKind.INFERENCE_COMPONENT,
        step_policies=(wake,),
    )
    demand = np.array([0.0] * 20 + [600.0] * 10)
    r = simulate_demand(
        demand,
        60,
        [p],
        CAPACITY,
        initial_capacity=2,
        settings=SimulationSettings(metric_lag_s=0, boot_jitter_s=0.0, boot_s=120),
    )
    tl = r.timeline(0)
    # 15 idle minutes -> 0 copies at 900 s; traffic from 1200 s: minute 20 is visible at 1260,
    # ExactCapacity 2 -> copies serve from 1380 (periods from 1380 on have 2 in service)
    assert tl.desired_capacity.tolist() == [2] * 15 + [0] * 6 + [2] * 9
    assert tl.instances_in_service.tolist() == [2] * 15 + [0] * 8 + [2] * 7
    assert tl.errors[tl.instances_in_service == 2].sum() < 600  # served once the copies are up
