"""Reading a variant's scaling history through boto3: activities across pages, policies in force
(one changed inside the window), and the alarms target tracking created.

moto has no DescribeScalingActivities, so the control plane here is the local AWS: moto answers
every call but that one, which the emulator's activity log answers (50 per page, newest first,
as AWS). The emulator also creates the two alarms AWS creates for a target-tracking policy, in
its (moto) CloudWatch, with the names AWS gives them.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from tests.conftest import local_client
from tuner.aws.clients import AwsSession
from tuner.aws.history import load_history, read_scaling_history, save_history
from tuner.emulator import EmulatorConfig, LocalAws
from tuner.errors import AwsError, ValidationError
from tuner.model.recording import choices_from_alarms, recording_from, spans_from
from tuner.model.scaling import ModelChoices
from tuner.policy.policy import ScalingPolicy
from tuner.policy.resource import Resource

ENDPOINT = "hist-endpoint"
RESOURCE = Resource.for_variant(ENDPOINT, "AllTraffic")
POLICY = ScalingPolicy(min_capacity=1, max_capacity=6, target_value=100.0, name="hist-tt")


@pytest.fixture(scope="module")
def local() -> Iterator[LocalAws]:
    with LocalAws(EmulatorConfig(endpoint=ENDPOINT)) as aws:
        yield aws


def _put_alarm(
    cw: Any, name: str, n: int, threshold: float, op: str, actions: tuple[str, ...] = ()
) -> None:
    cw.put_metric_alarm(
        AlarmName=name,
        Namespace="AWS/SageMaker",
        MetricName="InvocationsPerInstance",
        Dimensions=[
            {"Name": "EndpointName", "Value": ENDPOINT},
            {"Name": "VariantName", "Value": "AllTraffic"},
        ],
        Statistic="Sum",
        Period=60,
        EvaluationPeriods=n,
        DatapointsToAlarm=n,
        Threshold=threshold,
        ComparisonOperator=op,
        AlarmActions=list(actions),
    )


def test_activities_policies_and_alarms_are_read_and_merged(
    local: LocalAws, tmp_path: Path
) -> None:
    aas, cw = local_client(local, "application-autoscaling"), local_client(local, "cloudwatch")
    aas.register_scalable_target(**POLICY.register_scalable_target_args(RESOURCE))
    aas.put_scaling_policy(**POLICY.put_scaling_policy_args(RESOURCE))
    # 120 activities a minute apart, two hours back; the window holds numbers 20..99
    base = (local.clock.now() // 60) * 60 - 3 * 3600
    log = local.autoscaler.activities
    registered = len(log)
    for i in range(120):
        log.add(
            f"Setting desired instance count to {1 + i % 5}.",
            "monitor alarm ... in state ALARM triggered policy hist-tt",
            base + 60 * i,
            base + 60 * i + 300,
            1 + i % 5,
        )
    prefix = f"TargetTracking-{RESOURCE.resource_id}-"
    created = {
        a["AlarmName"]: a for a in cw.describe_alarms(AlarmNamePrefix=prefix)["MetricAlarms"]
    }
    assert sorted(
        (n.split("-")[-6], a["Threshold"], a["DatapointsToAlarm"]) for n, a in created.items()
    ) == [("AlarmHigh", 100.0, 3), ("AlarmLow", 90.0, 15)]
    # an AlarmHigh shaped unlike the model's default (2 of 2), as another AWS might create it
    high = next(n for n in created if "-AlarmHigh-" in n)
    _put_alarm(cw, high, 2, 100.0, "GreaterThanThreshold", tuple(created[high]["AlarmActions"]))
    _put_alarm(cw, "TargetTracking-endpoint/other/variant/AllTraffic-AlarmHigh-9", 3, 1.0,
               "GreaterThanThreshold")  # fmt: skip
    start = dt.datetime.fromtimestamp(base + 60 * 20, dt.UTC)
    end = dt.datetime.fromtimestamp(base + 60 * 100, dt.UTC)
    session = AwsSession(endpoint_url=local.url, region="us-east-1")

    doc = read_scaling_history(session, RESOURCE, start, end)

    # every page read (120 + the registration's own activity > 2 pages of 50), window kept
    assert len(log) == registered + 120
    starts = [dt.datetime.fromisoformat(a["StartTime"]).timestamp() for a in doc["activities"]]
    assert starts == [base + 60 * i for i in range(20, 100)]
    assert doc["activities"][0]["Description"] == "Setting desired instance count to 1."
    assert doc["activities"][0]["EndTime"].endswith("Z")
    # the newest one before the window: the capacity the window starts with
    before = dt.datetime.fromisoformat(doc["activity_before"]["StartTime"]).timestamp()
    assert before == base + 60 * 19
    assert sorted(a["AlarmName"] for a in doc["alarms"]) == sorted(created)
    choices, notes = choices_from_alarms(doc["alarms"], POLICY, ModelChoices())
    assert choices.high_datapoints == 2 and choices.low_datapoints == 15
    assert len(notes) == 1 and "AlarmHigh" in notes[0]
    path = save_history(doc, tmp_path / "h.scaling.json")

    # the policy changes (CreationTime moves on); a second collection keeps both spans
    time.sleep(1.1)
    changed = POLICY.replace(target_value=250.0)
    aas.put_scaling_policy(**changed.put_scaling_policy_args(RESOURCE))
    save_history(read_scaling_history(session, RESOURCE, start, end), path)
    # a third collection of the same configuration adds no span
    save_history(read_scaling_history(session, RESOURCE, start, end), path)
    merged = load_history(path)
    spans = spans_from(merged)
    assert [s.policies[0].target_value for s in spans] == [100.0, 250.0]
    assert spans[0].from_s < spans[1].from_s
    assert len(merged["activities"]) == 80
    # the changed policy's alarms replaced the old ones (threshold = the new target)
    assert sorted(a["Threshold"] for a in merged["alarms"]) == [225.0, 250.0]


def test_a_backend_without_activities_is_an_error_unless_optional(tmp_path: Path) -> None:
    from moto import mock_aws

    with mock_aws():
        session = AwsSession(region="us-east-1")
        aas = session.client("application-autoscaling")
        aas.register_scalable_target(**POLICY.register_scalable_target_args(RESOURCE))
        aas.put_scaling_policy(**POLICY.put_scaling_policy_args(RESOURCE))
        end = dt.datetime.now(dt.UTC)
        start = end - dt.timedelta(hours=1)
        with pytest.raises(AwsError, match="DescribeScalingActivities"):
            read_scaling_history(session, RESOURCE, start, end)
        doc = read_scaling_history(session, RESOURCE, start, end, require_activities=False)
    assert doc["activities"] == [] and doc["activities_unavailable"]
    assert [p["PolicyName"] for p in doc["policy_spans"][0]["policies"]] == ["hist-tt"]
    history = pd.DataFrame({"timestamp": ["2026-01-01T00:00:00Z", "2026-01-01T00:01:00Z"],
                            "invocations": [1, 2]})  # fmt: skip
    with pytest.raises(ValidationError, match="no scaling activities"):
        recording_from(history, doc, defaults=ModelChoices())
