"""Guardrails of the live commands: production tags, caps, dry runs — nothing is touched."""

from __future__ import annotations

import os
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


def _exit_status(argv: list[str]) -> int:
    """main's status, or argparse's (a usage error exits 2 from inside parse_args)."""
    try:
        return main(argv)
    except SystemExit as e:
        return int(e.code or 0)


def _policy_names(scaling: AutoScaling) -> list[str]:
    return [p["PolicyName"] for p in scaling.describe_policies(Resource.for_variant("my-endpoint"))]


def _trial_argv(tmp_path: Path, *extra: str) -> list[str]:
    path = ScalingPolicy(min_capacity=1, max_capacity=4, target_value=100.0).save(
        tmp_path / "p.policy.json"
    )
    return [
        "trial",
        "--endpoint",
        "my-endpoint",
        "--policy",
        str(path),
        "--profile",
        STEADY,
        "--out",
        str(tmp_path / "run"),
        *extra,
    ]


@pytest.mark.parametrize(
    ("tags", "shown"),
    [
        ([{"Key": "Env", "Value": "Production"}], "Env=Production"),
        ([{"Key": "STAGE", "Value": " PROD "}], "STAGE= PROD "),
        ([{"Key": "Environment", "Value": "Live"}], "Environment=Live"),
    ],
    ids=["Env-Production", "STAGE-PROD", "Environment-Live"],
)
def test_production_tags_match_in_any_case(
    aws: None,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    tags: list[dict[str, str]],
    shown: str,
) -> None:
    scaling = _setup(tags)
    assert main(_trial_argv(tmp_path, "--yes")) == 2
    err = capsys.readouterr().err
    assert f"tagged {shown}:" in err and "--allow-production" in err
    assert _policy_names(scaling) == ["original"]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--max-rps", "nan"], "argument --max-rps: must be a finite number, got 'nan'"),
        (["--max-rps", "inf"], "argument --max-rps: must be a finite number, got 'inf'"),
        (["--max-instances", "0"], "--max-instances >= 1 must hold, got 0"),
        (["--workers", "-1"], "--workers >= 0 must hold, got -1"),
    ],
    ids=["trial-max-rps-nan", "trial-max-rps-inf", "trial-max-instances-0", "trial-workers"],
)
def test_trial_flags_are_checked_before_any_change(
    aws: None,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    argv: list[str],
    message: str,
) -> None:
    scaling = _setup()
    for dry in ([], ["--dry-run"]):
        assert _exit_status(_trial_argv(tmp_path, "--yes", *argv, *dry)) == 2
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1, err
    assert _policy_names(scaling) == ["original"]
    assert not list(tmp_path.rglob("restore-journal.json"))


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--step-s", "-10"], "--step-s > 0 must hold, got -10"),
        (["--step-s", "inf"], "argument --step-s: must be a finite number, got 'inf'"),
        (["--slo-p99-ms", "nan"], "argument --slo-p99-ms: must be a finite number, got 'nan'"),
        (["--max-rps", "nan"], "argument --max-rps: must be a finite number, got 'nan'"),
    ],
    ids=["step-negative", "step-inf", "slo-nan", "max-rps-nan"],
)
def test_calibrate_flags_are_checked_before_any_change(
    aws: None,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    argv: list[str],
    message: str,
) -> None:
    scaling = _setup()
    base = ["calibrate", "--endpoint", "my-endpoint", "--slo-p99-ms", "500", "--yes"]
    for dry in ([], ["--dry-run"]):
        assert _exit_status([*base, *argv, *dry, "--out", str(tmp_path / "cap.json")]) == 2
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1, err
    assert _policy_names(scaling) == ["original"]
    target = scaling.describe_target(Resource.for_variant("my-endpoint")) or {}
    assert not (target.get("SuspendedState") or {}).get("DynamicScalingInSuspended")
    assert not list(tmp_path.rglob("restore-journal.json"))


