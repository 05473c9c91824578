"""The control-plane API: moto answers, the emulator adds what moto lacks or gets wrong.

Intercepted operations (by ``X-Amz-Target``):
- application-autoscaling ``DescribeScalingActivities``: from the emulator's activity log;
- ``RegisterScalableTarget``: validated as AWS does (moto accepts Min > Max), then applied at once;
- ``PutScalingPolicy`` (validated), ``DeleteScalingPolicy``, ``DeregisterScalableTarget``: the
  autoscaler re-reads at once;
- sagemaker ``DescribeEndpoint``: status and instance counts from the emulator, not moto's store;
- ``UpdateEndpointWeightsAndCapacities``: DesiredInstanceCount by hand (boots for boot_s);
- a target-tracking ``PutScalingPolicy`` also creates the two CloudWatch alarms AWS creates and
  owns (``TargetTracking-<resource id>-AlarmHigh-<uuid>`` / ``-AlarmLow-``), in the shape the
  autoscaler's model evaluates; ``DeleteScalingPolicy`` deletes them. moto creates none.
"""

from __future__ import annotations

import contextlib
import json
import uuid
from typing import Any

from tuner.clock import VirtualClock
from tuner.emulator.autoscaler import Autoscaler
from tuner.emulator.control import HttpRequest, HttpResponse, MotoPlane
from tuner.errors import TunerError
from tuner.policy.policy import ScalingPolicy

_AAS = "AnyScaleFrontendService."
_SM = "SageMaker."
_REFRESH = {
    _AAS + "PutScalingPolicy",
    _AAS + "DeleteScalingPolicy",
    _AAS + "DeregisterScalableTarget",
    _AAS + "RegisterScalableTarget",
}


def _invalid(message: str) -> HttpResponse:
    return HttpResponse.aws_error(400, "ValidationException", message)


