"""`tuner tune`: the run directory, the recommendation on ready profiles, replays, AWS inputs."""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Iterator
from pathlib import Path

import boto3
import pandas as pd
import pytest

from tests.conftest import REGION, REPO, create_endpoint
from tuner.cli import main
from tuner.policy.policy import ScalingPolicy
from tuner.policy.resource import Resource

PROFILES = REPO / "locustfiles" / "profiles"
TIMELINE_COLUMNS = [
    "t_s",
    "demand_rps",
    "invocations",
    "instances_in_service",
    "desired_capacity",
    "invocations_per_instance",
    "alarm_high",
    "alarm_low",
    "errors",
    "p99_latency_ms",
]


@pytest.fixture(scope="module")
def ready_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The default tune of the issue: two ready profiles, default grid, three seeds."""
    out = tmp_path_factory.mktemp("tune") / "run"
    code = main(
        [
            "tune",
            "--profile",
            "steady",
            "--profile",
            "flash-spike",
            "--slo-p99-ms",
            "300",
            "--max-error-rate",
            "0.001",
            "--out",
            str(out),
        ]
    )
    assert code == 0
    return out


def test_run_directory_contract(ready_run: Path) -> None:
    for name in (
        "report.html",
        "report.md",
        "candidates.csv",
        "results.csv",
        "manifest.json",
        "recommendation.json",
        "recommended.policy.json",
    ):
        assert (ready_run / name).is_file(), name
    candidates = pd.read_csv(ready_run / "candidates.csv")
    results = pd.read_csv(ready_run / "results.csv")
    manifest = json.loads((ready_run / "manifest.json").read_text())
    n = len(candidates)
    # 13 targets x 4 x 4 cooldowns x Min {1, 8} (steady/baseline 20 rps, spike peak 160 rps);
    # AWS's target 600 is on the grid (0.5 x 1200), so no extra row.
    assert n == 13 * 4 * 4 * 2 == manifest["grid"]["candidates"]
    assert len(results) == n * 2 * 3
    assert set(results["profile"]) == {"steady", "flash-spike"} and set(results["seed"]) == {
        0,
        1,
        2,
    }
    assert candidates["candidate"].is_unique and list(candidates["rank"]) == list(range(1, n + 1))
    assert list(candidates["role"]).count("recommended") == 1
    assert candidates.loc[candidates["is_rule_of_thumb"], "candidate"].tolist() == [
        "t600-min1-max12-out300-in300"
    ]
    for column in (
        "target_value",
        "min_capacity",
        "max_capacity",
        "scale_out_cooldown_s",
        "scale_in_cooldown_s",
        "monthly_cost_usd",
        "slo_violation_rate",
        "error_rate",
        "p99_latency_ms",
        "scale_out_events",
        "scale_in_events",
        "recovery_s",
        "pareto",
        "meets_objective",
    ):
        assert column in candidates, column
    assert candidates["pareto"].any()
    policy = ScalingPolicy.load(ready_run / "recommended.policy.json")
    assert policy.label == candidates.iloc[0]["candidate"]
    # Timelines: recommended, two alternatives, rule of thumb, on each profile, DESIGN's columns.
    recommendation = json.loads((ready_run / "recommendation.json").read_text())
    shown = {policy.label, *recommendation["alternatives"], "t600-min1-max12-out300-in300"}
    assert len(recommendation["alternatives"]) == 2
    for profile in ("steady", "flash-spike"):
        files = {f.stem for f in (ready_run / "timelines" / profile).glob("*.csv")}
        assert files == shown
        timeline = pd.read_csv(ready_run / "timelines" / profile / f"{policy.label}.csv")
        assert list(timeline.columns[: len(TIMELINE_COLUMNS)]) == TIMELINE_COLUMNS
    # The plotted timelines are the runs of results.csv (seed 0), not look-alikes: billed
    # instance-hours and failed requests agree for every shown candidate on every profile.
    seed0 = results[results["seed"] == 0].set_index(["candidate", "profile"])
    for profile in ("steady", "flash-spike"):
        for label in shown:
            timeline = pd.read_csv(ready_run / "timelines" / profile / f"{label}.csv")
            row = seed0.loc[(label, profile)]
            hours = timeline["desired_capacity"].sum() * 60 / 3600
            assert hours == pytest.approx(row["instance_hours"]), (label, profile)
            assert timeline["errors"].sum() == pytest.approx(row["failed"]), (label, profile)
    # Manifest: file hashes, objective, versions, a command line that reruns the run.
    steady = manifest["profiles"][0]
    assert steady["sha256"] == hashlib.sha256(Path(steady["path"]).read_bytes()).hexdigest()
    assert manifest["objective"] == {
        "slo_p99_ms": 300.0,
        "max_error_rate": 0.001,
        "max_slo_violation": 0.01,
        "margin": 0.8,
    }
    assert set(manifest["versions"]) == {
        "tuner",
        "python",
        "numpy",
        "pandas",
        "matplotlib",
        "boto3",
    }
    assert manifest["command"].startswith("tuner tune --profile steady --profile flash-spike ")
    assert manifest["simulation"]["seeds"] == [0, 1, 2]


def test_recommendation_meets_objective_everywhere_and_beats_or_explains(ready_run: Path) -> None:
    results = pd.read_csv(ready_run / "results.csv")
    recommendation = json.loads((ready_run / "recommendation.json").read_text())
    label = recommendation["label"]
    assert recommendation["meets_objective"]
    # Every profile and seed, with the 0.8 margin: SLO violation <= 0.8%, errors <= 0.08%.
    mine = results[results["candidate"] == label]
    assert len(mine) == 6
    assert (mine["slo_violation_rate"] <= 0.008).all() and (mine["error_rate"] <= 0.0008).all()
    # No cheaper candidate meets the objective on every run.
    candidates = pd.read_csv(ready_run / "candidates.csv").set_index("candidate")
    ok = results.groupby("candidate").apply(
        lambda g: bool(
            (g["slo_violation_rate"] <= 0.008).all() and (g["error_rate"] <= 0.0008).all()
        ),
        include_groups=False,
    )
    cheapest = candidates.loc[ok[ok].index, "monthly_cost_usd"].min()
    assert candidates.loc[label, "monthly_cost_usd"] == pytest.approx(cheapest)
    # On the spike: cheaper than AWS's rule of thumb at an equal or better SLO, or say why not.
    spike = (
        results[results["profile"] == "flash-spike"]
        .groupby("candidate")
        .agg(cost=("monthly_cost_usd", "mean"), violation=("slo_violation_rate", "max"))
    )
    rule = "t600-min1-max12-out300-in300"
    if spike.loc[label, "cost"] > spike.loc[rule, "cost"]:
        assert spike.loc[rule, "violation"] > 0.008
        text = " ".join(recommendation["reasons"])
        assert "On flash-spike the AWS rule-of-thumb policy is cheaper" in text
        assert "misses the objective there" in text
        assert "It keeps MinCapacity 8 instead of 1" in text
    else:
        assert spike.loc[label, "violation"] <= spike.loc[rule, "violation"]


def test_collect_output_replays_through_tune_unchanged(tmp_path: Path) -> None:
    # sample-history.csv has the columns `tuner collect` writes (timestamp,invocations), per
    # minute, with one minute missing.
    history = PROFILES / "sample-history.csv"
    grid = tmp_path / "grid.toml"
    grid.write_text(
        "target_fractions = [0.5, 0.7]\nscale_out_cooldowns_s = [60]\n"
        "scale_in_cooldowns_s = [300]\n"
    )
    out = tmp_path / "run"
    assert (
        main(
            [
                "tune",
                "--profile",
                str(history),
                "--grid",
                str(grid),
                "--seeds",
                "1",
                "--slo-p99-ms",
                "300",
                "--max-error-rate",
                "0.01",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["profiles"][0]["name"] == "sample-history"
    assert manifest["profiles"][0]["sha256"] == hashlib.sha256(history.read_bytes()).hexdigest()
    label = json.loads((out / "recommendation.json").read_text())["label"]
    timeline = pd.read_csv(out / "timelines" / "sample-history" / f"{label}.csv")
    counts = pd.read_csv(history)
    stamps = pd.to_datetime(counts["timestamp"])
    minute = ((stamps - stamps.iloc[0]).dt.total_seconds() // 60).astype(int)
    # Each recorded minute is replayed as recorded; the missing one lies between its neighbours.
    replayed = timeline.set_index(timeline["t_s"] // 60)["invocations"]
    assert replayed.loc[minute].tolist() == pytest.approx(counts["invocations"].tolist())
    gap = sorted(set(range(int(minute.max()) + 1)) - set(minute))
    assert len(gap) == 1 and len(replayed) == int(minute.max()) + 1
    around = replayed.loc[[gap[0] - 1, gap[0] + 1]]
    assert around.min() <= replayed.loc[gap[0]] <= around.max()


def test_collected_history_round_trips_through_tune(aws: None, tmp_path: Path) -> None:
    import datetime as dt

    import numpy as np

    create_endpoint(boto3.client("sagemaker", region_name=REGION), name="hist-ep")
    cw = boto3.client("cloudwatch", region_name=REGION)
    end = dt.datetime(2026, 11, 20, tzinfo=dt.UTC)
    minutes = 120
    counts = np.random.default_rng(11).integers(300, 3000, size=minutes).astype(float)
    dims = [
        {"Name": "EndpointName", "Value": "hist-ep"},
        {"Name": "VariantName", "Value": "AllTraffic"},
    ]
    start = end - dt.timedelta(minutes=minutes)
    data = [
        {
            "MetricName": name,
            "Dimensions": dims,
            "Value": value,
            "Timestamp": start + dt.timedelta(minutes=m, seconds=20),
        }
        for m, n in enumerate(counts)
        for name, value in (("Invocations", n), ("InvocationsPerInstance", n / 2))
    ]
    cw.put_metric_data(Namespace="AWS/SageMaker", MetricData=data)
    history = tmp_path / "history.csv"
    assert (
        main(
            [
                "collect",
                "--endpoint",
                "hist-ep",
                "--days",
                str(minutes / 1440),
                "--end",
                end.isoformat(),
                "--out",
                str(history),
            ]
        )
        == 0
    )
    grid = tmp_path / "grid.toml"
    grid.write_text(
        "target_fractions = [0.6]\nscale_out_cooldowns_s = [60]\nscale_in_cooldowns_s = [300]\n"
    )
    for spec in (history, history.with_suffix(".toml")):  # the CSV itself, or collect's TOML
        out = tmp_path / f"run-{spec.suffix[1:]}"
        assert (
            main(
                [
                    "tune",
                    "--profile",
                    str(spec),
                    "--grid",
                    str(grid),
                    "--seeds",
                    "1",
                    "--slo-p99-ms",
                    "300",
                    "--max-error-rate",
                    "0.01",
                    "--out",
                    str(out),
                ]
            )
            == 0
        )
        name = json.loads((out / "manifest.json").read_text())["profiles"][0]["name"]
        label = json.loads((out / "recommendation.json").read_text())["label"]
        timeline = pd.read_csv(out / "timelines" / name / f"{label}.csv")
        # Every minute CloudWatch recorded is replayed as recorded.
        assert timeline["invocations"].tolist() == pytest.approx(counts.tolist())


def test_tune_reads_the_current_policy_of_an_endpoint(aws: None, tmp_path: Path) -> None:
    create_endpoint(boto3.client("sagemaker", region_name=REGION), name="shop-ep")
    live = ScalingPolicy(
        min_capacity=2,
        max_capacity=6,
        target_value=450.0,
        scale_in_cooldown_s=600,
        name="shop-scaling",
    )
    resource = Resource.for_variant("shop-ep")
    client = boto3.client("application-autoscaling", region_name=REGION)
    client.register_scalable_target(**live.register_scalable_target_args(resource))
    client.put_scaling_policy(**live.put_scaling_policy_args(resource))
    out = tmp_path / "run"
    assert (
        main(
            [
                "tune",
                "--profile",
                "steady",
                "--seeds",
                "1",
                "--slo-p99-ms",
                "300",
                "--max-error-rate",
                "0.001",
                "--endpoint",
                "shop-ep",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    candidates = pd.read_csv(out / "candidates.csv").set_index("candidate")
    assert candidates.loc[live.label, "is_current"]
    assert candidates.loc[live.label, "role"] in ("current", "recommended")
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["endpoint"] == "shop-ep"
    assert ScalingPolicy.from_dict(manifest["current_policy"]) == live
    # Applying the recommendation replaces the live policy rather than adding a second one.
    assert ScalingPolicy.load(out / "recommended.policy.json").name == "shop-scaling"
    assert (out / "timelines" / "steady" / f"{live.label}.csv").is_file()
    html = (out / "report.html").read_text()
    assert "tuner apply" in html and "--endpoint shop-ep" in html and ">current<" in html


def test_a_current_policy_the_simulator_cannot_model_is_left_out_and_said(
    aws: None, tmp_path: Path
) -> None:
    create_endpoint(boto3.client("sagemaker", region_name=REGION), name="odd-ep")
    custom = ScalingPolicy(
        min_capacity=1,
        max_capacity=4,
        target_value=70.0,
        metric_type=None,
        customized_metric={
            "MetricName": "CPUUtilization",
            "Namespace": "/aws/sagemaker/Endpoints",
            "Statistic": "Average",
        },
        name="cpu",
    )
    resource = Resource.for_variant("odd-ep")
    client = boto3.client("application-autoscaling", region_name=REGION)
    client.register_scalable_target(**custom.register_scalable_target_args(resource))
    client.put_scaling_policy(**custom.put_scaling_policy_args(resource))
    out = tmp_path / "run"
    args = [
        "tune",
        "--profile",
        "steady",
        "--seeds",
        "1",
        "--slo-p99-ms",
        "300",
        "--max-error-rate",
        "0.001",
        "--endpoint",
        "odd-ep",
        "--out",
        str(out),
    ]
    assert main(args) == 0
    candidates = pd.read_csv(out / "candidates.csv")
    assert not candidates["is_current"].any()
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["current_policy"] is None
    assert "CustomizedMetricSpecification" in manifest["current_policy_note"]
    assert "not evaluated: " in (out / "report.md").read_text()


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--margin", "1.5"], "--margin must be in (0, 1], got 1.5"),
        (["--seeds", "0"], "--seeds must be in 1..100, got 0"),
        (["--live"], "--live needs --endpoint"),
        (["--profile", "no-such-profile"], "--profile must be a TOML file, a replay CSV or one of"),
    ],
    ids=["margin", "seeds", "live-without-endpoint", "unknown-profile"],
)
def test_bad_input_exits_2_with_one_line(
    extra: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = [
        "tune",
        "--profile",
        "steady",
        "--slo-p99-ms",
        "300",
        "--max-error-rate",
        "0.01",
        "--out",
        str(tmp_path / "run"),
        *extra,
    ]
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err
    assert not (tmp_path / "run").exists()


def test_out_is_never_overwritten_without_force(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    args = [
        "tune",
        "--profile",
        "steady",
        "--seeds",
        "1",
        "--slo-p99-ms",
        "300",
        "--max-error-rate",
        "0.01",
        "--out",
        str(out),
    ]
    assert main(args) == 2
    assert "--out must be a new or empty folder" in capsys.readouterr().err
    assert main([*args, "--force"]) == 2  # not a run directory: --force refuses too
    assert (out / "notes.txt").read_text() == "mine"


@pytest.fixture
def local_aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[object]:
    from tuner.emulator import EmulatorConfig, LocalAws
    from tuner.model.capacity import Capacity

    capacity = Capacity.from_dict(
        {
            "instance_type": "ml.m5.large",
            "hourly_usd": 0.115,
            "boot_s": 120,
            "max_rps_per_instance": 4.0,
            "timeout_ms": 20000,
            "latency_ms": [{"rps": 1, "p50": 100, "p99": 250}, {"rps": 4, "p50": 150, "p99": 400}],
        }
    )
    with LocalAws(
        EmulatorConfig(speed=60.0, endpoint="live-ep", capacity=capacity, instances=1)
    ) as local:
        for key, value in local.env.items():
            monkeypatch.setenv(key, value)
        yield local


def test_live_tune_trials_the_top_candidate_and_reports_it(
    local_aws: object, tmp_path: Path
) -> None:
    capacity = tmp_path / "capacity.json"
    capacity.write_text(
        json.dumps(
            {
                "instance_type": "ml.m5.large",
                "hourly_usd": 0.115,
                "boot_s": 120,
                "max_rps_per_instance": 4.0,
                "timeout_ms": 20000,
                "latency_ms": [
                    {"rps": 1, "p50": 100, "p99": 250},
                    {"rps": 4, "p50": 150, "p99": 400},
                ],
            }
        )
    )
    profile = tmp_path / "burst.toml"
    profile.write_text(
        'name = "burst"\n[[segment]]\nhold = "2m"\nrps = 2\n[[segment]]\nhold = "5m"\nrps = 8\n'
    )
    grid = tmp_path / "grid.toml"
    grid.write_text(
        "target_fractions = [0.5]\nscale_out_cooldowns_s = [60]\n"
        "scale_in_cooldowns_s = [300]\nmin_capacities = [1]\n"
    )
    out = tmp_path / "run"
    started = time.monotonic()
    assert (
        main(
            [
                "tune",
                "--profile",
                str(profile),
                "--capacity",
                str(capacity),
                "--grid",
                str(grid),
                "--seeds",
                "1",
                "--slo-p99-ms",
                "1000",
                "--max-error-rate",
                "0.05",
                "--endpoint",
                "live-ep",
                "--live",
                "--top",
                "1",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    label = pd.read_csv(out / "candidates.csv").iloc[0]["candidate"]
    trial = out / "trials" / f"{label}__burst"
    assert (trial / "summary.json").is_file() and (trial / "timeline.csv").is_file()
    html = (out / "report.html").read_text()
    assert "Live trials: measured against simulated" in html
    assert f"{label} on burst: measured against simulated" in html
    assert time.monotonic() - started < 120


@pytest.mark.benchmark
def test_bench_tune_speed(tmp_path: Path) -> None:
    """How long `tuner tune` takes, split into simulation and report (printed, never asserted)."""
    from tuner.profiles import load_profile
    from tuner.report.render import write_report
    from tuner.tune import Objective, tune

    objective = Objective(slo_p99_ms=300, max_error_rate=0.001)
    for names in (
        ["steady", "flash-spike"],
        ["steady", "flash-spike", "launch-day", "diurnal-24h"],
    ):
        profiles = [load_profile(PROFILES / f"{n}.toml") for n in names]
        started = time.perf_counter()
        tuning = tune(profiles, objective)
        simulated = time.perf_counter() - started
        policies = tuning.policies
        out = tmp_path / "-".join(names)
        started = time.perf_counter()
        args = ["tune", "--slo-p99-ms", "300", "--max-error-rate", "0.001", "--out", str(out)]
        for n in names:
            args += ["--profile", n]
        assert main(args) == 0
        whole = time.perf_counter() - started
        started = time.perf_counter()
        write_report(out)
        rendered = time.perf_counter() - started
        runs = len(policies) * len(profiles) * 3
        print(
            f"\ntune {'+'.join(names)}: {len(policies)} candidates x {len(profiles)} profiles "
            f"x 3 seeds = {runs} runs: simulate+score {simulated:.2f} s "
            f"({runs / simulated:,.0f} runs/s), report {rendered:.2f} s, "
            f"whole command {whole:.2f} s"
        )