def test_a_live_change_without_a_terminal_needs_yes(
    aws: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    scaling = _setup()
    assert main(_trial_argv(tmp_path)) == 2
    captured = capsys.readouterr()
    assert "needs confirmation: pass --yes" in captured.err
    # The diff was shown first: what would change, and what the trial removes for its duration.
    assert "TargetValue" in captured.out and "removed for the trial, restored after: original" in (
        captured.out
    )
    other = ScalingPolicy(min_capacity=1, max_capacity=4, target_value=100.0, name="original")
    path = other.save(tmp_path / "o.policy.json")
    assert main(["apply", str(path), "--endpoint", "my-endpoint"]) == 2
    assert "needs confirmation: pass --yes" in capsys.readouterr().err
    assert main(["calibrate", "--endpoint", "my-endpoint", "--slo-p99-ms", "500"]) == 2
    assert "needs confirmation: pass --yes" in capsys.readouterr().err
    assert scaling.read_policy(Resource.for_variant("my-endpoint"), "original") == ORIGINAL
    assert _policy_names(scaling) == ["original"]


def test_tune_checks_guardrail_flags_before_simulating(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    base = ["tune", "--profile", "steady", "--slo-p99-ms", "300", "--max-error-rate", "0.01"]
    out = tmp_path / "run"
    assert _exit_status([*base, "--out", str(out), "--max-rps", "nan"]) == 2
    assert "--max-rps: must be a finite number" in capsys.readouterr().err
    assert main([*base, "--out", str(out), "--max-instances", "0"]) == 2
    assert "--max-instances >= 1 must hold" in capsys.readouterr().err
    live = ["--live", "--endpoint", "my-endpoint"]
    assert main([*base, "--out", str(out), *live]) == 2  # no terminal, no --yes
    assert "needs confirmation: pass --yes" in capsys.readouterr().err
    assert not out.exists()


def test_tune_force_never_deletes_an_outstanding_journal(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run"
    journal = out / "trials" / "cand__steady" / "restore-journal.json"
    journal.parent.mkdir(parents=True)
    (out / "manifest.json").write_text("{}")
    journal.write_text('{"version": 1}')
    argv = ["tune", "--profile", "steady", "--slo-p99-ms", "300", "--max-error-rate", "0.01"]
    assert main([*argv, "--seeds", "1", "--out", str(out), "--force"]) == 2
    err = capsys.readouterr().err
    assert f"run `tuner restore {out}` first" in err and err.count("\n") == 1
    assert journal.read_text() == '{"version": 1}'


def test_journal_is_written_once(aws: None, tmp_path: Path) -> None:
    from tuner.live.safety import Journal

    scaling = _setup()
    resource = Resource.for_variant("my-endpoint")
    first = Journal(scaling.snapshot(resource), "my-endpoint", "AllTraffic", 1, "token-a")
    path = tmp_path / "restore-journal.json"
    first.save_new(path)
    saved = path.read_text()
    second = Journal(scaling.snapshot(resource), "my-endpoint", "AllTraffic", 4, "token-b")
    with pytest.raises(FileExistsError):
        second.save_new(path)
    assert path.read_text() == saved
    loaded = Journal.load(path)
    assert (loaded.desired_count, loaded.lock_token) == (1, "token-a")
    assert [p["PolicyName"] for p in loaded.snapshot.policies] == ["original"]
    assert list(tmp_path.iterdir()) == [path]  # no temporary file left


def test_lock_holders_stale_and_live(aws: None, tmp_path: Path) -> None:
    import time

    from tuner.aws import Endpoints
    from tuner.live.safety import EndpointLock, LockHeld, LockHolder

    _setup()
    endpoints = Endpoints(boto3.client("sagemaker", region_name=REGION))
    lock = EndpointLock(endpoints, "my-endpoint", "AllTraffic")
    now = time.time()

    def held_by(host: str, expires: float, journal: str) -> None:
        holder = LockHolder("ann", host, 999_999, float(int(expires)), "t0", journal)
        assert LockHolder.parse(holder.to_tag()) == holder
        endpoints.add_tag("my-endpoint", lock.key, holder.to_tag())

    # Another machine, not expired: refused, naming the holder.
    held_by("other-host", now + 600, "/runs/a/restore-journal.json")
    with pytest.raises(LockHeld, match="ann@other-host pid 999999"):
        lock.acquire(tmp_path / "j.json", settle_s=0)
    # Expired, but its journal is on that machine: refused, naming the restore command.
    held_by("other-host", now - 1, "/runs/a/restore-journal.json")
    stale = lock.acquire(tmp_path / "j.json", settle_s=0)
    assert stale is not None and stale.host == "other-host"
    from tuner.live.safety import _outstanding

    with pytest.raises(
        LockHeld, match=r"tuner restore /runs/a/restore-journal.json` on other-host"
    ):
        _outstanding(stale, tmp_path / "j.json", None)
    lock.release()
    assert lock.holder() is None
    # Expired with no journal (an apply): taken over.
    held_by("other-host", now - 1, "none")
    stale = lock.acquire(tmp_path / "j.json", settle_s=0)
    assert stale is not None and _outstanding(stale, tmp_path / "j.json", None) == []
    assert lock.holder() is not None and lock.holder().pid == os.getpid()  # type: ignore[union-attr]
    lock.release()
