"""The vectorised simulator: timelines, summaries, and agreement with the scalar model."""

from __future__ import annotations

import functools
import json
import math

import numpy as np
import pandas as pd
import pytest
import scalar_model

import tuner.model.simulator as simulate_module
from tests.model.helpers import tracking_rule
from tuner.errors import ValidationError
from tuner.model.capacity import Capacity, LatencyPoint
from tuner.model.scaling import ScheduledAction
from tuner.model.settings import SimulationSettings
from tuner.model.simulator import TIMELINE_COLUMNS, simulate, simulate_demand
from tuner.policy.policy import ScalingPolicy
from tuner.policy.tracking import MetricType

CAPACITY = Capacity.default()  # 20 rps per instance, p50 40-60 ms, p99 80-150 ms, 60-s timeout


def policy(target: float, **kw) -> ScalingPolicy:
    kw.setdefault("min_capacity", 1)
    kw.setdefault("max_capacity", 10)
    return ScalingPolicy(target_value=target, **kw)


# -- agreement with the plain scalar model ---------------------------------------------------------


def _random_policy(rng: np.random.Generator, lo: int, hi: int, concurrency: bool) -> ScalingPolicy:
    kw = dict(
        min_capacity=lo,
        max_capacity=hi,
        scale_out_cooldown_s=int(rng.choice([0, 60, 120, 300, 600])),
        scale_in_cooldown_s=int(rng.choice([0, 60, 300, 900])),
        disable_scale_in=bool(rng.random() < 0.2),
        name=f"p{rng.integers(1000)}",
    )
    if concurrency:
        return ScalingPolicy(
            target_value=float(rng.choice([1, 2.5, 4, 8, 15])),
            metric_type=MetricType.CONCURRENT_REQUESTS_PER_MODEL,
            **kw,
        )
    return ScalingPolicy(target_value=float(rng.choice([60, 300, 450, 600, 900, 1100])), **kw)


def _random_scenario(seed: int):
    rng = np.random.default_rng(seed)
    high_res = rng.random() < 0.3
    step_s = 10 if high_res else 60
    n = int(rng.integers(40, 160)) * (3 if high_res else 1)
    # piecewise levels (requests per minute), with zero stretches and spikes past saturation
    levels = rng.choice([0, 120, 600, 1500, 3000, 8000, 30000], size=int(rng.integers(2, 7)))
    cuts = np.sort(rng.integers(0, n, size=len(levels) - 1))
    per_min = np.repeat(levels, np.diff(np.concatenate([[0], cuts, [n]])))
    demand = rng.poisson(per_min * step_s / 60.0).astype(float)
    candidates = []
    for _ in range(4):
        lo = int(rng.integers(1, 4))
        hi = lo + int(rng.integers(0, 12))
        j = 1 if rng.random() < 0.7 else 2
        candidates.append(
            [_random_policy(rng, lo, hi, high_res and rng.random() < 0.6) for _ in range(j)]
        )
    scheduled = []
    if rng.random() < 0.3:
        for _ in range(int(rng.integers(1, 3))):
            lo = int(rng.integers(1, 5))
            at = float(rng.integers(0, n) * step_s + rng.choice([0, 5]))
            scheduled.append(ScheduledAction(at, lo, lo + int(rng.integers(0, 8))))
    return dict(
        demand=demand,
        step_s=step_s,
        candidates=candidates,
        lag_s=float(rng.choice([0, 30, 60, 120, 180])),
        boot_s=float(rng.choice([0, 45, 60, 120, 300, 330])),
        jitter_s=float(rng.choice([0, 0, 90])),
        initial=None if rng.random() < 0.5 else int(rng.integers(1, 6)),
        scheduled=scheduled,
    )


@functools.cache
def _simulated(seed: int):
    """A random scenario and its vectorised simulation (shared by the tests below)."""
    sc = _random_scenario(seed)
    return sc, _simulate_scenario(sc, seed)


