"""The inference-component simulator: hand-computed steps, and agreement with the scalar model.

The default copy (examples/llm-capacity.json): 256 tokens, the first at the TTFT and 255 gaps
after it: duration D(x) = TTFT p50 + 255 x ITL p50, D(1) = 0.200 + 255 x 0.055 = 14.225 s,
D(4) = 0.350 + 255 x 0.060 = 15.65 s, D(8) = 0.700 + 255 x 0.070 = 18.55 s, so one copy
completes at most 8 / 18.55 requests/s.
"""

from __future__ import annotations

import functools
import math
from statistics import NormalDist

import numpy as np
import pytest
import scalar_copies
import scalar_model

from tests.model.helpers import tracking_rule
from tuner.model.copies import simulate_copies_demand, steady_copies
from tuner.model.copy_serving import serve_step
from tuner.model.llm_capacity import CurvePoint, LlmCapacity
from tuner.model.settings import SimulationSettings
from tuner.policy.alarm import StepAlarm
from tuner.policy.policy import ScalingPolicy
from tuner.policy.resource import ResourceKind
from tuner.policy.step import AdjustmentType, MetricAggregation, StepAdjustment, StepScalingPolicy
from tuner.policy.tracking import MetricType

CAP = LlmCapacity.default()
EXACT = SimulationSettings(metric_lag_s=0.0, boot_jitter_s=0.0, seeds=(0,), warm_start=False)
MU = 8 / 18.55


def ic(target: float, lo: int, hi: int, *, steps=(), metric=None, **kw) -> ScalingPolicy:
    return ScalingPolicy(
        min_capacity=lo,
        max_capacity=hi,
        target_value=target,
        metric_type=metric or MetricType.CONCURRENT_REQUESTS_PER_COPY,
        kind=ResourceKind.INFERENCE_COMPONENT,
        step_policies=tuple(steps),
        **kw,
    )


def from_zero(period_s: int = 60, cooldown_s: int = 300, adjust: int = 1, exact: bool = False):
    return StepScalingPolicy(
        name="scale-from-zero",
        alarm=StepAlarm(
            metric_name="NoCapacityInvocationFailures",
            statistic="Sum",
            period_s=period_s,
            threshold=1,
        ),
        steps=(StepAdjustment(adjust, 0, None),),
        adjustment_type=AdjustmentType.EXACT_CAPACITY
        if exact
        else AdjustmentType.CHANGE_IN_CAPACITY,
        metric_aggregation=MetricAggregation.MAXIMUM,
        cooldown_s=cooldown_s,
    )


# -- hand-computed -------------------------------------------------------------------------------


def test_concurrency_per_copy_is_littles_law_on_the_duration_curve():
    # 0.1 requests/s per copy: x = 0.1 x D(x). Between 1 and 4 in flight D(x) = a + b x with
    # b = (15.65 - 14.225) / 3, a = 14.225 - b, so x = 0.1 a / (1 - 0.1 b).
    b = (15.65 - 14.225) / 3
    a = 14.225 - b
    x = 0.1 * a / (1 - 0.1 * b)
    assert x == pytest.approx(1.443570, abs=1e-6)
    # 2 copies, 2 requests in a 10-s step: 0.1 requests/s per copy
    out = serve_step(CAP, np.array([2.0]), np.array([2]), np.array([0.0]), 10)
    assert out.served[0] == 2.0 and out.failed[0] == 0.0 and out.queue_end[0] == 0.0
    # ConcurrentRequestsPerCopy is a Maximum of a count: 2 x 1.44 = 2.89 in flight on the two
    # copies peaks at 3 requests, 1.5 per copy
    assert out.concurrency[0] == 1.5
    # TTFT p50 at x: 200 + (x - 1) / 3 x 150; ITL p99: 65 + (x - 1) / 3 x 10
    assert out.ttft_p50_ms[0] == pytest.approx(200 + (x - 1) / 3 * 150, rel=1e-12)
    assert out.itl_p99_ms[0] == pytest.approx(65 + (x - 1) / 3 * 10, rel=1e-12)
    assert CAP.max_rps_per_copy == pytest.approx(MU, rel=1e-12)


