"""Application Auto Scaling for one SageMaker resource: read, apply, snapshot, restore."""

from __future__ import annotations

import datetime as dt
import warnings
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from tuner.aws.alarms import Alarms
from tuner.aws.clients import AwsSession, ClientAdapter, translate_client_error
from tuner.aws.snapshot import ScalingSnapshot, jsonable
from tuner.errors import PolicyError, TargetNotRegistered, TunerError
from tuner.policy.alarm import policy_name_of
from tuner.policy.policy import SERVICE_NAMESPACE, ScalingPolicy
from tuner.policy.resource import Resource
from tuner.policy.schedule import ScheduledScalingAction
from tuner.policy.step import StepScalingPolicy, step_from_aws

# Fields of DescribeScalingPolicies / DescribeScheduledActions entries that AWS computes; they are
# not accepted by the Put* calls and are dropped before a restore.
_POLICY_PUT_KEYS = (
    "PolicyName",
    "PolicyType",
    "StepScalingPolicyConfiguration",
    "TargetTrackingScalingPolicyConfiguration",
    "PredictiveScalingPolicyConfiguration",
)
_SCHEDULED_PUT_KEYS = ("ScheduledActionName", "Schedule", "Timezone", "StartTime", "EndTime")


def _put_fields(action: dict[str, Any]) -> dict[str, Any]:
    """The fields of a scheduled action that PutScheduledAction sets (None ones dropped)."""
    keys = (*_SCHEDULED_PUT_KEYS, "ScalableTargetAction")
    return {k: action[k] for k in keys if action.get(k) is not None}