def _simulate_scenario(sc: dict, seed: int):
    return simulate_demand(
        sc["demand"],
        sc["step_s"],
        sc["candidates"],
        CAPACITY,
        seed=seed,
        initial_capacity=sc["initial"],
        scheduled=sc["scheduled"],
        settings=SimulationSettings(
            boot_s=sc["boot_s"], metric_lag_s=sc["lag_s"], boot_jitter_s=sc["jitter_s"]
        ),
    )


@pytest.mark.parametrize("seed", range(300))
def test_vectorised_simulator_matches_the_scalar_model(seed):
    sc, result = _simulated(seed)
    T, C = len(sc["demand"]), len(sc["candidates"])
    boots: float | np.ndarray = sc["boot_s"]
    if sc["jitter_s"] > 0:  # the simulator's documented draw: per period, shared by candidates
        rng = np.random.default_rng(seed)
        j = sc["jitter_s"]
        boots = np.array([np.full(C, max(sc["boot_s"] + rng.uniform(-j, j), 0)) for _ in range(T)])
    serving = scalar_model.Serving(20.0, 60.0, [(5, 40.0), (20, 60.0)])
    for i, group in enumerate(sc["candidates"]):
        rules = [tracking_rule(p) for p in group]
        ref = scalar_model.run(
            list(sc["demand"]),
            sc["step_s"],
            rules,
            group[0].min_capacity,
            group[0].max_capacity,
            lag_s=sc["lag_s"],
            boot_s=boots if isinstance(boots, float) else [float(b[i]) for b in boots],
            initial=sc["initial"],
            scheduled=[(a.at_s, a.min_capacity, a.max_capacity) for a in sc["scheduled"]],
            serving=serving,
        )
        where = f"candidate {i} ({'+'.join(p.label for p in group)})"
        assert result.desired[:, i].tolist() == ref.desired, where
        assert result.in_service[:, i].tolist() == ref.in_service, where
        assert result.alarm_high[:, i].tolist() == ref.alarm_high, where
        assert result.alarm_low[:, i].tolist() == ref.alarm_low, where
        np.testing.assert_allclose(result.queue_start[:, i], ref.queue_start, rtol=1e-9, atol=1e-6)
        row = result.summary.iloc[i]
        assert (row.scale_out_events, row.scale_in_events) == (ref.scale_outs, ref.scale_ins)
        total = scalar_model.summarise(
            list(sc["demand"]), sc["step_s"], ref, result.slo_p99_ms, serving
        )
        assert row.instance_hours == pytest.approx(total.instance_hours, rel=1e-12), where
        assert row.cost_usd == pytest.approx(total.cost_usd, rel=1e-12), where
        assert row.requests == total.requests, where
        assert row.failed == pytest.approx(total.failed, rel=1e-9, abs=1e-6), where
        # the simulator's normal tail is Abramowitz-Stegun 7.1.26 (error < 1.5e-7 per request)
        assert row.slo_violation_rate == pytest.approx(total.slo_violation_rate, abs=1e-6), where
        assert row.error_rate == pytest.approx(total.error_rate, rel=1e-9, abs=1e-12), where
        assert row.underprovisioned_minutes == total.underprovisioned_minutes, where
        assert (row.surges, row.recovery_s) == (total.surges, total.recovery_s), where
        assert (row.mean_instances, row.max_instances) == pytest.approx(
            (total.mean_instances, total.max_instances), rel=1e-12
        ), where
        # the simulator reports the upper edge of a 3.5%-wide histogram bin (at least 1 ms)
        if math.isnan(total.p99_latency_ms):
            assert math.isnan(row.p99_latency_ms), where
        else:
            assert total.p99_latency_ms <= row.p99_latency_ms, where
            assert row.p99_latency_ms <= max(total.p99_latency_ms * 1.036, 1.0), where


@pytest.mark.parametrize("seed", [3, 8, 16, 24])
def test_summary_does_not_depend_on_the_block_size(seed, monkeypatch):
    # The summary is computed over blocks of periods, with runs of unhealthy periods carried
    # across block edges; scenarios are shorter than a block, so cut them into small ones.
    sc, whole = _simulated(seed)
    monkeypatch.setattr(simulate_module, "_BLOCK", 7)
    cut = _simulate_scenario(sc, seed)
    assert (whole.summary.surges > 1).sum() >= 2  # runs to carry across block edges
    pd.testing.assert_frame_equal(cut.summary, whole.summary, rtol=1e-12)


