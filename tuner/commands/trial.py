"""tuner trial: validate one policy live against one or more traffic profiles."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from tuner.commands._common import add_aws_options, aws_session
from tuner.commands._live import add_guardrail_options, guardrails_from

EPILOG = """\
examples:
  tuner trial --endpoint my-endpoint --policy candidate.policy.json \\
      --profile locustfiles/profiles/flash-spike.toml --out reports/trial-1
  # against the local AWS (speed comes from the emulator's clock):
  AWS_ENDPOINT_URL=http://127.0.0.1:4566 tuner trial --endpoint demo-endpoint ...

A trial snapshots the variant's scaling configuration, sets it to the policy's MinCapacity and
waits for InService, applies the policy, drives the profile with Locust (open loop), polls
DescribeEndpoint, waits for CloudWatch to settle, collects metrics, instance counts, scaling
activities and every request into OUT/trials/<candidate>__<profile>/, and restores the original
configuration: on success, on error, on Ctrl-C and on SIGTERM. After a hard kill, run
`tuner restore OUT`. Re-running skips finished trials.
"""

AWS_CALLS = (
    "sagemaker DescribeEndpoint, ListTags (guardrails), UpdateEndpointWeightsAndCapacities "
    "(to the starting instance count)",
    "application-autoscaling DescribeScalableTargets, DescribeScalingPolicies, "
    "DescribeScheduledActions (snapshot)",
    "application-autoscaling RegisterScalableTarget, PutScalingPolicy (the candidate)",
    "sagemaker-runtime InvokeEndpoint (the profile's traffic, via Locust)",
    "sagemaker DescribeEndpoint (polled through the run)",
    "application-autoscaling DescribeScalingActivities; cloudwatch GetMetricData",
    "application-autoscaling RegisterScalableTarget, DeleteScalingPolicy, PutScalingPolicy, "
    "DeleteScheduledAction, PutScheduledAction (restore)",
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
        help="traffic profile TOML (repeat for several)",
    )
    p.add_argument("--out", required=True, help="run directory (trials/ is written inside)")
    p.add_argument("--workers", type=int, default=0, help="Locust worker processes (default: 0)")
    p.add_argument("--seed", type=int, default=0, help="seed for noise and payload choice")
    add_guardrail_options(p)
    add_aws_options(p)
    return p


def run(args: argparse.Namespace) -> int:
    from tuner.live.trial import run_trials
    from tuner.policy.policy import ScalingPolicy
    from tuner.profiles.profile import load_profile

    policy = ScalingPolicy.load(args.policy)
    profiles = [Path(p) for p in args.profile]
    loaded = [load_profile(path) for path in profiles]  # every input checked before any call
    guardrails = guardrails_from(args)
    if args.dry_run:
        print(
            f"dry run: tuner trial would make these AWS calls for {args.endpoint}/"
            f"{args.variant}, per profile ({len(profiles)}):"
        )
        for line in AWS_CALLS:
            print(f"  {line}")
        return 0
    # Every refusal before the first trial starts: a guardrail stops the whole run, not trial 3.
    from tuner.aws import Endpoints

    session = aws_session(args)
    endpoints = Endpoints(session=session)
    endpoints.describe(args.endpoint).variant(args.variant)
    peak = max(p.peak_rps for p in loaded)
    guardrails.check(endpoints, args.endpoint, policy, peak)
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
