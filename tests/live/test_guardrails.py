"""Guardrails of the live commands: production tags, caps, dry runs — nothing is touched."""

from __future__ import annotations

from pathlib import Path

import boto3
import pytest

from tests.conftest import REGION, REPO, create_endpoint
from tuner.aws import AutoScaling
from tuner.cli import main
from tuner.policy.policy import ScalingPolicy
from tuner.policy.resource import Resource

STEADY = str(REPO / "locustfiles" / "profiles" / "steady.toml")
ORIGINAL = ScalingPolicy(min_capacity=1, max_capacity=3, target_value=500.0, name="original")


def _setup(tags: list[dict[str, str]] | None = None) -> AutoScaling:
    create_endpoint(boto3.client("sagemaker", region_name=REGION), tags=tags)
    scaling = AutoScaling(boto3.client("application-autoscaling", region_name=REGION))
    scaling.apply(ORIGINAL, Resource.for_variant("my-endpoint"))
    return scaling


@pytest.mark.parametrize(
    ("tag", "command"),
    [("production", "trial"), ("prod", "trial"), ("live", "calibrate")],
    ids=["trial-production", "trial-prod", "calibrate-live"],
)
def test_production_endpoint_is_refused(
    aws: None, tmp_path: Path, tag: str, command: str, capsys: pytest.CaptureFixture[str]
) -> None:
    scaling = _setup([{"Key": "environment", "Value": tag}])
    policy = ScalingPolicy(min_capacity=1, max_capacity=4, target_value=100.0)
    path = policy.save(tmp_path / "p.policy.json")
    argv = {
        "trial": [
            "trial",
            "--endpoint",
            "my-endpoint",
            "--policy",
            str(path),
            "--profile",
            STEADY,
            "--out",
            str(tmp_path / "run"),
        ],
        "calibrate": [
            "calibrate",
            "--endpoint",
            "my-endpoint",
            "--slo-p99-ms",
            "500",
            "--out",
            str(tmp_path / "capacity.json"),
        ],
    }[command]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert f"tagged environment={tag}" in err and "--allow-production" in err
    assert err.count("\n") == 1
    # Nothing changed, and no journal was left behind.
    assert [
        p["PolicyName"] for p in scaling.describe_policies(Resource.for_variant("my-endpoint"))
    ] == ["original"]
    assert not list(tmp_path.rglob("restore-journal.json"))


def test_caps_on_instances_and_rate(
    aws: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _setup()
    big = ScalingPolicy(min_capacity=1, max_capacity=50, target_value=100.0)
    path = big.save(tmp_path / "big.policy.json")
    base = [
        "trial",
        "--endpoint",
        "my-endpoint",
        "--profile",
        STEADY,
        "--out",
        str(tmp_path / "run"),
    ]
    assert main([*base, "--policy", str(path)]) == 2
    assert "MaxCapacity <= --max-instances must hold, got 50 > 20" in capsys.readouterr().err
    small = ScalingPolicy(min_capacity=1, max_capacity=4, target_value=100.0)
    path = small.save(tmp_path / "small.policy.json")
    assert main([*base, "--policy", str(path), "--max-rps", "5"]) == 2
    assert "profile peak rate <= --max-rps must hold, got 20 > 5 rps" in capsys.readouterr().err


def test_dry_run_lists_calls_and_changes_nothing(
    aws: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    scaling = _setup()
    path = ScalingPolicy(min_capacity=1, max_capacity=4, target_value=100.0).save(
        tmp_path / "p.policy.json"
    )
    assert (
        main(
            [
                "trial",
                "--endpoint",
                "my-endpoint",
                "--policy",
                str(path),
                "--profile",
                STEADY,
                "--out",
                str(tmp_path / "run"),
                "--dry-run",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    for call in (
        "DescribeEndpoint",
        "PutScalingPolicy",
        "InvokeEndpoint",
        "GetMetricData",
        "(restore)",
    ):
        assert call in out
    assert main(["calibrate", "--endpoint", "my-endpoint", "--slo-p99-ms", "500", "--dry-run"]) == 0
    assert "UpdateEndpointWeightsAndCapacities" in capsys.readouterr().out
    assert scaling.read_policy(Resource.for_variant("my-endpoint"), "original") == ORIGINAL
    assert not (tmp_path / "run").exists()