def test_property_scenarios_exercise_every_path():
    # The random scenarios above are only worth something if they reach the interesting states.
    seen = {"scale_in": 0, "queue": 0, "at_max": 0, "10s": 0, "two_policies": 0, "jitter": 0}
    for seed in range(300):
        sc, r = _simulated(seed)
        seen["scale_in"] += int((r.summary.scale_in_events > 0).sum())
        seen["queue"] += int((r.queue_start > 0).any())
        maxes = np.array([g[0].max_capacity for g in sc["candidates"]])
        seen["at_max"] += int((r.desired == maxes).any())
        seen["10s"] += sc["step_s"] == 10
        seen["two_policies"] += sum(len(g) == 2 for g in sc["candidates"])
        seen["jitter"] += sc["jitter_s"] > 0
    assert min(seen.values()) >= 20, seen


# -- timelines and summaries checked by hand ---------------------------------------------------


def test_worked_example_timeline_and_summary():
    demand = np.array([300.0] * 10 + [2100.0] * 50)
    r = simulate_demand(
        demand,
        60,
        [policy(600)],
        CAPACITY,
        settings=SimulationSettings(boot_s=300, metric_lag_s=0, boot_jitter_s=0.0),
    )
    tl = r.timeline(0)
    assert list(tl.columns[: len(TIMELINE_COLUMNS)]) == list(TIMELINE_COLUMNS)
    assert len(tl) == 60 and tl.t_s.iloc[13] == 780
    row = tl.set_index("t_s")
    assert row.loc[780, "desired_capacity"] == 4 and row.loc[780, "instances_in_service"] == 1
    assert row.loc[1080, "instances_in_service"] == 4
    # booting instances do not count: 2,100 requests on 1 instance until 1080
    assert row.loc[1020, "invocations_per_instance"] == 2100
    assert row.loc[1080, "invocations_per_instance"] == 525
    assert row.loc[1020, "updating"] == 1 and row.loc[1080, "updating"] == 0
    assert row.loc[780, "alarm_high"] == 1 and row.loc[1980, "alarm_low"] == 1
    # 2,100/min = 35 rps on 1 instance sustaining 20: 15 rps queue, 900 per minute; the queue
    # holds 20 x 60 = 1,200, so 600 -> 1,200 then failures of 900 a minute from minute 12.
    assert row.loc[600, "queued"] == 900 and row.loc[600, "errors"] == 0
    assert row.loc[660, "errors"] == 600 and row.loc[720, "errors"] == 900
    assert row.loc[600, "p99_latency_ms"] == pytest.approx(150 + 900 / 20 * 1000)
    # failures from 660 until 1080: 600 + 6 x 900; at 1080 the 1,200 queued drain (35 rps of
    # capacity spare on 4 instances x 20 = 80 rps) within the minute
    s = r.summary.iloc[0]
    assert s.failed == pytest.approx(600 + 6 * 900)
    assert s.requests == 300 * 10 + 2100 * 50
    assert s.error_rate == pytest.approx(s.failed / s.requests)
    # billed: desired capacity (booting instances are billed): 13 min x 1 + 47 min x 4
    assert s.instance_hours == pytest.approx((13 + 47 * 4) / 60)
    assert s.cost_usd == pytest.approx(s.instance_hours * 0.23)
    assert s.scale_out_events == 1 and s.scale_in_events == 0
    # under-provisioned while demand (35 rps) exceeds 1 x 20 rps: minutes 10..17
    assert s.underprovisioned_minutes == 8
    # unhealthy from 600 (queue) through 1080, whose requests still wait behind the 1,200 queued
    # (15 s at 80 rps); from 1140 the p99 is the curve's at 8.75 rps: 97.5 ms < 150
    assert s.surges == 1
    assert s.recovery_s == 9 * 60
    assert row.loc[1140, "p99_latency_ms"] == pytest.approx(97.5)
    assert s.slo_violation_rate > s.error_rate
    assert math.isclose(s.max_instances, 4)


