"""CLI: apply, snapshot, restore, export — output, exit codes, one-line errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import boto3
import pytest

from tests.conftest import REGION, create_endpoint
from tuner.aws import AutoScaling
from tuner.cli import main
from tuner.policy.policy import ScalingPolicy
from tuner.policy.resource import Resource

RESOURCE = Resource.for_variant("my-endpoint")
POLICY = ScalingPolicy(min_capacity=1, max_capacity=8, target_value=300.0, scale_out_cooldown_s=60)


def _write(tmp_path: Path, data: Any, name: str = "p.policy.json") -> Path:
    path = tmp_path / name
    path.write_text(data if isinstance(data, str) else json.dumps(data))
    return path


def test_apply_dry_run_then_apply_and_verify(
    aws: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    create_endpoint(boto3.client("sagemaker", region_name=REGION))
    scaling = AutoScaling(boto3.client("application-autoscaling", region_name=REGION))
    scaling.apply(POLICY.replace(target_value=240.0), RESOURCE)
    path = POLICY.save(tmp_path / "p.policy.json")

    assert main(["apply", str(path), "--endpoint", "my-endpoint", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "TargetValue       240 -> 300" in out
    assert "MinCapacity       1  (unchanged)" in out
    assert "dry run: would call" in out and "PutScalingPolicy" in out
    assert scaling.read_policy(RESOURCE).target_value == 240.0  # type: ignore[union-attr]

    assert main(["apply", str(path), "--endpoint", "my-endpoint", "--yes"]) == 0
    assert "applied and verified" in capsys.readouterr().out
    assert scaling.read_policy(RESOURCE) == POLICY

    assert main(["apply", str(path), "--endpoint", "my-endpoint", "--yes"]) == 0
    assert "nothing to change" in capsys.readouterr().out


def test_snapshot_and_restore_commands(
    aws: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    create_endpoint(boto3.client("sagemaker", region_name=REGION))  # snapshot checks it exists
    scaling = AutoScaling(boto3.client("application-autoscaling", region_name=REGION))
    scaling.apply(POLICY, RESOURCE)
    snap = tmp_path / "snap.json"
    assert main(["snapshot", "--endpoint", "my-endpoint", "--out", str(snap)]) == 0
    assert "Min 1 / Max 8, 1 policies" in capsys.readouterr().out
    scaling.apply(POLICY.replace(target_value=5.0, max_capacity=2), RESOURCE)
    assert main(["restore", str(snap)]) == 0
    assert scaling.read_policy(RESOURCE) == POLICY
    # A run directory with a leftover journal: restored, then the journal is removed.
    journal = tmp_path / "run" / "trials" / "x" / "restore-journal.json"
    journal.parent.mkdir(parents=True)
    journal.write_text(snap.read_text())
    scaling.apply(POLICY.replace(target_value=7.0), RESOURCE)
    assert main(["restore", str(tmp_path / "run")]) == 0
    assert scaling.read_policy(RESOURCE) == POLICY and not journal.exists()


def test_export_command_prints_terraform(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = POLICY.save(tmp_path / "p.policy.json")
    assert main(["export", str(path), "--endpoint", "ep", "--format", "terraform"]) == 0
    assert 'resource "aws_appautoscaling_policy" "ep"' in capsys.readouterr().out


GOOD = POLICY.to_dict()
TT = "TargetTrackingScalingPolicyConfiguration"


def _bad(**tt: Any) -> dict[str, Any]:
    data = json.loads(json.dumps(GOOD))
    data[TT].update(tt)
    return data


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (
            {**GOOD, "ScalableTarget": {"MinCapacity": 5, "MaxCapacity": 2}},
            "MinCapacity <= MaxCapacity must hold, got 5 > 2",
        ),
        (_bad(TargetValue=-1), "TargetValue > 0 must hold, got -1"),
        (_bad(TargetValue=0), "TargetValue > 0 must hold, got 0"),
        (
            _bad(PredefinedMetricSpecification={"PredefinedMetricType": "CPUUtilization"}),
            "PredefinedMetricType must be one of",
        ),
        (_bad(ScaleInCooldown=30.5), "ScaleInCooldown must be an integer, got 30.5"),
        ('{"ScalableTarget": ', "malformed JSON at line 1"),
        (
            {"ScalableTarget": {"MinCapacity": 1}, TT: GOOD[TT]},
            "ScalableTarget.MaxCapacity is required",
        ),
    ],
    ids=[
        "min>max",
        "negative-target",
        "zero-target",
        "unknown-metric",
        "float-cooldown",
        "malformed-json",
        "missing-field",
    ],
)
def test_bad_policy_exits_2_with_one_line(
    aws: None, tmp_path: Path, content: Any, expected: str, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _write(tmp_path, content)
    assert main(["apply", str(path), "--endpoint", "my-endpoint", "--yes"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and expected in err and "Traceback" not in err


def test_missing_endpoint_exits_2_with_one_line(
    aws: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = POLICY.save(tmp_path / "p.policy.json")
    assert main(["apply", str(path), "--endpoint", "does-not-exist"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "does-not-exist" in err and "Could not find endpoint" in err


def test_subprocess_exit_code_and_debug_traceback(
    tmp_path: Path, subprocess_env: dict[str, str]
) -> None:
    path = _write(tmp_path, _bad(TargetValue=-3))
    base = [
        sys.executable,
        "-m",
        "tuner",
        "export",
        str(path),
        "--endpoint",
        "e",
        "--format",
        "aws-cli",
    ]
    plain = subprocess.run(base, capture_output=True, text=True, env=subprocess_env, timeout=60)
    assert plain.returncode == 2
    assert plain.stderr.strip().splitlines() == [
        f"tuner export: error: {path}: TargetTrackingScalingPolicyConfiguration.TargetValue > 0 "
        "must hold, got -3"
    ]
    debug = subprocess.run(
        [*base, "--debug"], capture_output=True, text=True, env=subprocess_env, timeout=60
    )
    assert debug.returncode != 0 and "Traceback" in debug.stderr


def test_usage_error_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["export", "x.json", "--format", "pulumi"])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "invalid choice: 'pulumi'" in err
