"""tuner trial: validate one policy live against one or more traffic profiles."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from tuner.commands._common import add_aws_options, aws_session, resolve_profile
from tuner.commands._live import add_guardrail_options, confirm, guardrails_from

EPILOG = """\
examples:
  tuner trial --endpoint my-endpoint --policy candidate.policy.json \\
      --profile locustfiles/profiles/flash-spike.toml --out reports/trial-1
  # against the local AWS (speed comes from the emulator's clock):
  AWS_ENDPOINT_URL=http://127.0.0.1:8765 tuner trial --endpoint demo-endpoint ...

A trial snapshots the variant's scaling configuration, applies the candidate alone, sets the
starting instance count and waits for InService, drives the profile with Locust (open loop), polls
DescribeEndpoint, waits for CloudWatch to settle, collects metrics, instance counts, scaling
activities and every request into OUT/trials/<candidate>__<profile>/, and restores the original
configuration and instance count: on success, on error, on Ctrl-C, SIGTERM and SIGHUP. During
the trial the candidate is the only scaling configuration: other policies are removed,
scheduled scaling is suspended, dynamic scaling resumed. One live change at a time per endpoint
(a lock tag on it); the restore journal is never overwritten. After a hard kill, run
`tuner restore OUT` or the same command again (it restores first). Re-running skips finished
trials. It asks before the change (--yes skips; required without a terminal; the local AWS
never asks). Exit status 3: the restore failed; the message gives the `tuner restore` command.
"""

AWS_CALLS = (
    "sagemaker DescribeEndpoint, ListTags (guardrails), UpdateEndpointWeightsAndCapacities "
    "(to the starting instance count)",
    "sagemaker AddTags, ListTags (the endpoint lock)",
    "application-autoscaling DescribeScalableTargets, DescribeScalingPolicies, "
    "DescribeScheduledActions (snapshot)",
    "application-autoscaling RegisterScalableTarget (scheduled scaling suspended), "
    "DeleteScalingPolicy (each other policy), PutScalingPolicy (the candidate)",
    "sagemaker-runtime InvokeEndpoint (the profile's traffic, via Locust)",
    "sagemaker DescribeEndpoint (polled through the run)",
    "application-autoscaling DescribeScalingActivities; cloudwatch GetMetricData",
    "application-autoscaling RegisterScalableTarget, DeleteScalingPolicy, PutScalingPolicy, "
    "DeleteScheduledAction, PutScheduledAction (restore); sagemaker "
    "UpdateEndpointWeightsAndCapacities (back to the original count), DeleteTags (unlock)",
    "cloudwatch DescribeAlarms, PutMetricAlarm, DeleteAlarms (only with step-scaling policies: "
    "their alarms, put with the candidate and deleted or put back on restore)",
)


def register(sub: Any) -> argparse.ArgumentParser:
    p: argparse.ArgumentParser = sub.add_parser(
        "trial",
        help="run a policy live against traffic profiles and collect the evidence",
        description="Apply a candidate policy to a live endpoint, drive a profile at it, collect "
        "CloudWatch metrics, instance counts and every request, then restore the original.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--endpoint", required=True, help="SageMaker endpoint name")
    p.add_argument(
        "--variant", default="AllTraffic", help="production variant (default: AllTraffic)"
    )
    p.add_argument("--policy", required=True, help="candidate policy file (*.policy.json)")
    p.add_argument(
        "--profile",
        required=True,
        action="append",
        help="traffic profile TOML, replay CSV or ready profile name (repeat for several)",
    )
    p.add_argument("--out", required=True, help="run directory (trials/ is written inside)")
    p.add_argument("--workers", type=int, default=0, help="Locust worker processes (default: 0)")
    p.add_argument("--seed", type=int, default=0, help="seed for noise and payload choice")
    add_guardrail_options(p)
    add_aws_options(p)
    parser: argparse.ArgumentParser = p
    return parser


def run(args: argparse.Namespace) -> int:
    from tuner.errors import ValidationError
    from tuner.live.trial import TrialSpec, run_trials
    from tuner.policy.policy import ScalingPolicy

    # Every input checked before any AWS call, in --dry-run too. Each profile file (TOML or
    # replay CSV) is read once here; the trials play the loaded profiles.
    policy = ScalingPolicy.load(args.policy)
    profiles = [resolve_profile(spec)[0] for spec in args.profile]
    guardrails = guardrails_from(args)
    for profile in profiles:
        TrialSpec(
            endpoint=args.endpoint,
            variant=args.variant,
            policy=policy,
            profile=profile,
            workers=args.workers,
            seed=args.seed,
            guardrails=guardrails,
        )
    peak = max(p.peak_rps for p in profiles)
    if peak > guardrails.max_rps:
        raise ValidationError(
            f"profile peak rate <= --max-rps must hold, got {peak:g} > {guardrails.max_rps:g} rps"
        )
    if policy.max_capacity > guardrails.max_instances:
        raise ValidationError(
            f"MaxCapacity <= --max-instances must hold, got {policy.max_capacity} > "
            f"{guardrails.max_instances}"
        )
    if args.dry_run:
        print(
            f"dry run: tuner trial would make these AWS calls for {args.endpoint}/"
            f"{args.variant}, per profile ({len(profiles)}):"
        )
        for line in AWS_CALLS:
            print(f"  {line}")
        return 0
    # Every refusal before the first trial starts: a guardrail stops the whole run, not trial 3.
    from tuner.aws import AutoScaling, Endpoints
    from tuner.live.trial import session_endpoint_url
    from tuner.policy.diff import format_diff
    from tuner.policy.resource import Resource

    session = aws_session(args)
    endpoints = Endpoints(session=session)
    endpoints.describe(args.endpoint).variant(args.variant)
    guardrails.check(endpoints, args.endpoint, policy, peak)
    resource = Resource.for_variant(args.endpoint, args.variant)
    scaling = AutoScaling(session=session)
    others = [
        p["PolicyName"]
        for p in scaling.describe_policies(resource)
        if p["PolicyName"] not in policy.policy_names
    ]
    confirm(
        [
            f"trial on {resource.resource_id}: {len(profiles)} profile(s), peak {peak:g} rps",
            format_diff(scaling.read_like(policy, resource), policy),
            "  removed for the trial, restored after: "
            + (", ".join(others) if others else "no other policy"),
            "  scheduled scaling suspended, dynamic scaling resumed for the trial",
        ],
        yes=args.yes,
        endpoint_url=session_endpoint_url(session),
    )
    folders = run_trials(
        Path(args.out),
        candidates=[policy],
        profiles=profiles,
        endpoint=args.endpoint,
        variant=args.variant,
        session=session,
        guardrails=guardrails,
        workers=args.workers,
        seed=args.seed,
    )
    for folder in folders:
        print(folder)
    return 0
