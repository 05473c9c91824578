"""Tuning an LLM inference component: zero copies chosen only where idle periods pay for them."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pandas as pd
import pytest

from tuner.cli import main
from tuner.errors import ValidationError
from tuner.model.llm_capacity import LlmCapacity
from tuner.model.settings import SimulationSettings
from tuner.policy.policy import ScalingPolicy
from tuner.policy.resource import ResourceKind
from tuner.policy.tracking import MetricType
from tuner.profiles.profile import build_profile
from tuner.report.render import write_report
from tuner.tune import Grid, tune
from tuner.tune.llm import FROM_ZERO, idle_tradeoff, llm_objective
from tuner.tune.run import Run, trial_folder

# a copy that loads in 60 s on an instance already there (instance_boot_s 0), so a cold start
# costs about two minutes of requests: the first failing minute's datapoint, the load, a step
FAST = LlmCapacity(copy_load_s=60, instance_boot_s=0, ttft=LlmCapacity.default().ttft,
                   itl=LlmCapacity.default().itl)  # fmt: skip
SETTINGS = SimulationSettings(seeds=(0,), boot_jitter_s=0.0)
GRID = Grid(target_values=(4.0, 6.0), scale_out_cooldowns_s=(60,), scale_in_cooldowns_s=(900,),
            min_capacities=(1,), max_capacities=(2,))  # fmt: skip
# 6 h idle, then 6 h at 0.2 requests/s: one copy serves it (0.2 rps per copy is 3 in flight)
DAY = build_profile("idle-half-day", [(0, 21600, (0, 0, 0, 0)), (0, 21600, (0.2, 0.2, 0, 0))])


def _tuned(max_error_rate: float):
    objective = llm_objective(
        FAST, max_error_rate=max_error_rate, max_slo_violation=max(max_error_rate, 0.01),
        slo_ttft_p99_ms=1500, slo_itl_p99_ms=100,
    )  # fmt: skip
    return tune([DAY], objective, capacity=FAST, settings=SETTINGS, grid=GRID)


def test_zero_is_chosen_where_the_idle_half_day_pays_within_the_error_budget():
    tuning = _tuned(0.02)
    rec = tuning.recommended
    assert rec.min_capacity == 0 and rec.kind is ResourceKind.INFERENCE_COMPONENT
    assert rec.metric_type is MetricType.CONCURRENT_REQUESTS_PER_COPY
    (step,) = rec.step_policies
    assert (step.name, step.alarm.metric_name, step.alarm.statistic) == (
        FROM_ZERO,
        "NoCapacityInvocationFailures",
        "Sum",
    )
    c = tuning.candidates.set_index("candidate")
    me = c.loc[tuning.recommendation.label]
    twin = c.loc[tuning.recommendation.label.replace("min0", "min1").removesuffix("-s1+1")]
    # 6 h at zero copies (warm start: the opening rate is 0) save half the run of one instance
    assert me["zero_copy_hours"] == pytest.approx(6.0, abs=0.1)
    assert twin["monthly_cost_usd"] - me["monthly_cost_usd"] == pytest.approx(
        12 / 24 * 730 * FAST.hourly_usd, rel=0.02
    )
    # the cold start refuses 0.2 rps x (a minute of failures seen + the next boundary + 60 s)
    assert me["cold_starts"] == 1
    assert 0.2 * 120 <= me["no_capacity_failures"] <= 0.2 * 240
    assert me["error_rate"] <= 0.016  # 0.02 x margin 0.8
    assert any("scales to zero copies" in r for r in tuning.recommendation.reasons)
    table = idle_tradeoff(tuning.candidates)
    assert bool(table.iloc[0]["meets_objective"]) and table.iloc[0]["monthly_saving_usd"] > 300


def test_zero_is_not_chosen_when_the_cold_start_errors_break_the_objective():
    tuning = _tuned(0.001)
    assert tuning.recommended.min_capacity == 1 and not tuning.recommended.step_policies
    assert any("Scaling to zero does not pay here" in r for r in tuning.recommendation.reasons)


def test_profile_token_counts_override_the_capacity_files():
    class Tokens:  # a token trace's profile exposes its means (helper ia's replay)
        def __init__(self, inner, prompt, output):
            self._inner, self.mean_prompt_tokens, self.mean_output_tokens = inner, prompt, output

        def __getattr__(self, name):
            return getattr(self._inner, name)

    short = build_profile("busy", [(0, 3600, (0.6, 0.6, 0, 0))])
    objective = llm_objective(FAST, max_error_rate=0.01, slo_ttft_p99_ms=1500, slo_itl_p99_ms=100)
    kw = dict(capacity=FAST, settings=SETTINGS, grid=GRID)
    long_out = tune([short], objective, **kw).candidates
    brief = tune([Tokens(short, 512, 64)], objective, **kw).candidates
    # four times fewer output tokens: requests last ~4x shorter, so fewer copies in flight
    assert brief["mean_copies"].min() < long_out["mean_copies"].min()


def test_cli_tunes_with_an_llm_capacity_file_and_reports_ttft_and_the_idle_tradeoff(
    tmp_path, capsys
):
    profile = tmp_path / "idle.toml"
    profile.write_text(
        'name = "idle-busy"\n[[segment]]\nhold = "1h"\nrps = 0\n'
        '[[segment]]\nhold = "1h"\nrps = 0.3\n'
    )
    cap = FAST.save(tmp_path / "llm.json")
    grid = tmp_path / "grid.toml"
    grid.write_text(
        "target_values = [4, 6]\nscale_out_cooldowns_s = [60]\nscale_in_cooldowns_s = [900]\n"
    )
    out = tmp_path / "run"
    code = main([
        "tune", "--profile", str(profile), "--capacity", str(cap), "--slo-ttft-p99-ms", "1500",
        "--slo-itl-p99-ms", "100", "--max-error-rate", "0.01", "--seeds", "1", "--grid", str(grid),
        "--out", str(out),
    ])  # fmt: skip
    assert code == 0
    printed = capsys.readouterr().out
    assert "recommended: " in printed and "MinCopyCount" in printed
    run = Run.load(out)
    assert run.manifest["objective"]["slo_ttft_p99_ms"] == 1500
    assert run.manifest["capacity"]["kind"] == "llm"
    policy = json.loads((out / "recommended.policy.json").read_text())
    assert "ConcurrentRequestsPerCopy" in json.dumps(policy)
    timeline = next(iter(run.timelines["idle-busy"].values()))
    assert {"ttft_p99_ms", "itl_p99_ms", "no_capacity_failures"} <= set(timeline.columns)
    md = (out / "report.md").read_text()
    assert "## LLM endpoint: TTFT and ITL per period" in md
    assert "Zero-copy idle periods against cold-start errors" in md
    assert "--inference-component" in md
    html = (out / "report.html").read_text()
    assert 'id="llm"' in html and "TTFT and ITL per period" in html
    candidates = pd.read_csv(out / "candidates.csv")
    assert (candidates["min_capacity"] == 0).any() and "ttft_p99_ms" in candidates
    # a live trial of the recommendation that recorded TTFT/ITL (contract §2 columns): the
    # report puts the measured worst p99 of each window beside the simulated one
    label = run.recommendation.label
    trial = trial_folder(out, label, "idle-busy")
    trial.mkdir(parents=True)
    t = np.arange(0, 7200, 60)
    pd.DataFrame(
        {
            "t_s": t,
            "instances_in_service": 1,
            "desired_capacity": 1,
            "invocations": 18,
            "errors": 0,
            "p99_latency_ms": 900.0,
            "ttft_p99_ms": np.where(t == 3600, 1234.0, 800.0),
            "itl_p99_ms": 77.0,
        }
    ).to_csv(trial / "timeline.csv", index=False)
    (trial / "summary.json").write_text(json.dumps({"candidate": label, "profile": "idle-busy"}))
    write_report(out)
    md = (out / "report.md").read_text()
    header = next(line for line in md.splitlines() if line.startswith("| From |"))
    assert "TTFT p99, measured" in header and "ITL p99, measured" in header
    row = next(line for line in md.splitlines() if line.startswith("| 60 min |"))
    assert "1,234 ms" in row and "77 ms" in row


def test_cli_simulate_an_ic_policy_file(tmp_path, capsys):
    policy = ScalingPolicy(
        min_capacity=1, max_capacity=3, target_value=4,
        metric_type=MetricType.CONCURRENT_REQUESTS_PER_COPY, kind=ResourceKind.INFERENCE_COMPONENT,
    )  # fmt: skip
    path = policy.save(tmp_path / "ic.policy.json")
    out = tmp_path / "sim"
    assert main([
        "simulate", "--profile", "steady", "--policy", str(path), "--capacity",
        str(FAST.save(tmp_path / "llm.json")), "--slo-ttft-p99-ms", "2000", "--out", str(out),
    ]) == 0  # fmt: skip
    summary = json.loads((out / "summary.json").read_text())
    assert summary["slo_ttft_p99_ms"] == 2000
    timeline = pd.read_csv(out / "timeline.csv")
    assert np.diff(timeline["t_s"]).max() == 10
    assert "TTFT p99" in capsys.readouterr().out


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--slo-p99-ms", "500", "--slo-ttft-p99-ms", "900"], "--slo-ttft-p99-ms needs --capacity"),
        ([], "--slo-p99-ms is required"),
        (
            ["--llm", "--live", "--endpoint", "e"],
            "--live with an LLM capacity file needs --endpoint (the endpoint hosting the "
            "inference component) and --inference-component",
        ),
        (["--llm", "--slo-itl-p99-ms", "-1"], "--slo-itl-p99-ms > 0 must hold, got -1"),
    ],
)
def test_cli_bad_llm_input_is_one_line_and_exit_2(tmp_path, capsys, argv, message):
    base = ["tune", "--profile", "steady", "--max-error-rate", "0.01", "--out", str(tmp_path / "o")]
    if "--llm" in argv:
        argv = [a for a in argv if a != "--llm"]
        base += ["--capacity", str(FAST.save(tmp_path / "llm.json"))]
    assert main(base + argv) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "\n" not in err


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--holdout", "auto"], "--holdout is not available with an LLM capacity file (a history"),
        (["--schedule-timezone", "UTC"], "--schedule-timezone is not available with an LLM"),
        (["--stress-level", "3"], "--stress-level is not available with an LLM capacity file"),
        (["--dry-run"], "--dry-run is not available with an LLM capacity file"),
    ],
)
def test_cli_refuses_tune_flags_the_llm_path_does_not_honour(tmp_path, capsys, flags, message):
    argv = ["tune", "--profile", "steady", "--max-error-rate", "0.01", "--out", str(tmp_path / "o")]
    argv += ["--capacity", str(FAST.save(tmp_path / "llm.json"))]
    assert main(argv + flags) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "\n" not in err
    assert not (tmp_path / "o").exists()


def test_max_instances_caps_max_copy_count():
    """Two copies on an instance (copies_per_instance 2): --max-instances 1 caps MaxCopyCount
    at 2, where the grid asked for 5; MinCopyCount levels above the cap come down to it."""
    two = dataclasses.replace(FAST, copies_per_instance=2)
    grid = dataclasses.replace(GRID, min_capacities=(1, 3), max_capacities=(5,))
    objective = llm_objective(two, max_error_rate=0.02, slo_ttft_p99_ms=1500, slo_itl_p99_ms=100)
    free = tune([DAY], objective, capacity=two, settings=SETTINGS, grid=grid)
    capped = tune([DAY], objective, capacity=two, settings=SETTINGS, grid=grid, max_instances=1)
    assert set(free.candidates["max_capacity"]) == {5}
    assert set(capped.candidates["max_capacity"]) == {2}
    assert set(capped.candidates["min_capacity"]) == {0, 1, 2}
    assert capped.recommended.max_capacity == 2
    with pytest.raises(ValidationError, match="--max-instances >= 1 must hold, got 0"):
        tune([DAY], objective, capacity=two, settings=SETTINGS, grid=grid, max_instances=0)


def test_the_current_component_policy_is_weighed_and_names_the_recommendation():
    # Today's guess: one copy always, target 2 in flight per copy, on the same metric. It is
    # simulated beside the grid (flagged as current) and the recommendation takes its name, so
    # `tuner apply` replaces it instead of leaving a second target-tracking policy beside it.
    guess = ScalingPolicy(
        target_value=2.0,
        min_capacity=1,
        max_capacity=2,
        metric_type=MetricType.CONCURRENT_REQUESTS_PER_COPY,
        kind=ResourceKind.INFERENCE_COMPONENT,
        name="todays-guess",
    )
    objective = llm_objective(
        FAST, max_error_rate=0.02, max_slo_violation=0.02, slo_ttft_p99_ms=1500,
        slo_itl_p99_ms=100,
    )  # fmt: skip
    tuning = tune([DAY], objective, capacity=FAST, settings=SETTINGS, grid=GRID, current=guess)
    assert tuning.current == guess
    c = tuning.candidates.set_index("candidate")
    assert bool(c.loc[guess.label, "is_current"])
    assert c["is_current"].sum() == 1
    # always one copy through the 6 idle hours: it costs more than the zero-copy recommendation
    rec = c.loc[tuning.recommendation.label]
    assert c.loc[guess.label, "monthly_cost_usd"] > rec["monthly_cost_usd"]
    assert tuning.recommended.name == "todays-guess"
    assert tuning.recommended.min_capacity == 0
