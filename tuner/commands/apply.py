"""tuner apply: put a policy file on a live endpoint, with a diff, a dry run and a read-back."""

from __future__ import annotations

import argparse
import json
from typing import TYPE_CHECKING, Any

from tuner.commands._common import add_aws_options, add_resource_options, aws_session, resource_from

if TYPE_CHECKING:
    from tuner.aws import AwsSession
    from tuner.policy import Resource, ScalingPolicy

EPILOG = """\
examples:
  tuner apply reports/run-1/recommended.policy.json --endpoint my-endpoint --dry-run
  tuner apply my.policy.json --endpoint my-endpoint --variant AllTraffic
  AWS_ENDPOINT_URL=http://127.0.0.1:4566 tuner apply my.policy.json --endpoint demo-endpoint

Prints the live configuration against the file field by field, registers the scalable target,
puts the target-tracking policy, reads both back and checks they equal the file. Take a
`tuner snapshot` first if you may want the old configuration back.
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
    add_aws_options(p)
    return p


def run(args: argparse.Namespace) -> int:
    from tuner.policy import ScalingPolicy

    policy = ScalingPolicy.load(args.policy)
    resource = resource_from(args)
    policy.check_resource(resource)
    apply_policy(policy, resource, aws_session(args), dry_run=args.dry_run)
    return 0


def apply_policy(
    policy: ScalingPolicy, resource: Resource, session: AwsSession, *, dry_run: bool
) -> None:
    """Show the diff against the live configuration, then apply (or, dry, print the calls)."""
    from tuner.aws import AutoScaling, Endpoints
    from tuner.policy import format_diff

    if resource.kind.value == "variant":
        # Fails with EndpointNotFound (exit 2) before anything is changed.
        Endpoints(session=session).describe(resource.endpoint).variant(resource.variant or "")
    scaling = AutoScaling(session=session)
    live = scaling.read_policy(resource, policy.name)
    others = [
        p["PolicyName"]
        for p in scaling.describe_policies(resource)
        if p["PolicyName"] != policy.name
    ]
    print(f"{resource.resource_id}  policy {policy.name}")
    print(format_diff(live, policy))
    if others:
        print(f"  note: other policies on this target stay as they are: {', '.join(others)}")
    if live == policy:
        print("nothing to change: the live configuration already equals the file")
        return
    if dry_run:
        print("dry run: would call")
        for name, payload in (
            ("RegisterScalableTarget", policy.register_scalable_target_args(resource)),
            ("PutScalingPolicy", policy.put_scaling_policy_args(resource)),
        ):
            print(f"  application-autoscaling {name} {json.dumps(payload)}")
        return
    scaling.apply(policy, resource)
    print(f"applied and verified: {resource.resource_id} now runs {policy.label}")