class AutoScaling(ClientAdapter):
    """Application Auto Scaling calls for SageMaker resources, errors translated."""

    service = "application-autoscaling"

    def __init__(
        self,
        client: Any | None = None,
        *,
        session: AwsSession | None = None,
        alarms: Alarms | None = None,
    ) -> None:
        super().__init__(client, session=session)
        self._alarms = alarms

    @property
    def alarms(self) -> Alarms:
        """CloudWatch, for step policies' alarms (created on first use, from the same session)."""
        if self._alarms is None:
            self._alarms = Alarms(session=self._session)
        return self._alarms

    def _call(self, what: str, fn: Callable[..., Any], **kwargs: Any) -> Any:
        try:
            return fn(**kwargs)
        except (ClientError, BotoCoreError) as e:
            raise translate_client_error(e, what) from e

    def _pages(self, operation: str, key: str, **kwargs: Any) -> Iterator[dict[str, Any]]:
        paginator = self.client.get_paginator(operation)
        try:
            for page in paginator.paginate(ServiceNamespace=SERVICE_NAMESPACE, **kwargs):
                yield from page.get(key, [])
        except (ClientError, BotoCoreError) as e:
            raise translate_client_error(e, operation) from e

    # -- reading -------------------------------------------------------------------------------

    def describe_target(self, resource: Resource) -> dict[str, Any] | None:
        """The registered scalable target, or None."""
        for target in self._pages(
            "describe_scalable_targets",
            "ScalableTargets",
            ResourceIds=[resource.resource_id],
            ScalableDimension=resource.scalable_dimension,
        ):
            if target["ResourceId"] == resource.resource_id:
                return jsonable(target)  # type: ignore[no-any-return]
        return None

    def _of_resource(self, operation: str, key: str, resource: Resource) -> list[dict[str, Any]]:
        """A Describe* listing for one resource (filtered here too: moto ignores some filters)."""
        return [
            jsonable(item)
            for item in self._pages(
                operation,
                key,
                ResourceId=resource.resource_id,
                ScalableDimension=resource.scalable_dimension,
            )
            if item["ResourceId"] == resource.resource_id
        ]

    def describe_policies(self, resource: Resource) -> list[dict[str, Any]]:
        """Every scaling policy of the resource."""
        return self._of_resource("describe_scaling_policies", "ScalingPolicies", resource)

    def describe_scheduled_actions(self, resource: Resource) -> list[dict[str, Any]]:
        return self._of_resource("describe_scheduled_actions", "ScheduledActions", resource)

    def read_scheduled_actions(self, resource: Resource) -> tuple[ScheduledScalingAction, ...]:
        """The target's scheduled actions as policy-file entries (PolicyError if one is not
        an expression tuner reads)."""
        return tuple(
            ScheduledScalingAction.from_aws(a) for a in self.describe_scheduled_actions(resource)
        )

    def read_policy(
        self,
        resource: Resource,
        name: str | None = None,
        *,
        steps: Iterable[str] = (),
        with_schedules: bool = False,
        tracking: bool = True,
    ) -> ScalingPolicy | None:
        """The live target-tracking policy (by name, else the first one), or None.

        ``steps`` names step policies to read with it, each with the alarm acting on it (one
        without an alarm is left out: it could never act). ``tracking=False``: the step policies
        alone, as a step-only policy (None when none of them is there). ``with_schedules``: with
        the target's scheduled actions (else ScheduledActions is None).
        """
        target = self.describe_target(resource)
        if target is None:
            return None
        live = self.describe_policies(resource)
        found = self._read_steps(resource, live, list(steps))
        if not tracking:
            if not found:
                return None
            policy = ScalingPolicy(
                min_capacity=target["MinCapacity"],
                max_capacity=target["MaxCapacity"],
                kind=resource.kind,
                step_policies=found,
            )
        else:
            mine = [
                p
                for p in live
                if p.get("PolicyType") == "TargetTrackingScaling"
                and (name is None or p["PolicyName"] == name)
            ]
            if not mine:
                return None
            first = sorted(mine, key=lambda p: p["PolicyName"])[0]
            policy = ScalingPolicy.from_aws(target, first).replace(step_policies=found)
        if with_schedules:
            policy = policy.replace(scheduled_actions=self.read_scheduled_actions(resource))
        return policy

    def read_current(self, resource: Resource) -> ScalingPolicy | None:
        """Everything scaling the target now, as one policy to evaluate: its target tracking (the
        first by name) with every step policy an alarm acts on; the step policies alone when it
        has no target tracking; None when it has neither."""
        steps = [
            p["PolicyName"]
            for p in self.describe_policies(resource)
            if p.get("PolicyType") == "StepScaling"
        ]
        policy = self.read_policy(resource, steps=steps)
        if policy is None and steps:
            policy = self.read_policy(resource, steps=steps, tracking=False)
        return policy

    def read_like(
        self, policy: ScalingPolicy, resource: Resource, *, with_schedules: bool = False
    ) -> ScalingPolicy | None:
        """The live counterpart of ``policy``: its target tracking (if it has one, by name) and
        its step policies (by name), to compare with it."""
        return self.read_policy(
            resource,
            policy.name if policy.tracks_target else None,
            steps=[s.name for s in policy.step_policies],
            with_schedules=with_schedules,
            tracking=policy.tracks_target,
        )

    def _read_steps(
        self, resource: Resource, live: list[dict[str, Any]], steps: list[str]
    ) -> tuple[StepScalingPolicy, ...]:
        """The named live step policies, in ``steps`` order, each with the alarm acting on it."""
        wanted = [
            p for p in live if p.get("PolicyType") == "StepScaling" and p["PolicyName"] in steps
        ]
        if not wanted:
            return ()
        by_policy: dict[str, dict[str, Any]] = {}
        for alarm in self.alarms.acting_on(resource, [p["PolicyName"] for p in wanted]):
            for action in alarm.get("AlarmActions", []):
                by_policy.setdefault(policy_name_of(action) or "", alarm)
        return tuple(
            step_from_aws(p, by_policy[p["PolicyName"]])
            for p in sorted(wanted, key=lambda p: steps.index(p["PolicyName"]))
            if p["PolicyName"] in by_policy
        )

    def describe_activities(self, resource: Resource) -> list[dict[str, Any]]:
        """Scaling activities, newest first; [] with a warning where the backend lacks the call."""
        try:
            return [
                jsonable(a)
                for a in self._pages(
                    "describe_scaling_activities",
                    "ScalingActivities",
                    ResourceId=resource.resource_id,
                    ScalableDimension=resource.scalable_dimension,
                )
            ]
        except (TunerError, NotImplementedError) as e:
            # moto lacks the call (500 over HTTP, NotImplementedError in-process); activities
            # are informative, never required.
            warnings.warn(f"scaling activities unavailable: {e}", RuntimeWarning, stacklevel=2)
            return []

    # -- writing -------------------------------------------------------------------------------

    def apply(self, policy: ScalingPolicy, resource: Resource) -> ScalingPolicy:
        """Register the target, put the policy, read it back and check it is what was asked.

        When the policy carries ScheduledActions they become the target's scheduled actions:
        live ones the file does not name are deleted, changed ones replaced, new ones put.
        """
        self._call(
            "RegisterScalableTarget",
            self.client.register_scalable_target,
            **policy.register_scalable_target_args(resource),
        )
        self._put_policies(policy, resource)
        manage = policy.scheduled_actions is not None
        if manage:
            self._put_scheduled_actions(policy, resource)
        live = self.read_like(policy, resource, with_schedules=manage)
        if live != policy:
            raise PolicyError(
                f"read-back of {resource.resource_id} differs from what was applied: "
                f"{live.to_dict() if live else None} != {policy.to_dict()}"
            )
        return live

    def _put_scheduled_actions(self, policy: ScalingPolicy, resource: Resource) -> None:
        wanted = {a.name: a for a in policy.scheduled_actions or ()}
        for entry in self.describe_scheduled_actions(resource):
            name = entry["ScheduledActionName"]
            try:
                same = ScheduledScalingAction.from_aws(entry) == wanted.get(name)
            except PolicyError:
                same = False
            if name not in wanted or not same:
                # Replaced by delete + put: a put over an existing action keeps fields it does
                # not name on moto (Timezone), so the result would not equal the file.
                self.delete_scheduled_action(resource, name)
            else:
                wanted.pop(name)
        for args in policy.put_scheduled_action_args(resource):
            if args["ScheduledActionName"] in wanted:
                self._call("PutScheduledAction", self.client.put_scheduled_action, **args)

    def delete_scheduled_action(self, resource: Resource, name: str) -> None:
        self._call(
            "DeleteScheduledAction",
            self.client.delete_scheduled_action,
            ScheduledActionName=name,
            ServiceNamespace=SERVICE_NAMESPACE,
            ResourceId=resource.resource_id,
            ScalableDimension=resource.scalable_dimension,
        )

    def apply_alone(self, policy: ScalingPolicy, resource: Resource) -> ScalingPolicy:
        """Make ``policy`` the target's only scaling configuration (a trial's isolation).

        Its range is registered with dynamic scaling resumed and scheduled scaling suspended
        (scheduled actions stay stored but do not fire [DOC: SuspendedState]); every other
        policy is deleted (the caller has journaled them), with the alarms of step policies; the
        candidate and its own step policies (with their alarms) are put and read back.
        """
        args = policy.register_scalable_target_args(resource)
        args["SuspendedState"] = {
            "DynamicScalingInSuspended": False,
            "DynamicScalingOutSuspended": False,
            "ScheduledScalingSuspended": True,
        }
        self._call("RegisterScalableTarget", self.client.register_scalable_target, **args)
        live_policies = self.describe_policies(resource)
        self._delete_step_alarms(resource, live_policies)
        keep = policy.name if policy.tracks_target else None
        for live in live_policies:
            if live["PolicyName"] != keep:
                self.delete_policy(resource, live["PolicyName"])
        self._put_policies(policy, resource)
        # Scheduled actions stay stored but suspended: a candidate's own are not trialled.
        live_policy = self.read_like(policy, resource)
        wanted = policy.replace(scheduled_actions=None)
        names = sorted(p["PolicyName"] for p in self.describe_policies(resource))
        if live_policy != wanted or names != sorted(policy.policy_names):
            raise PolicyError(
                f"read-back of {resource.resource_id} is not the candidate alone: policies "
                f"{names}, {live_policy.to_dict() if live_policy else None} != {wanted.to_dict()}"
            )
        return live_policy

    def delete_policy(self, resource: Resource, name: str) -> None:
        self._call(
            "DeleteScalingPolicy",
            self.client.delete_scaling_policy,
            PolicyName=name,
            ServiceNamespace=SERVICE_NAMESPACE,
            ResourceId=resource.resource_id,
            ScalableDimension=resource.scalable_dimension,
        )

    def set_suspended(self, resource: Resource, *, scale_in: bool, scale_out: bool) -> None:
        """Suspend or resume dynamic scaling on a registered target (calibration holds capacity)."""
        target = self.describe_target(resource)
        if target is None:
            raise TargetNotRegistered(f"{resource.resource_id} has no scalable target registered")
        self._call(
            "RegisterScalableTarget",
            self.client.register_scalable_target,
            ServiceNamespace=SERVICE_NAMESPACE,
            ResourceId=resource.resource_id,
            ScalableDimension=resource.scalable_dimension,
            SuspendedState={
                "DynamicScalingInSuspended": scale_in,
                "DynamicScalingOutSuspended": scale_out,
                "ScheduledScalingSuspended": bool(
                    (target.get("SuspendedState") or {}).get("ScheduledScalingSuspended", False)
                ),
            },
        )

    # -- snapshot and restore ------------------------------------------------------------------

    def snapshot(self, resource: Resource) -> ScalingSnapshot:
        target = self.describe_target(resource)
        if target is None:
            return ScalingSnapshot(resource=resource, target=None)
        policies = tuple(self.describe_policies(resource))
        steps = [p["PolicyName"] for p in policies if p.get("PolicyType") == "StepScaling"]
        return ScalingSnapshot(
            resource=resource,
            target=target,
            policies=policies,
            scheduled_actions=tuple(self.describe_scheduled_actions(resource)),
            alarms=tuple(self.alarms.acting_on(resource, steps)) if steps else (),
        )

    def restore(self, snap: ScalingSnapshot) -> None:
        """Put the resource's scaling state back exactly as the snapshot holds it."""
        resource = snap.resource
        base = {
            "ServiceNamespace": SERVICE_NAMESPACE,
            "ResourceId": resource.resource_id,
            "ScalableDimension": resource.scalable_dimension,
        }
        if snap.target is None:
            if self.describe_target(resource) is not None:
                # AWS deletes a target's policies and actions with it [DOC]; moto does not, so
                # delete them first: the same end state on both.
                self._delete_all(resource, base)
                self._call(
                    "DeregisterScalableTarget",
                    self.client.deregister_scalable_target,
                    **base,
                )
            return
        register = dict(base, MinCapacity=snap.target["MinCapacity"])
        register["MaxCapacity"] = snap.target["MaxCapacity"]
        # Always sent: a calibration suspends dynamic scaling, and a snapshot taken before it
        # may carry no SuspendedState at all (meaning: nothing suspended).
        # All three keys: a key left out keeps its current value [DOC], and a trial suspends
        # scheduled scaling that the snapshot (moto echoes only the keys set) may not mention.
        suspended = snap.target.get("SuspendedState") or {}
        register["SuspendedState"] = {
            key: bool(suspended.get(key, False))
            for key in (
                "DynamicScalingInSuspended",
                "DynamicScalingOutSuspended",
                "ScheduledScalingSuspended",
            )
        }
        self._call("RegisterScalableTarget", self.client.register_scalable_target, **register)
        wanted = {p["PolicyName"] for p in snap.policies}
        live_policies = self.describe_policies(resource)
        self._delete_step_alarms(
            resource, live_policies, keep={a["AlarmName"] for a in snap.alarms}
        )
        for live in live_policies:
            if live["PolicyName"] not in wanted:
                self.delete_policy(resource, live["PolicyName"])
        arns: dict[str, str] = {}
        for p in snap.policies:
            # Only configuration goes back: Alarms, PolicyARN and CreationTime are AWS's state.
            args = {k: p[k] for k in _POLICY_PUT_KEYS if k in p}
            put = self._call("PutScalingPolicy", self.client.put_scaling_policy, **base, **args)
            arns[p["PolicyName"]] = put["PolicyARN"]
        for alarm in snap.alarms:
            # a step policy put again may have a new ARN: point the alarm's actions at it
            actions = [arns.get(policy_name_of(a) or "", a) for a in alarm.get("AlarmActions", [])]
            self.alarms.put({**alarm, "AlarmActions": actions})
        wanted_actions = {a["ScheduledActionName"]: _put_fields(a) for a in snap.scheduled_actions}
        for live in self.describe_scheduled_actions(resource):
            name = live["ScheduledActionName"]
            # A changed action is deleted before it is put back: a put over an existing action
            # keeps fields it does not name on moto (Timezone), so the result would differ.
            if wanted_actions.get(name) != _put_fields(live):
                self._call(
                    "DeleteScheduledAction",
                    self.client.delete_scheduled_action,
                    ScheduledActionName=live["ScheduledActionName"],
                    **base,
                )
        for a in snap.scheduled_actions:
            args = {k: a[k] for k in _SCHEDULED_PUT_KEYS if a.get(k) is not None}
            for key in ("StartTime", "EndTime"):
                if key in args:
                    args[key] = dt.datetime.fromisoformat(args[key])
            if a.get("ScalableTargetAction"):
                args["ScalableTargetAction"] = a["ScalableTargetAction"]
            self._call("PutScheduledAction", self.client.put_scheduled_action, **base, **args)

    def _put_policies(self, policy: ScalingPolicy, resource: Resource) -> None:
        """Put the target-tracking policy (if any), then each step policy and its alarm."""
        if policy.tracks_target:
            self._call(
                "PutScalingPolicy",
                self.client.put_scaling_policy,
                **policy.put_scaling_policy_args(resource),
            )
        for step in policy.step_policies:
            # the policy first: the alarm's action is its ARN (user guide, step scaling)
            put = self._call(
                "PutScalingPolicy",
                self.client.put_scaling_policy,
                **step.put_scaling_policy_args(resource),
            )
            self.alarms.put(step.put_metric_alarm_args(resource, put["PolicyARN"]))

    def _delete_step_alarms(
        self,
        resource: Resource,
        live: list[dict[str, Any]],
        *,
        keep: frozenset[str] | set[str] = frozenset(),
    ) -> None:
        """Delete the alarms acting on the resource's step policies (but those in ``keep``)."""
        steps = [p["PolicyName"] for p in live if p.get("PolicyType") == "StepScaling"]
        if steps:
            names = [a["AlarmName"] for a in self.alarms.acting_on(resource, steps)]
            self.alarms.delete(n for n in names if n not in keep)

    def _delete_all(self, resource: Resource, base: dict[str, str]) -> None:
        live = self.describe_policies(resource)
        self._delete_step_alarms(resource, live)
        for live_policy in live:
            self.delete_policy(resource, live_policy["PolicyName"])
        for action in self.describe_scheduled_actions(resource):
            self._call(
                "DeleteScheduledAction",
                self.client.delete_scheduled_action,
                ScheduledActionName=action["ScheduledActionName"],
                **base,
            )
