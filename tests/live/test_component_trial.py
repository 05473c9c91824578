"""A live trial on an inference component, interrupted: by an exception and by SIGTERM, while
the candidate (MinCopyCount 0, with the scale-from-zero step policy and its alarm) runs. The
original policy, its copy count, the lock tag on the hosting endpoint and the journal must all be
as before. Real boto3 clients against the local AWS; the load driver stands in for Locust."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from tuner.aws import AutoScaling, AwsSession, Endpoints
from tuner.emulator import EmulatorConfig, LlmServerSpec, LocalAws
from tuner.errors import Terminated, ValidationError
from tuner.live import TrialSpec, run_trial
from tuner.live.llm_calibration import holding_copies
from tuner.live.safety import JOURNAL_NAME, LOCK_TAG_PREFIX
from tuner.live.streaming import LlmLoad
from tuner.policy import Resource
from tuner.profiles import load_profile
from tuner.tune.llm import copy_policy

ENDPOINT = "ic-trial-ep"
IC = "llm"
RESOURCE = Resource.for_component(IC)
ORIGINAL = copy_policy(4.0, 2, 3, name="original")
CANDIDATE = copy_policy(3.0, 0, 2, scale_in_cooldown_s=300, name="candidate")


def _profile(tmp_path: Path) -> Any:
    path = tmp_path / "p.toml"
    path.write_text('name = "p"\n[[segment]]\nhold = "10m"\nrps = 0.5\n')
    return load_profile(path)


@pytest.fixture
def aws() -> Any:
    spec = LlmServerSpec(copy_load_s=20.0, instance_boot_s=20.0, min_instances=0, max_instances=4)
    cfg = EmulatorConfig(
        port=0, speed=60.0, endpoint=ENDPOINT, inference_component=IC, copies=2, llm=spec
    )
    with LocalAws(cfg) as local:
        yield local


def _interrupt(kind: str) -> Any:
    def driver(profile: Any, **kwargs: Any) -> pd.DataFrame:
        assert kwargs["llm"].inference_component == IC
        if kind == "sigterm":
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(5)  # the handler raises before this ends
        raise RuntimeError("load generator crashed")

    return driver


@pytest.mark.parametrize("kind", ["exception", "sigterm"])
def test_interrupted_component_trial_restores_policy_and_copies(
    aws: LocalAws, tmp_path: Path, kind: str
) -> None:
    session = AwsSession(endpoint_url=aws.url, region="us-east-1")
    os.environ.update({k: v for k, v in aws.env.items() if k != "AWS_ENDPOINT_URL"})
    scaling, endpoints = AutoScaling(session=session), Endpoints(session=session)
    scaling.apply(ORIGINAL, RESOURCE)
    before = scaling.snapshot(RESOURCE)
    assert endpoints.describe_component(IC).desired == 2
    seen: dict[str, Any] = {}

    def log(message: str) -> None:
        if message.startswith("setting inference component") and "back" not in message:
            # The candidate is on: its step policy's alarm exists and the lock is on the endpoint.
            seen["policies"] = sorted(p["PolicyName"] for p in scaling.describe_policies(RESOURCE))
            seen["alarms"] = scaling.alarms.acting_on(RESOURCE, ["scale-from-zero"])
            seen["tags"] = endpoints.tags(ENDPOINT)

    spec = TrialSpec(
        endpoint=ENDPOINT,
        policy=CANDIDATE,
        profile=_profile(tmp_path),
        llm=LlmLoad(inference_component=IC),
        lead_real_s=0.1,
        start_capacity=1,
    )
    error = Terminated if kind == "sigterm" else RuntimeError
    with pytest.raises(error):
        run_trial(spec, tmp_path / "run", session, driver=_interrupt(kind), log=log)
    # While it ran: the candidate alone, with its alarm, and the IC's lock tag on the endpoint.
    assert seen["policies"] == ["candidate", "scale-from-zero"]
    assert [a["MetricName"] for a in seen["alarms"]] == ["NoCapacityInvocationFailures"]
    assert f"{LOCK_TAG_PREFIX}inference-component/{IC}" in seen["tags"]
    # After: the original configuration, the copy count, no lock, no journal.
    after = scaling.snapshot(RESOURCE)
    assert after.target is not None and before.target is not None
    assert (after.target["MinCapacity"], after.target["MaxCapacity"]) == (2, 3)
    assert scaling.read_policy(RESOURCE, "original") == ORIGINAL
    assert sorted(p["PolicyName"] for p in scaling.describe_policies(RESOURCE)) == ["original"]
    assert scaling.alarms.acting_on(RESOURCE, ["scale-from-zero"]) == []
    assert endpoints.describe_component(IC).desired == 2
    assert not any(k.startswith(LOCK_TAG_PREFIX) for k in endpoints.tags(ENDPOINT))
    assert not list((tmp_path / "run").rglob(JOURNAL_NAME))


def test_calibration_hold_sets_and_restores_the_copies(aws: LocalAws, tmp_path: Path) -> None:
    session = AwsSession(endpoint_url=aws.url, region="us-east-1")
    scaling, endpoints = AutoScaling(session=session), Endpoints(session=session)
    scaling.apply(ORIGINAL, RESOURCE)
    journal = tmp_path / "cap.restore-journal.json"
    # 5 copies is outside the registered 2..3: refused before anything changes
    refused = r"--copies 5 is outside the copy range 2\.\.3"
    too_many = holding_copies(session, IC, 5, journal, print)
    with pytest.raises(ValidationError, match=refused), too_many:
        raise AssertionError("not reached")
    assert not any(k.startswith(LOCK_TAG_PREFIX) for k in endpoints.tags(ENDPOINT))
    with holding_copies(session, IC, 3, journal, print):
        state = endpoints.describe_component(IC)
        assert (state.current, state.desired) == (3, 3)
        target = scaling.describe_target(RESOURCE)
        assert target is not None and target["SuspendedState"]["DynamicScalingInSuspended"]
        assert journal.exists()
    assert endpoints.describe_component(IC).desired == 2
    target = scaling.describe_target(RESOURCE)
    assert target is not None
    assert not target.get("SuspendedState", {}).get("DynamicScalingInSuspended", False)
    assert not journal.exists()
    assert not any(k.startswith(LOCK_TAG_PREFIX) for k in endpoints.tags(ENDPOINT))


def test_tune_live_with_an_llm_capacity_needs_the_component(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    from tuner.cli import main

    capacity = Path(__file__).parents[2] / "examples" / "llm-capacity.json"
    argv = ["tune", "--profile", "steady", "--capacity", str(capacity)]
    argv += ["--max-error-rate", "0.01", "--live", "--endpoint", "ep", "--out", str(tmp_path)]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--inference-component" in err[0]
