"""`tuner demo --llm --short` end to end, as a user runs it (a subprocess): the local AWS with an
inference component, the streaming calibration holding 1 copy, the tuning with TTFT/ITL
objectives (MinCopyCount-0 candidates among them), a live trial of the top candidate on the
component, the report. The files are parsed back and checked against each other."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd

from tuner.model.llm_capacity import LlmCapacity
from tuner.policy import MetricType, ResourceKind, ScalingPolicy


def test_llm_demo_short_runs_end_to_end(tmp_path: Path) -> None:
    out = tmp_path / "demo"
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    proc = subprocess.run(
        [sys.executable, "-m", "tuner", "demo", "--llm", "--short", "--speed", "60"]
        + ["--seeds", "1", "--out", str(out)],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    # The calibrated capacity file: an LLM copy, its limit near the emulated 8 sequences
    capacity = LlmCapacity.load(out / "llm-capacity.json")
    # within one of the emulated 8 here (the exact-limit checks, with and without injected
    # stalls, are tests/live/test_stream_calibration*.py and test_emulator_llm_calibrate.py)
    assert 7 <= capacity.max_concurrency_per_copy <= 9
    steps = pd.read_csv(out / "llm-capacity-steps.csv")
    assert steps["concurrency"].iloc[0] == 1 and steps["passed"].iloc[0] == 1
    # The tuning considered scale to zero: MinCopyCount-0 candidates carry the from-zero step.
    table = pd.read_csv(out / "candidates.csv").sort_values("rank")
    zero = table[table["min_capacity"] == 0]
    assert len(zero) > 0 and zero["candidate"].str.endswith("-s1+1").all()
    assert (table["min_capacity"] > 0).any()
    recommended = ScalingPolicy.load(out / "recommended.policy.json")
    assert recommended.kind is ResourceKind.INFERENCE_COMPONENT
    assert recommended.metric_type is MetricType.CONCURRENT_REQUESTS_PER_COPY
    assert recommended.label == table["candidate"].iloc[0]
    # The live trial of that candidate: copies polled, TTFT/ITL per period, counts that agree.
    (trial,) = (out / "trials").iterdir()
    assert trial.name.startswith(recommended.label + "__")
    summary = json.loads((trial / "summary.json").read_text())
    timeline = pd.read_csv(trial / "timeline.csv")
    requests = pd.read_csv(trial / "requests.csv")
    assert summary["candidate"] == recommended.label
    assert summary["requests"] == len(requests) == int(timeline["sent"].sum())
    assert summary["failed"] == int(timeline["failed"].sum())
    assert len(timeline) == 16  # 16 minutes, one row per 60-s period
    busy = timeline[timeline["sent"] > 0]
    assert busy["ttft_p99_ms"].notna().all() and busy["itl_p99_ms"].notna().all()
    assert (timeline["instances_in_service"] >= recommended.min_capacity).all()
    assert timeline["instances_in_service"].max() <= recommended.max_capacity
    # measured TTFT is virtual ms: at least the model's prefill of 512 tokens at 2500 tokens/s
    assert busy["ttft_p99_ms"].min() >= 200.0
    assert math.isclose(summary["speed"], 60.0)
    assert not list(out.rglob("*restore-journal*"))
    report = (out / "report.md").read_text()
    assert "TTFT p99, measured" in report and recommended.label in report
    assert "demo finished in" in proc.stdout and recommended.label in proc.stdout