def test_idle_endpoint_scales_in_to_min_and_steady_load_costs_exactly():
    # zero traffic still emits zero datapoints: AlarmLow after 15 + lag and down to Min.
    r = simulate_demand(
        np.zeros(40),
        60,
        [policy(600, min_capacity=2)],
        CAPACITY,
        initial_capacity=6,
        settings=SimulationSettings(metric_lag_s=60, boot_jitter_s=0.0),
    )
    tl = r.timeline(0)
    assert tl.desired_capacity.tolist() == [6] * 16 + [2] * 24  # 15 datapoints + 60 s lag
    s = r.summary.iloc[0]
    assert s.instance_hours == pytest.approx((16 * 6 + 24 * 2) / 60)
    assert s.error_rate == 0 and s.slo_violation_rate == 0 and np.isnan(s.p99_latency_ms)


def test_slo_violation_rate_uses_the_latency_curve():
    # Steady 10 rps on one instance: p50 = 46.67, p99 = 103.3 (interpolated); with a 103.3-ms
    # objective exactly 1% of requests are slower.
    cap = Capacity(latency=(LatencyPoint(5, 40, 80), LatencyPoint(20, 60, 150)))
    p99 = 80 + (150 - 80) * (10 - 5) / 15
    r = simulate_demand(
        np.full(30, 600.0),
        60,
        [policy(1200)],
        cap,
        settings=SimulationSettings(slo_p99_ms=p99, boot_jitter_s=0.0),
    )
    s = r.summary.iloc[0]
    assert s.slo_violation_rate == pytest.approx(0.01, rel=1e-4)
    assert s.p99_latency_ms == pytest.approx(p99, rel=0.04)  # histogram bins of 3.5%
    r = simulate_demand(
        np.full(30, 600.0), 60, [policy(1200)], cap, settings=SimulationSettings(boot_jitter_s=0.0)
    )
    assert r.slo_p99_ms == 150  # default: p99 at max_rps_per_instance
    # log-normal through (46.67, 103.3): sigma = ln(103.3 / 46.67) / z99, share = Q(z); the
    # simulator's normal tail is Abramowitz-Stegun's (absolute error < 1.5e-7)
    sigma = math.log(p99 / (40 + 20 * 5 / 15)) / 2.3263479
    z = math.log(150 / (40 + 20 * 5 / 15)) / sigma
    assert r.summary.iloc[0].slo_violation_rate == pytest.approx(
        0.5 * math.erfc(z / 2**0.5), rel=1e-3
    )


