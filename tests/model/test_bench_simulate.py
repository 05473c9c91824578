"""Benchmark: 1,000 candidates x 14 days of per-minute traffic, and the scalar loop beside it.

Goals (issue 4): <= 3 s on one core, >= 100x the plain scalar implementation doing the same
work (tests/model/scalar_model.py: ``run`` for the controller and queue, ``summarise`` for serving,
latency, SLO violations and totals). Run with ``make bench``; figures are printed. CPU time of
this process is reported beside wall time because the machine may be shared.
"""

from __future__ import annotations

import itertools
import time

import numpy as np
import pytest
import scalar_model

from tests.conftest import TRACES
from tuner.model.capacity import Capacity
from tuner.model.settings import SimulationSettings
from tuner.model.simulator import simulate
from tuner.policy.policy import ScalingPolicy
from tuner.profiles.profile_file import parse_profile

ELB = TRACES / "elb_request_count_8c0756.csv"  # 14 days at 5-minute intervals: 20,160 minutes
SAMPLE = 4  # candidates run through the scalar loop


def _grid() -> list[ScalingPolicy]:
    targets = np.linspace(300, 1200, 10)
    outs, ins, maxes = (0, 60, 120, 300, 600), (300, 600, 900, 1800), (6, 10, 20, 40, 80)
    return [
        ScalingPolicy(
            min_capacity=1,
            max_capacity=m,
            target_value=float(t),
            scale_out_cooldown_s=o,
            scale_in_cooldown_s=i,
        )
        for t, o, i, m in itertools.product(targets, outs, ins, maxes)
    ]


@pytest.mark.benchmark
def test_bench_1000_candidates_x_14_days():
    if not ELB.is_file():
        pytest.skip(f"{ELB} is not there (../shared beside the checkout)")
    profile = parse_profile(
        {
            "name": "elb-14d",
            "noise": "poisson",
            "segment": [{"replay": str(ELB), "peak_rps": 120, "limit": "14d"}],
        },
        base_dir=TRACES,
    )
    policies = _grid()
    cap = Capacity.default()
    assert len(policies) == 1000
    best_wall, best_cpu = np.inf, np.inf
    for _ in range(3):  # best of 3: the machine may be shared
        wall, cpu = time.perf_counter(), time.process_time()
        result = simulate(
            profile, policies, cap, seed=1, settings=SimulationSettings(boot_jitter_s=0.0)
        )
        best_wall = min(best_wall, time.perf_counter() - wall)
        best_cpu = min(best_cpu, time.process_time() - cpu)
    minutes = len(result.demand)
    cand_minutes = minutes * len(policies)
    assert minutes == 20_160

    demand = [float(x) for x in result.demand]
    picks = np.random.default_rng(0).choice(len(policies), SAMPLE, replace=False)
    # The scalar side does the same work as simulate(): the controller and queue (run), then
    # serving every period for latency, failures and SLO violations and the totals (summarise).
    scalar_s = scalar_cpu_s = np.inf
    controller_share = 0.0
    for i in picks:  # best candidate time, as for the vectorised run
        wall, cpu = time.perf_counter(), time.process_time()
        p = policies[i]
        ref = scalar_model.run(
            demand,
            60,
            [scalar_model.Rule(p.target_value, p.scale_out_cooldown_s, p.scale_in_cooldown_s)],
            p.min_capacity,
            p.max_capacity,
            lag_s=60,
            boot_s=300,
        )
        ran = time.process_time() - cpu
        total = scalar_model.summarise(demand, 60, ref, result.slo_p99_ms)
        cpu_s = time.process_time() - cpu
        if cpu_s < scalar_cpu_s:
            controller_share = ran / cpu_s
        scalar_s = min(scalar_s, time.perf_counter() - wall)
        scalar_cpu_s = min(scalar_cpu_s, cpu_s)
        assert ref.desired == result.desired[:, i].tolist()
        row = result.summary.iloc[i]
        assert row.failed == pytest.approx(total.failed, rel=1e-9, abs=1e-6)
        assert row.slo_violation_rate == pytest.approx(total.slo_violation_rate, abs=1e-6)
        assert (row.surges, row.recovery_s) == (total.surges, total.recovery_s)
    ratio = scalar_s / (best_wall / len(policies))
    ratio_cpu = scalar_cpu_s / (best_cpu / len(policies))
    print(
        f"\nsimulate: {len(policies)} candidates x {minutes} minutes = {cand_minutes / 1e6:.1f} M "
        f"candidate-minutes in {best_wall:.2f} s wall ({best_cpu:.2f} s CPU), "
        f"{cand_minutes / best_wall / 1e6:.1f} M candidate-minutes/s\n"
        f"scalar loop: {scalar_s:.3f} s per candidate ({minutes / scalar_s / 1e3:.0f} k "
        f"candidate-minutes/s, best of {SAMPLE}; {controller_share:.0%} of it the controller and "
        f"queue, the rest serving and totals); vectorised is {ratio:.0f}x faster "
        f"({ratio_cpu:.0f}x by CPU time)\n"
        f"mean scale-outs per candidate {result.summary.scale_out_events.mean():.0f}, "
        f"candidates meeting 1% SLO violations: {(result.summary.slo_violation_rate < 0.01).sum()}"
    )
    met = {"<= 3 s": best_cpu <= 3.0, ">= 100x": ratio_cpu >= 100}
    print("goals: " + ", ".join(f"{k} {'met' if v else 'NOT MET'}" for k, v in met.items()))
    assert best_cpu <= 3.0, f"goal: <= 3 s on one core, took {best_cpu:.2f} s CPU"
    # The goal is printed above; the machine is shared and both sides slow down unevenly under
    # load, so the assertion is a regression floor below the goal, not the goal itself.
    assert ratio_cpu >= 70, (
        f"the vectorised simulator should be >= 100x the scalar loop, got {ratio_cpu:.0f}x"
    )
