"""tuner apply: put a policy file on a live endpoint, with a diff, a dry run and a read-back."""

from __future__ import annotations

import argparse
import json
import os
from typing import TYPE_CHECKING, Any

from tuner.commands._common import add_aws_options, add_resource_options, aws_session, resource_from
from tuner.commands._live import add_confirm_option, confirm

if TYPE_CHECKING:
    from tuner.aws import AwsSession
    from tuner.policy import Resource, ScalingPolicy

EPILOG = """\
examples:
  tuner apply reports/run-1/recommended.policy.json --endpoint my-endpoint --dry-run
  tuner apply my.policy.json --endpoint my-endpoint --variant AllTraffic
  AWS_ENDPOINT_URL=http://127.0.0.1:8765 tuner apply my.policy.json --endpoint demo-endpoint

Prints the live configuration against the file field by field, registers the scalable target,
puts the target-tracking policy and any step policies with their CloudWatch alarms (the
alarm's action is the step policy; a file may hold step policies alone), reads all back and
checks they equal the file. When the file has "ScheduledActions", they become the target's
scheduled actions: live ones it does not name are deleted (the diff lists them), changed ones
replaced, new ones put. Without the key, live scheduled actions stay as they are. Take a
`tuner snapshot` first if you may want the old configuration back.
It asks before changing anything (--yes skips the question; without a terminal --yes is
required; the local AWS never asks) and is refused while a trial or calibration holds the
endpoint's lock.
"""


def register(sub: Any) -> argparse.ArgumentParser:
    p: argparse.ArgumentParser = sub.add_parser(
        "apply",
        help="apply a policy file to an endpoint (diff, dry run, verify)",
        description="Apply a *.policy.json to a SageMaker endpoint variant through Application "
        "Auto Scaling, showing the diff against the live configuration first.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("policy", metavar="POLICY", help="policy file (*.policy.json)")
    add_resource_options(p)
    p.add_argument(
        "--dry-run", action="store_true", help="show the diff and the AWS calls; change nothing"
    )
    add_confirm_option(p)
    add_aws_options(p)
    parser: argparse.ArgumentParser = p
    return parser


def run(args: argparse.Namespace) -> int:
    from tuner.policy import ScalingPolicy

    policy = ScalingPolicy.load(args.policy)
    resource = resource_from(args)
    policy.check_resource(resource)
    apply_policy(policy, resource, aws_session(args), dry_run=args.dry_run, yes=args.yes)
    return 0


def apply_policy(
    policy: ScalingPolicy,
    resource: Resource,
    session: AwsSession,
    *,
    dry_run: bool,
    yes: bool = False,
) -> None:
    """Show the diff against the live configuration, then apply (or, dry, print the calls)."""
    from tuner.aws import AutoScaling, Endpoints
    from tuner.policy import format_diff

    if resource.kind.value == "variant":
        # Fails with EndpointNotFound (exit 2) before anything is changed.
        Endpoints(session=session).describe(resource.endpoint).variant(resource.variant or "")
    scaling = AutoScaling(session=session)
    manage = policy.scheduled_actions is not None
    live = scaling.read_like(policy, resource, with_schedules=manage)
    mine = set(policy.policy_names)
    live_actions = [a["ScheduledActionName"] for a in scaling.describe_scheduled_actions(resource)]
    current = scaling.read_scheduled_actions(resource) if manage else None
    others = [
        p["PolicyName"] for p in scaling.describe_policies(resource) if p["PolicyName"] not in mine
    ]
    print(f"{resource.resource_id}  policy {', '.join(policy.policy_names)}")
    print(format_diff(live, policy, live_actions=current))
    if others:
        print(f"  note: other policies on this target stay as they are: {', '.join(others)}")
    if live_actions and not manage:
        print(
            "  note: the file has no ScheduledActions, so the target's scheduled actions stay: "
            + ", ".join(live_actions)
        )
    if live == policy:
        print("nothing to change: the live configuration already equals the file")
        return
    if dry_run:
        print("dry run: would call")
        calls: list[tuple[str, dict[str, Any]]] = [
            ("RegisterScalableTarget", policy.register_scalable_target_args(resource)),
            *(
                [("PutScalingPolicy", policy.put_scaling_policy_args(resource))]
                if policy.tracks_target
                else []
            ),
            *(
                ("PutScalingPolicy", s.put_scaling_policy_args(resource))
                for s in policy.step_policies
            ),
        ]
        if manage:
            old = {a.name: a for a in current or ()}
            new = {a.name: a for a in policy.scheduled_actions or ()}
            base = {
                "ServiceNamespace": "sagemaker",
                "ResourceId": resource.resource_id,
                "ScalableDimension": resource.scalable_dimension,
            }
            for name in live_actions:
                if name not in new or old.get(name) != new[name]:
                    calls.append(("DeleteScheduledAction", {**base, "ScheduledActionName": name}))
            for name, action in new.items():
                if old.get(name) != action:
                    calls.append(("PutScheduledAction", {**base, **action.to_dict()}))
        for name, payload in calls:
            print(f"  application-autoscaling {name} {json.dumps(payload)}")
        for step in policy.step_policies:
            alarm = step.put_metric_alarm_args(resource, f"<PolicyARN of {step.name}>")
            print(f"  cloudwatch PutMetricAlarm {json.dumps(alarm)}")
        return
    confirm([], yes=yes, endpoint_url=session.endpoint_url or os.environ.get("AWS_ENDPOINT_URL"))
    from tuner.live.safety import EndpointLock, lock_name

    # The lock, held for the change only: no apply in the middle of a trial's restore. An
    # inference component's lock is on the endpoint that hosts it.
    endpoints = Endpoints(session=session)
    host = (
        resource.name
        if resource.kind.value == "variant"
        else endpoints.describe_component(resource.name).endpoint
    )
    lock = EndpointLock(endpoints, host, lock_name(resource))
    lock.acquire(None)
    try:
        scaling.apply(policy, resource)
    finally:
        lock.release()
    print(f"applied and verified: {resource.resource_id} now runs {policy.label}")
