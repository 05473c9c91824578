"""The Python API under the CLI: `tuner.tune.tune` gives what `tuner tune` writes, and the
README's example runs as written."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from tests.conftest import REPO
from tuner.cli import main
from tuner.model import SimulationSettings
from tuner.profiles import load_profile
from tuner.tune import Objective, Tuning, tune

PROFILES = REPO / "locustfiles" / "profiles"


def test_api_and_cli_agree(tmp_path: Path) -> None:
    profile = load_profile(PROFILES / "flash-spike.toml")
    objective = Objective(slo_p99_ms=300, max_error_rate=0.001)
    tuning = tune([profile], objective, settings=SimulationSettings(seeds=(0,)))
    assert isinstance(tuning, Tuning)
    out = tmp_path / "run"
    argv = ["tune", "--profile", "flash-spike", "--slo-p99-ms", "300"]
    argv += ["--max-error-rate", "0.001", "--seeds", "1", "--out", str(out)]
    assert main(argv) == 0
    written = pd.read_csv(out / "candidates.csv")
    assert list(written["candidate"]) == list(tuning.candidates["candidate"])
    assert written["monthly_cost_usd"].to_numpy() == pytest.approx(
        tuning.candidates["monthly_cost_usd"].to_numpy()
    )
    recommended = json.loads((out / "recommended.policy.json").read_text())
    assert recommended == tuning.recommended.to_dict()
    assert json.loads((out / "recommendation.json").read_text())["label"] == (
        tuning.recommendation.label
    )
    # The ranking is what the recommendation rests on: cheapest first among those that meet it.
    meets = tuning.candidates[tuning.candidates["meets_objective"]]
    assert tuning.recommendation.label == meets.iloc[0]["candidate"]
    assert meets["monthly_cost_usd"].iloc[0] == meets["monthly_cost_usd"].min()


def test_tuning_is_frozen_and_ranks() -> None:
    profile = load_profile(PROFILES / "steady.toml")
    tuning = tune(
        [profile],
        Objective(slo_p99_ms=300, max_error_rate=0.001),
        settings=SimulationSettings(seeds=(0,)),
        timelines_top=3,
    )
    with pytest.raises(AttributeError):
        tuning.recommended = tuning.rule_of_thumb  # type: ignore[misc]
    top = tuning.ranked(3)
    assert [p.label for p in top] == list(tuning.candidates["candidate"][:3])
    assert set(p.label for p in top) <= set(tuning.timelines[profile.name])


def test_readme_python_api_example_runs_as_written(tmp_path: Path) -> None:
    text = (REPO / "README.md").read_text(encoding="utf-8")
    section = text[text.index("### The Python API") :]
    block = re.search(r"```python\n(.*?)```", section, re.S)
    assert block is not None
    (tmp_path / "example.py").write_text(block.group(1), encoding="utf-8")
    (tmp_path / "locustfiles").symlink_to(REPO / "locustfiles")
    done = subprocess.run(
        [sys.executable, "example.py"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"},
    )
    assert done.returncode == 0, done.stderr
    saved = json.loads((tmp_path / "recommended.policy.json").read_text())
    verdict = re.search(r"^t[\d.]+-min(\d+)-max(\d+)\S* (True|False)$", done.stdout, re.M)
    assert verdict is not None, done.stdout
    assert saved["ScalableTarget"]["MinCapacity"] == int(verdict[1])
    assert saved["ScalableTarget"]["MaxCapacity"] == int(verdict[2])