def test_simulate_uses_the_profile_counts_and_writes_labels():
    class Steady:
        name = "steady"
        duration_s = 1800.0

        def counts(self, period_s, *, seed=None):
            return np.full(int(self.duration_s // period_s), 5.0 * period_s)

    pols = [policy(600), policy(300, scale_in_cooldown_s=900)]
    r = simulate(
        Steady(), pols, CAPACITY, settings=SimulationSettings(metric_lag_s=0, boot_jitter_s=0.0)
    )
    assert r.period_s == 60 and r.summary.label.tolist() == [p.label for p in pols]
    assert r.summary.requests.tolist() == [9000.0, 9000.0]
    conc = policy(4, metric_type=MetricType.CONCURRENT_REQUESTS_PER_MODEL)
    r = simulate(
        Steady(),
        [pols[0], conc],
        CAPACITY,
        settings=SimulationSettings(metric_lag_s=0, boot_jitter_s=0.0),
    )
    assert r.period_s == 10 and len(r.timeline(1)) == 180


def test_bad_inputs_raise_validation_errors():
    d = np.ones(10)
    with pytest.raises(ValidationError, match="--boot-s >= 0 must hold, got -1"):
        simulate_demand(
            d,
            60,
            [policy(600)],
            CAPACITY,
            settings=SimulationSettings(boot_s=-1, boot_jitter_s=0.0),
        )
    with pytest.raises(ValidationError, match="--metric-lag-s"):
        simulate_demand(
            d,
            60,
            [policy(600)],
            CAPACITY,
            settings=SimulationSettings(metric_lag_s=-1, boot_jitter_s=0.0),
        )
    with pytest.raises(ValidationError, match="demand"):
        simulate_demand(
            -d, 60, [policy(600)], CAPACITY, settings=SimulationSettings(boot_jitter_s=0.0)
        )
    with pytest.raises(ValidationError, match="period_s must be 60"):
        simulate_demand(
            d, 10, [policy(600)], CAPACITY, settings=SimulationSettings(boot_jitter_s=0.0)
        )


def test_timeline_round_trips_through_csv(tmp_path):
    r = simulate_demand(
        np.full(20, 900.0),
        60,
        [policy(600)],
        CAPACITY,
        settings=SimulationSettings(boot_jitter_s=0.0),
    )
    path = tmp_path / "timeline.csv"
    r.timeline(0).to_csv(path, index=False)
    back = pd.read_csv(path)
    assert list(back.columns[:10]) == list(TIMELINE_COLUMNS[:10])
    assert back.desired_capacity.tolist() == r.desired[:, 0].tolist()
    json.dumps(r.summary.iloc[0].drop("label").astype(float).to_dict())


# -- the command ---------------------------------------------------------------------------------


def _files(tmp_path, metric="SageMakerVariantInvocationsPerInstance"):
    profile = tmp_path / "spike.toml"
    profile.write_text(
        'name = "spike"\n[[segment]]\nhold = "10m"\nrps = 5\n[[segment]]\nhold = "50m"\nrps = 35\n'
    )
    pol = tmp_path / "p.policy.json"
    pol.write_text(
        json.dumps(
            {
                "ScalableTarget": {"MinCapacity": 1, "MaxCapacity": 10},
                "TargetTrackingScalingPolicyConfiguration": {
                    "TargetValue": 600.0,
                    "PredefinedMetricSpecification": {"PredefinedMetricType": metric},
                    "ScaleOutCooldown": 300,
                    "ScaleInCooldown": 300,
                },
            }
        )
    )
    return profile, pol


def test_cli_writes_timeline_and_summary(tmp_path, capsys):
    from tuner.cli import main

    profile, pol = _files(tmp_path)
    out = tmp_path / "out"
    args = ["simulate", "--profile", str(profile), "--policy", str(pol), "--out", str(out)]
    assert main([*args, "--metric-lag-s", "0", "--seed", "1"]) == 0
    tl = pd.read_csv(out / "timeline.csv")
    assert list(tl.columns[:10]) == [
        "t_s", "demand_rps", "invocations", "instances_in_service", "desired_capacity",
        "invocations_per_instance", "alarm_high", "alarm_low", "errors", "p99_latency_ms",
    ]  # fmt: skip
    # the reference's worked example again: 300/min then 2,100/min
    assert tl.set_index("t_s").loc[780, "desired_capacity"] == 4
    summary = json.loads((out / "summary.json").read_text())
    for key in ("instance_hours", "cost_usd", "error_rate", "slo_violation_rate",
                "scale_out_events", "scale_in_events"):  # fmt: skip
        assert key in summary
    assert summary["scale_out_events"] == 1 and summary["failed"] == 6000
    captured = capsys.readouterr()
    assert "1 scale-outs" in captured.out and "simulating" in captured.err
    # two policies: a summary row each and their timelines
    other = tmp_path / "q.policy.json"
    other.write_text(pol.read_text().replace("600.0", "300.0"))
    assert main([*args, "--policy", str(other)]) == 0
    assert len(pd.read_csv(out / "summary.csv")) == 2
    assert len(list((out / "timelines").glob("*.csv"))) == 2


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--boot-s", "-5"], "--boot-s >= 0 must hold, got -5"),
        (["--profile", "missing.toml"], "--profile must be a TOML file"),
        (["--policy", "missing.json"], "cannot read policy file"),
        (["--slo-p99-ms", "0"], "--slo-p99-ms > 0 must hold"),
    ],
    ids=["negative-boot", "unreadable-profile", "unreadable-policy", "bad-slo"],
)
def test_cli_bad_inputs_exit_2_with_one_line(tmp_path, capsys, extra, message):
    from tuner.cli import main

    profile, pol = _files(tmp_path)
    args = ["simulate", "--profile", str(profile), "--policy", str(pol), "--out", str(tmp_path)]
    for flag in ("--profile", "--policy"):
        if flag in extra:
            args[args.index(flag) + 1] = str(tmp_path / extra[extra.index(flag) + 1])
            extra = []
    assert main(args + extra) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert message in err[-1] and err[-1].startswith("tuner simulate: error:")
    assert not any("Traceback" in line for line in err)