def test_requests_above_the_limit_queue_into_ttft_then_time_out():
    # 1 copy, 10 requests every 10 s: it completes 10 MU per step, the rest waits; a request
    # that would wait past 60 s fails: the queue holds at most 60 MU.
    demand = np.full(6, 10.0)
    r = simulate_copies_demand(demand, 10, [ic(1e6, 1, 1)], CAP, EXACT)
    q = [0.0]
    for _ in range(6):
        q.append(min(q[-1] + 10 - 10 * MU, 60 * MU))
    np.testing.assert_allclose(r.queue_start[:, 0], q[:6], rtol=1e-12)
    tl = r.timeline(0)
    assert tl["served"].tolist() == pytest.approx([10 * MU] * 6, rel=1e-12)
    # steps 0-3 fail nothing (queue 22.8 < 25.8); step 4 reaches 28.5: 2.74 fail
    assert tl["errors"][:4].tolist() == [0, 0, 0, 0]
    assert tl["errors"][4] == pytest.approx(5 * (10 - 10 * MU) - 60 * MU, rel=1e-9)
    # TTFT p99 = the curve's at the limit (1300 ms) + the longest wait, queue end / rate
    assert tl["ttft_p99_ms"][1] == pytest.approx(1300 + 1000 * q[2] / MU, rel=1e-12)
    assert tl["ttft_p50_ms"][1] == pytest.approx(700 + 500 * (q[1] + q[2]) / MU, rel=1e-12)
    # ConcurrentRequestsPerCopy: the limit plus the peak queue, whole requests (19.37 -> 20)
    assert q[2] == pytest.approx(11.3747, abs=1e-4)
    assert tl["concurrency_per_copy"][1] == math.ceil(8 + q[2])
    # ITL does not wait: the curve's p99 at the limit
    assert tl["itl_p99_ms"].tolist() == [95.0] * 6


def test_ttft_objective_counts_the_share_of_slow_requests():
    # 1 copy at 0.1 requests/s for 10 minutes (1 request per step): every step at x = 1.4494;
    # TTFT log-normal through p50 and p99; objective 250 ms; ITL objective out of reach.
    b = (15.65 - 14.225) / 3
    x = 0.1 * (14.225 - b) / (1 - 0.1 * b)
    p50 = 200 + (x - 1) / 3 * 150
    p99 = 300 + (x - 1) / 3 * 300
    z99 = NormalDist().inv_cdf(0.99)
    sigma = math.log(p99 / p50) / z99
    share = 1 - NormalDist().cdf((math.log(250) - math.log(p50)) / sigma)
    r = simulate_copies_demand(
        np.ones(60), 10, [ic(1e6, 1, 1)], CAP, EXACT, slo_ttft_p99_ms=250, slo_itl_p99_ms=1e6
    )
    row = r.summary.iloc[0]
    assert row.slo_violation_rate == pytest.approx(share, abs=1e-6)
    assert row.error_rate == 0
    assert row.ttft_p99_ms == pytest.approx(p99, rel=1e-6)
    # every step's p99 (308.8 ms) is over the objective: one surge as long as the run
    assert (row.surges, row.recovery_s) == (1, 600.0)


def test_scale_out_from_zero_by_a_step_policy_on_no_capacity_failures():
    # 60 s idle, then 2 requests per 10-s step. At zero copies each fails (NoCapacity). The
    # minute [60, 120) sums 12 failures, visible at t = 120 (lag 0): +1 copy, loading 258 s on a
    # new instance booting 300 s: 558 s, rounded up to the step: in service at 120 + 560 = 680.
    # The step policy's 300-s cooldown, started at 680, keeps the failures of minute 10 (steps
    # 66, 67) from adding a second copy; target tracking (6 per copy) sees x = 3.05 and stays.
    demand = np.array([0.0] * 6 + [2.0] * 90)
    r = simulate_copies_demand(demand, 10, [ic(6, 0, 4, steps=[from_zero()])], CAP, EXACT)
    assert r.desired[:12, 0].tolist() == [0] * 12
    assert r.desired[12:, 0].tolist() == [1] * 84
    assert r.in_service[:68, 0].tolist() == [0] * 68
    assert r.in_service[68:, 0].tolist() == [1] * 28
    row = r.summary.iloc[0]
    assert row.no_capacity_failures == 2 * (68 - 6)
    assert row.failed == 124 and row.error_rate == pytest.approx(124 / 180)
    assert (row.scale_out_events, row.scale_in_events, row.cold_starts) == (1, 0, 1)
    assert row.zero_copy_hours == pytest.approx(12 * 10 / 3600)
    # billed: one instance from step 12 (while it loads too)
    assert row.instance_hours == pytest.approx(84 * 10 / 3600)
    assert row.cost_usd == pytest.approx(84 * 10 / 3600 * 1.2224)


def test_target_tracking_alone_never_leaves_zero():
    demand = np.array([0.0] * 6 + [2.0] * 60)
    r = simulate_copies_demand(demand, 10, [ic(6, 0, 4)], CAP, EXACT)
    assert r.desired.max() == 0
    assert r.summary.iloc[0].no_capacity_failures == 120


