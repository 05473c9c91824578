"""The backtest's files and report section, parsed back; the section inside a tune report."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd

from tuner.cli import main
from tuner.model.backtest import PolicySpan, RecordedActivity, Recording, backtest
from tuner.model.scaling import ModelChoices
from tuner.policy.policy import ScalingPolicy
from tuner.report.backtest import ROBUSTNESS_CSV, write_backtest
from tuner.report.render import BACKTEST_DIR, write_report

T0 = 1_800_000_000.0
POLICY = ScalingPolicy(min_capacity=1, max_capacity=10, target_value=600.0, name="tt")


def _written(out: Path) -> Path:
    # the reference's worked example recorded with no delay and a 300-s boot (one scale-out)
    rec = Recording(
        start_s=T0,
        invocations=np.array([300.0] * 10 + [2100.0] * 20),
        activities=(RecordedActivity(T0 + 780, T0 + 1080, 4),),
        spans=(PolicySpan(T0, (POLICY,)),),
        initial_capacity=1,
    )
    result = backtest(rec, defaults=ModelChoices(metric_lag_s=60.0, boot_s=300.0))
    write_backtest(out, rec, result)
    return out


def test_files_parse_back_with_the_hand_checked_numbers(tmp_path: Path) -> None:
    out = _written(tmp_path / "bt")
    doc = json.loads((out / "backtest.json").read_text())
    assert doc["fitted"]["boot_s"] == 300.0 and doc["fitted"]["boot_samples"] == 1
    assert doc["fitted"]["metric_lag_s"] == 0.0
    # one matched decision: the delay is not identifiable, and the JSON says so with null
    assert doc["fitted"]["metric_lag_uncertainty_s"] is None
    assert doc["fitted_score"]["agreement"] == 1.0
    # defaults (60-s delay): the decision at 840 s, minute 12 (ends 780) disagrees: 29/30
    assert doc["default_score"]["scale_out_errors_s"] == [60.0]
    assert doc["default_score"]["agreement"] == round(29 / 30, 6)
    minutes = pd.read_csv(out / "backtest.csv")
    assert len(minutes) == 30
    assert minutes["recorded_desired"].tolist() == [1] * 12 + [4] * 18
    assert minutes["default_desired"].tolist() == [1] * 13 + [4] * 17
    md = (out / "backtest.md").read_text()
    assert "| metric delay | 0 s not identifiable (1 decisions) | 60 s |" in md
    assert "| minutes agreeing | 100.0% | 96.7% |" in md
    assert "no AlarmHigh" not in md  # no alarm shape was read: nothing claimed about alarms
    assert (out / "backtest.html").read_text().count("data:image/png;base64,") == 1


def test_tune_report_carries_the_section_and_robustness(tmp_path: Path) -> None:
    run = tmp_path / "run"
    grid = tmp_path / "grid.toml"
    grid.write_text("target_values = [600.0]\nmin_capacities = [1]\nmax_capacities = [4]\n")
    code = main(["tune", "--profile", "steady", "--slo-p99-ms", "500", "--max-error-rate",
                 "0.01", "--seeds", "1", "--grid", str(grid), "--out", str(run)])  # fmt: skip
    assert code == 0
    before = (run / "report.md").read_text()
    assert "Backtest" not in before
    shutil.copytree(_written(tmp_path / "bt"), run / BACKTEST_DIR)
    pd.DataFrame(
        {"boot_s": [290.0, 300.0], "metric_lag_s": [0.0, 0.0], "worst_slo_violation_rate": [0, 0],
         "worst_error_rate": [0, 0], "monthly_cost_usd": [1, 1], "meets_objective": [True, False]}
    ).to_csv(run / BACKTEST_DIR / ROBUSTNESS_CSV, index=False)  # fmt: skip
    write_report(run)
    md, page = (run / "report.md").read_text(), (run / "report.html").read_text()
    assert md.startswith(before.rstrip("\n"))
    assert "## Backtest: the model against the endpoint's own history" in md
    assert "the objective does NOT hold at 1 of 2 combinations" in md
    assert "Robustness:" in page and page.rstrip().endswith("</html>")
