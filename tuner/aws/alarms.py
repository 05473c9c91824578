"""CloudWatch alarms of step-scaling policies: put, find by the policy they act on, delete.

A step policy does nothing without a CloudWatch alarm whose action is the policy's ARN
(Application Auto Scaling user guide, "Step scaling policies": the user creates the alarm).
Target tracking's alarms are AWS's own and never touched here.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from tuner.aws.clients import ClientAdapter, translate_client_error
from tuner.policy.alarm import policy_arn_tail
from tuner.policy.resource import Resource

# put-metric-alarm's own fields, the ones a snapshot keeps to put an alarm back
_ALARM_PUT_KEYS = (
    "AlarmName",
    "AlarmDescription",
    "ActionsEnabled",
    "OKActions",
    "AlarmActions",
    "InsufficientDataActions",
    "MetricName",
    "Namespace",
    "Statistic",
    "ExtendedStatistic",
    "Dimensions",
    "Period",
    "Unit",
    "EvaluationPeriods",
    "DatapointsToAlarm",
    "Threshold",
    "ComparisonOperator",
    "TreatMissingData",
)


def alarm_put_args(described: dict[str, Any]) -> dict[str, Any]:
    """The put-metric-alarm arguments of a DescribeAlarms entry (AWS's state dropped)."""
    return {k: described[k] for k in _ALARM_PUT_KEYS if k in described}


class Alarms(ClientAdapter):
    """CloudWatch metric alarms, errors translated."""

    service = "cloudwatch"

    def _call(self, what: str, fn: Callable[..., Any], **kwargs: Any) -> Any:
        try:
            return fn(**kwargs)
        except (ClientError, BotoCoreError) as e:
            raise translate_client_error(e, what) from e

    def put(self, args: dict[str, Any]) -> None:
        self._call("PutMetricAlarm", self.client.put_metric_alarm, **args)

    def acting_on(self, resource: Resource, policy_names: Iterable[str]) -> list[dict[str, Any]]:
        """Every metric alarm whose actions name a policy of ``resource`` in ``policy_names``.

        Matched by the ARN's ``resource/sagemaker/<id>:policyName/<name>`` tail: the policy id
        inside the ARN changes when a policy is deleted and put again (moto: on every put).
        """
        tails = {policy_arn_tail(resource, n) for n in policy_names}
        if not tails:
            return []
        out: list[dict[str, Any]] = []
        try:
            for page in self.client.get_paginator("describe_alarms").paginate(
                AlarmTypes=["MetricAlarm"]
            ):
                for alarm in page.get("MetricAlarms", []):
                    if any(a.endswith(t) for a in alarm.get("AlarmActions", []) for t in tails):
                        out.append(alarm_put_args(alarm))
        except (ClientError, BotoCoreError) as e:
            raise translate_client_error(e, "DescribeAlarms") from e
        return sorted(out, key=lambda a: str(a["AlarmName"]))

    def delete(self, names: Iterable[str]) -> None:
        names = sorted(set(names))
        for i in range(0, len(names), 100):  # DeleteAlarms takes at most 100 names
            self._call("DeleteAlarms", self.client.delete_alarms, AlarmNames=names[i : i + 100])