def test_copies_per_instance_set_the_bill_and_the_load_time():
    two = LlmCapacity(
        copies_per_instance=2, ttft=CAP.ttft, itl=CAP.itl, copy_load_s=60, instance_boot_s=300
    )
    # 3 copies held steady: ceil(3 / 2) = 2 instances billed for the hour
    r = simulate_copies_demand(np.zeros(60), 60, [ic(600, 3, 3, metric=_IPC)], two, EXACT)
    row = r.summary.iloc[0]
    assert (row.instance_hours, row.copy_hours, row.max_instances) == (2.0, 3.0, 2)
    assert row.cost_usd == pytest.approx(2 * 1.2224)
    assert two.boot_s_for(np.array([0, 1, 2, 3])).tolist() == [360, 60, 360, 60]
    # a scale-out 1 -> 2 copies at t = 180 (3 datapoints of 600 per copy > 60): the second copy
    # fits on the running instance and loads in 60 s; with one copy per instance, 360 s
    policy = ic(60, 1, 2, metric=_IPC)
    for capacity, ready in (
        (two, 240),
        (LlmCapacity(ttft=CAP.ttft, itl=CAP.itl, copy_load_s=60), 540),
    ):
        r = simulate_copies_demand(np.full(12, 600.0), 60, [policy], capacity, EXACT)
        first = int(np.argmax(r.in_service[:, 0] == 2))
        assert int(np.argmax(r.desired[:, 0] == 2)) * 60 == 180
        assert first * 60 == ready


_IPC = MetricType.INVOCATIONS_PER_COPY


def test_warm_start_copies():
    assert steady_copies(ic(4, 0, 8), CAP, 0.0) == 0
    # 1 rps at 4 in flight per copy: one copy completes 4 / 15.65 rps -> ceil(3.91) = 4
    assert steady_copies(ic(4, 0, 8), CAP, 1.0) == 4
    assert steady_copies(ic(30, 1, 8, metric=_IPC), CAP, 1.0) == 2


# -- agreement with the scalar model ---------------------------------------------------------------


def _scenario(seed: int):
    rng = np.random.default_rng(seed)
    cpi = int(rng.choice([1, 2, 4]))
    copy = scalar_copies.CopyServing(
        limit=int(rng.choice([4, 8])),
        output_tokens=float(rng.choice([64, 256])),
        copies_per_instance=cpi,
        copy_load_s=float(rng.choice([0, 60, 258])),
        instance_boot_s=float(rng.choice([0, 120, 300])),
    )
    capacity = LlmCapacity(
        copies_per_instance=cpi,
        max_concurrency_per_copy=copy.limit,
        output_tokens=copy.output_tokens,
        copy_load_s=copy.copy_load_s,
        instance_boot_s=copy.instance_boot_s,
        ttft=tuple(CurvePoint(*p) for p in copy.ttft),
        itl=tuple(CurvePoint(*p) for p in copy.itl),
    )
    high_res = rng.random() < 0.7
    step_s = 10 if high_res else 60
    n = int(rng.integers(40, 120)) * (3 if high_res else 1)
    levels = rng.choice([0, 0, 0.05, 0.3, 1.0, 3.0, 8.0], size=int(rng.integers(2, 7)))
    cuts = np.sort(rng.integers(0, n, size=len(levels) - 1))
    rps = np.repeat(levels, np.diff(np.concatenate([[0], cuts, [n]])))
    demand = rng.poisson(rps * step_s).astype(float)
    candidates = []
    for _ in range(4):
        lo = int(rng.choice([0, 0, 1, 2]))
        hi = max(lo, 1) + int(rng.integers(0, 8))
        conc = high_res and rng.random() < 0.8
        steps = []
        if lo == 0 or rng.random() < 0.3:
            steps.append(
                from_zero(
                    period_s=int(rng.choice([60, 10])) if high_res else 60,
                    cooldown_s=int(rng.choice([0, 60, 300])),
                    adjust=int(rng.integers(1, 3)),
                    exact=bool(rng.random() < 0.3),
                )
            )
        candidates.append(
            ic(
                float(rng.choice([1, 2, 4, 6, 8])) if conc else float(rng.choice([6, 12, 30])),
                lo,
                hi,
                steps=steps,
                metric=None if conc else _IPC,
                scale_out_cooldown_s=int(rng.choice([0, 60, 300])),
                scale_in_cooldown_s=int(rng.choice([0, 300, 900])),
            )
        )
    return dict(
        demand=demand,
        step_s=step_s,
        copy=copy,
        capacity=capacity,
        candidates=candidates,
        lag_s=float(rng.choice([0, 30, 60])),
        jitter_s=float(rng.choice([0, 0, 90])),
        initial=None if rng.random() < 0.5 else int(rng.integers(0, 4)),
        slo=(float(rng.choice([400, 800, 1500])), float(rng.choice([70, 90]))),
    )