def test_cli_rejects_unknown_and_unmodelled_metric_types(tmp_path, capsys):
    from tuner.cli import main

    for metric, message in (
        ("SageMakerVariantCPU", "PredefinedMetricType must be one of"),
        ("SageMakerVariantProvisionedConcurrencyUtilization", "to be modelled"),
    ):
        profile, pol = _files(tmp_path, metric)
        code = main(["simulate", "--profile", str(profile), "--policy", str(pol), "--out",
                     str(tmp_path / "o")])  # fmt: skip
        assert code == 2
        assert message in capsys.readouterr().err


def test_cli_help_teaches(capsys):
    from tuner.cli import main

    with pytest.raises(SystemExit) as info:
        main(["simulate", "--help"])
    assert info.value.code == 0
    text = capsys.readouterr().out
    assert "examples:" in text and "--metric-lag-s" in text and "timeline.csv" in text


def test_inference_component_scales_to_zero_and_target_tracking_alone_stays_there():
    # MinCapacity 0 is allowed for inference components. Idle: 15 zero datapoints -> 0 copies.
    # Then traffic fails (no copy serves it) and R = ceil(0 x M / T) = 0: as on AWS, scaling out
    # from zero needs another mechanism than target tracking.
    from tuner.policy.resource import ResourceKind

    p = ScalingPolicy(
        min_capacity=0,
        max_capacity=4,
        target_value=600.0,
        metric_type=MetricType.INVOCATIONS_PER_COPY,
        kind=ResourceKind.INFERENCE_COMPONENT,
    )
    demand = np.array([0.0] * 20 + [1200.0] * 10)
    r = simulate_demand(
        demand,
        60,
        [p],
        CAPACITY,
        initial_capacity=2,
        settings=SimulationSettings(metric_lag_s=0, boot_jitter_s=0.0),
    )
    tl = r.timeline(0)
    assert tl.desired_capacity.tolist() == [2] * 15 + [0] * 15
    assert tl.errors.sum() == 1200 * 10 and tl.alarm_high.iloc[-1] == 1
    assert r.summary.iloc[0].error_rate == 1.0


def test_a_candidate_result_does_not_depend_on_its_neighbours():
    """With boot jitter, simulating a policy alone or among others gives the same numbers."""
    demand = np.r_[np.full(10, 600.0), np.full(40, 6000.0), np.full(30, 900.0)]
    cap = Capacity.default()
    policies = [
        ScalingPolicy(min_capacity=1, max_capacity=20, target_value=t, scale_out_cooldown_s=60)
        for t in (300.0, 600.0, 900.0)
    ]
    together = simulate_demand(
        demand, 60, policies, cap, seed=5, settings=SimulationSettings(boot_jitter_s=120.0)
    )
    alone = simulate_demand(
        demand, 60, policies[2:], cap, seed=5, settings=SimulationSettings(boot_jitter_s=120.0)
    )
    assert together.summary.iloc[2]["instance_hours"] == alone.summary.iloc[0]["instance_hours"]
    assert (
        together.timeline(2)["instances_in_service"] == alone.timeline(0)["instances_in_service"]
    ).all()