class ControlApi:
    """Answers one control-plane request (called from the server's worker threads)."""

    def __init__(self, plane: MotoPlane, autoscaler: Autoscaler, clock: VirtualClock) -> None:
        self.plane = plane
        self.autoscaler = autoscaler
        self.clock = clock
        self._resource_id = autoscaler.resource.resource_id
        self._endpoint = autoscaler.endpoint.name
        self._variant = autoscaler.endpoint.variant

    def __call__(self, req: HttpRequest) -> HttpResponse:
        target = req.amz_target
        if not target.startswith((_AAS, _SM)):
            return self.plane.forward(req)
        try:
            params: dict[str, Any] = json.loads(req.body or b"{}")
        except ValueError:
            return HttpResponse.aws_error(400, "SerializationException", "malformed JSON body")
        try:
            return self._dispatch(target, params, req)
        except TunerError as e:
            return _invalid(str(e))

    def _dispatch(self, target: str, params: dict[str, Any], req: HttpRequest) -> HttpResponse:
        ours = params.get("ResourceId") == self._resource_id
        if target == _AAS + "DescribeScalingActivities":
            doc = self.autoscaler.activities.describe(params, self.clock.now())
            return HttpResponse.json(200, doc, "application/x-amz-json-1.1")
        if target == _AAS + "RegisterScalableTarget" and ours:
            problem = self._check_registration(params)
            if problem:
                return _invalid(problem)
        if target == _AAS + "PutScalingPolicy" and ours:
            problem = self._check_policy(params)
            if problem:
                return _invalid(problem)
        if target == _SM + "UpdateEndpointWeightsAndCapacities" and (
            params.get("EndpointName") == self._endpoint
        ):
            return self._update_capacity(params, req)
        resp = self.plane.forward(req)
        if resp.status >= 300:
            return resp
        if target in (_AAS + "PutScalingPolicy", _AAS + "DeleteScalingPolicy") and ours:
            # the policy is stored and enforced either way; its alarms are only for reading back
            with contextlib.suppress(TunerError):
                self._replace_alarms(params, resp, create=target.endswith("PutScalingPolicy"))
        if target in _REFRESH and ours:
            self.autoscaler.refresh()
        elif target == _SM + "DescribeEndpoint" and params.get("EndpointName") == self._endpoint:
            resp = self._patch_endpoint(resp)
        return resp

    def _existing_target(self) -> dict[str, Any] | None:
        return self.plane.scalable_target(
            self._resource_id, self.autoscaler.resource.scalable_dimension
        )

    def _check_registration(self, params: dict[str, Any]) -> str | None:
        old = self._existing_target() or {}
        lo = params.get("MinCapacity", old.get("MinCapacity"))
        hi = params.get("MaxCapacity", old.get("MaxCapacity"))
        if lo is None or hi is None:
            return "MinCapacity and MaxCapacity are required when registering a new scalable target"
        if lo < 0 or hi < 0:
            return f"MinCapacity >= 0 and MaxCapacity >= 0 must hold, got {lo} and {hi}"
        if lo > hi:
            return f"Minimum capacity cannot be greater than maximum capacity ({lo} > {hi})"
        return None

    def _check_policy(self, params: dict[str, Any]) -> str | None:
        target = self._existing_target()
        if target is None or params.get("PolicyType") != "TargetTrackingScaling":
            return None  # moto answers: ObjectNotFoundException, or a step policy it stores
        try:
            ScalingPolicy.from_aws(target, params)
        except TunerError as e:
            return str(e)
        return None

    def _replace_alarms(self, params: dict[str, Any], resp: HttpResponse, *, create: bool) -> None:
        """The alarms target tracking owns for this policy: the old ones go, new ones come."""
        prefix = f"TargetTracking-{self._resource_id}-"
        name = params.get("PolicyName")
        listed = self.plane.call("monitoring", "DescribeAlarms", {"AlarmNamePrefix": prefix})
        owned = [
            a["AlarmName"]
            for a in listed.get("MetricAlarms", [])
            if any(str(x).endswith(f":policyName/{name}") for x in a.get("AlarmActions", []))
        ]
        if owned:
            self.plane.call("monitoring", "DeleteAlarms", {"AlarmNames": owned})
        target = self._existing_target()
        if not create or target is None or params.get("PolicyType") != "TargetTrackingScaling":
            return
        policy = ScalingPolicy.from_aws(target, params)
        assert policy.target_value is not None  # from_aws reads a target-tracking policy
        arn = resp.json_body().get("PolicyARN", f"policyName/{name}")
        choices = self.autoscaler.tt.choices
        conc = policy.metric_period_s == 10
        dims = [
            {"Name": "EndpointName", "Value": self._endpoint},
            {"Name": "VariantName", "Value": self._variant},
        ]
        low_n = choices.low_datapoints_high_resolution if conc else choices.low_datapoints
        for kind, n, threshold, op in (
            ("AlarmHigh", choices.high_datapoints, policy.target_value, "GreaterThanThreshold"),
            ("AlarmLow", low_n, policy.target_value * choices.low_ratio, "LessThanThreshold"),
        ):
            self.plane.call(
                "monitoring",
                "PutMetricAlarm",
                {
                    "AlarmName": f"{prefix}{kind}-{uuid.uuid4()}",
                    "AlarmDescription": f"DO NOT EDIT OR DELETE. For TargetTrackingScaling policy "
                    f"{arn}.",
                    "Namespace": "AWS/SageMaker",
                    "MetricName": policy.metric_type.cloudwatch_metric
                    if policy.metric_type
                    else "InvocationsPerInstance",
                    "Dimensions": dims,
                    "Statistic": "Maximum" if conc else "Sum",
                    "Period": policy.metric_period_s,
                    "EvaluationPeriods": n,
                    "DatapointsToAlarm": n,
                    "Threshold": threshold,
                    "ComparisonOperator": op,
                    "AlarmActions": [arn],
                },
            )

    def _update_capacity(self, params: dict[str, Any], req: HttpRequest) -> HttpResponse:
        wanted = [
            w
            for w in params.get("DesiredWeightsAndCapacities") or []
            if w.get("VariantName") == self._variant and "DesiredInstanceCount" in w
        ]
        if wanted:
            n = wanted[0]["DesiredInstanceCount"]
            if not isinstance(n, int) or n < 1:
                return _invalid(f"DesiredInstanceCount >= 1 must hold, got {n!r}")
            self.autoscaler.set_desired_by_hand(n)
        # moto keeps the ARN, weights and its own counts; DescribeEndpoint overrides the counts.
        return self.plane.forward(req)

    def _patch_endpoint(self, resp: HttpResponse) -> HttpResponse:
        doc = resp.json_body()
        view = self.autoscaler.view()
        doc["EndpointStatus"] = view.status
        for v in doc.get("ProductionVariants", []):
            if v.get("VariantName") == self._variant:
                v["CurrentInstanceCount"] = view.current
                v["DesiredInstanceCount"] = view.desired
        return HttpResponse(resp.status, resp.headers, json.dumps(doc).encode())