@functools.cache
def _simulated(seed: int):
    sc = _scenario(seed)
    return sc, simulate_copies_demand(
        sc["demand"],
        sc["step_s"],
        sc["candidates"],
        sc["capacity"],
        SimulationSettings(metric_lag_s=sc["lag_s"], boot_jitter_s=sc["jitter_s"]),
        seed=seed,
        initial_capacity=sc["initial"],
        slo_ttft_p99_ms=sc["slo"][0],
        slo_itl_p99_ms=sc["slo"][1],
    )


@pytest.mark.parametrize("seed", range(40))
def test_vectorised_copies_match_the_scalar_model(seed):
    sc, result = _simulated(seed)
    T = len(sc["demand"])
    jitter: float | list[float] = 0.0
    if sc["jitter_s"] > 0:  # one draw per step shared by the candidates, as documented
        rng = np.random.default_rng(seed)
        j = sc["jitter_s"]
        jitter = [float(rng.uniform(-j, j)) for _ in range(T)]
    for i, p in enumerate(sc["candidates"]):
        rules = [tracking_rule(p)]
        step_rules = [
            scalar_model.StepRule(
                threshold=s.alarm.threshold,
                steps=[(st.lower, st.upper, st.scaling_adjustment) for st in s.steps],
                stream="nocap" if s.alarm.period_s == 60 else "nocap10",
                aggregation="Maximum",
                adjustment_type=s.adjustment_type.value,
                cooldown_s=s.cooldown_s,
            )
            for s in p.step_policies
        ]
        ref = scalar_model.run(
            list(sc["demand"]),
            sc["step_s"],
            rules,
            p.min_capacity,
            p.max_capacity,
            lag_s=sc["lag_s"],
            boot_s=jitter,
            initial=sc["initial"],
            step_rules=step_rules,
            copies=sc["copy"],
        )
        where = f"candidate {i} ({p.label})"
        assert result.desired[:, i].tolist() == ref.desired, where
        assert result.in_service[:, i].tolist() == ref.in_service, where
        np.testing.assert_allclose(result.queue_start[:, i], ref.queue_start, rtol=1e-9, atol=1e-6)
        row = result.summary.iloc[i]
        assert (row.scale_out_events, row.scale_in_events) == (ref.scale_outs, ref.scale_ins)
        total = scalar_copies.summarise(
            list(sc["demand"]),
            sc["step_s"],
            ref.desired,
            ref.in_service,
            ref.queue_start,
            *sc["slo"],
            sc["copy"],
        )
        assert row.instance_hours == pytest.approx(total.instance_hours, rel=1e-12), where
        assert row.cost_usd == pytest.approx(total.cost_usd, rel=1e-12), where
        assert row.failed == pytest.approx(total.failed, rel=1e-9, abs=1e-6), where
        assert row.no_capacity_failures == pytest.approx(total.no_capacity, abs=1e-9), where
        assert row.error_rate == pytest.approx(total.error_rate, rel=1e-9, abs=1e-12), where
        assert row.slo_violation_rate == pytest.approx(total.slo_violation_rate, abs=1e-6), where
        assert row.underprovisioned_minutes == total.underprovisioned_minutes, where
        assert (row.surges, row.recovery_s) == (total.surges, total.recovery_s), where
        assert (row.zero_copy_hours, row.cold_starts) == (
            pytest.approx(total.zero_copy_hours),
            total.cold_starts,
        ), where
        if math.isnan(total.ttft_p99_ms):
            assert math.isnan(row.ttft_p99_ms), where
        else:  # the simulator keeps per-step p99s as float32
            assert row.ttft_p99_ms == pytest.approx(total.ttft_p99_ms, rel=1e-6), where


def test_copy_scenarios_exercise_every_path():
    seen = {"from_zero": 0, "to_zero": 0, "queue": 0, "timeouts": 0, "no_capacity": 0, "10s": 0}
    for seed in range(40):
        sc, r = _simulated(seed)
        was_zero = r.desired[:-1] == 0
        seen["from_zero"] += int((was_zero & (r.desired[1:] > 0)).any())
        seen["to_zero"] += int((~was_zero & (r.desired[1:] == 0)).any())
        seen["queue"] += int((r.queue_start > 0).any())
        seen["timeouts"] += int((r.summary.failed > r.summary.no_capacity_failures).any())
        seen["no_capacity"] += int((r.summary.no_capacity_failures > 0).any())
        seen["10s"] += sc["step_s"] == 10
    assert min(seen.values()) >= 8, seen