def test_cli_scheduled_actions_move_the_range_at_their_time(tmp_path):
    # The worked example's traffic (300/min, then 2,100/min from 600 s) with Min raised to 3 at
    # 5 min and Min 1, Max 2 from 40 min; boot 300 s, no metric lag.
    from tuner.cli import main

    profile, pol = _files(tmp_path)
    out = tmp_path / "o"
    args = ["simulate", "--profile", str(profile), "--policy", str(pol), "--out", str(out),
            "--boot-s", "300", "--metric-lag-s", "0",
            "--scheduled", "5m:3:", "--scheduled", "40m:1:2"]  # fmt: skip
    assert main(args) == 0
    tl = pd.read_csv(out / "timeline.csv").set_index("t_s")
    # 300 s: Min 3 > desired 1, so desired 3 at once, in service when the boot ends at 600 s
    assert (tl.loc[240, "desired_capacity"], tl.loc[300, "desired_capacity"]) == (1, 3)
    assert (tl.loc[540, "instances_in_service"], tl.loc[600, "instances_in_service"]) == (1, 3)
    # 2,100/min on 3 instances = 700 > 600 from the datapoint of [600, 660): AlarmHigh on the
    # third, visible at 780; R = ceil(3 x 700 / 600) = 4, in service at 1080
    assert (tl.loc[720, "desired_capacity"], tl.loc[780, "desired_capacity"]) == (3, 4)
    assert (tl.loc[1020, "instances_in_service"], tl.loc[1080, "instances_in_service"]) == (3, 4)
    # 2400 s: Min 1, Max 2 < 4: both desired and in service drop to 2 at once, and stay (at Max)
    assert tl.loc[2340, "desired_capacity"] == 4
    assert set(tl.loc[2400:, "desired_capacity"]) == {2}
    assert set(tl.loc[2400:, "instances_in_service"]) == {2}
    summary = json.loads((out / "summary.json").read_text())
    assert (summary["scale_out_events"], summary["scale_in_events"]) == (2, 1)
    assert summary["scheduled"] == [
        {"at_s": 300.0, "MinCapacity": 3, "MaxCapacity": None},
        {"at_s": 2400.0, "MinCapacity": 1, "MaxCapacity": 2},
    ]


def test_cli_plus_puts_several_policies_on_one_target(tmp_path):
    from tuner.cli import main
    from tuner.profiles.profile_file import load_profile

    profile, pol = _files(tmp_path)
    tighter = tmp_path / "t450.policy.json"
    data = json.loads(pol.read_text())
    data["TargetTrackingScalingPolicyConfiguration"]["TargetValue"] = 450.0
    tighter.write_text(json.dumps(data))
    out = tmp_path / "o"
    args = ["simulate", "--profile", str(profile), "--policy", f"{pol}+{tighter}",
            "--policy", str(pol), "--out", str(out)]  # fmt: skip
    assert main(args) == 0
    rows = pd.read_csv(out / "summary.csv")
    a, b = ScalingPolicy.load(pol), ScalingPolicy.load(tighter)
    assert rows.label.tolist() == [f"{a.label}+{b.label}", a.label]
    direct = simulate(
        load_profile(profile),
        [[a, b], [a]],
        CAPACITY,
        settings=SimulationSettings(boot_jitter_s=0.0),
    )
    assert rows.instance_hours.tolist() == pytest.approx(direct.summary.instance_hours.tolist())
    # the tighter target wins the scale-outs, so the pair runs more instances than A alone
    assert rows.instance_hours[0] > rows.instance_hours[1]
    summary = json.loads((out / "summary.json").read_text())
    assert [p["TargetTrackingScalingPolicyConfiguration"]["TargetValue"]
            for p in summary["policies"]] == [600.0, 450.0]  # fmt: skip
    assert (out / "timelines" / f"{a.label}+{b.label}.csv").is_file()


@pytest.mark.parametrize(
    "value, message",
    [
        ("7h:4", "--scheduled must be AT:MIN:MAX"),
        ("7h:5:2", "--scheduled MIN <= MAX must hold, got 5 > 2"),
        ("soon:1:2", "--scheduled AT: must be a duration"),
        ("7h:x:2", "--scheduled MIN must be a whole number of instances or empty, got 'x'"),
        ("7h::", "a scheduled action sets MinCapacity, MaxCapacity or both"),
    ],
    ids=["two-fields", "min-over-max", "bad-time", "bad-min", "empty"],
)
def test_cli_bad_scheduled_actions_exit_2_with_one_line(tmp_path, capsys, value, message):
    from tuner.cli import main

    profile, pol = _files(tmp_path)
    args = ["simulate", "--profile", str(profile), "--policy", str(pol), "--out", str(tmp_path),
            "--scheduled", value]  # fmt: skip
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err
