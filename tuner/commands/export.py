"""tuner export: a policy file as AWS CLI commands, CloudFormation or Terraform."""

from __future__ import annotations

import argparse
from typing import Any

from tuner.commands._common import add_resource_options, resource_from

EPILOG = """\
examples:
  tuner export recommended.policy.json --endpoint my-endpoint --format aws-cli
  tuner export recommended.policy.json --endpoint my-endpoint --format cloudformation > asg.yaml
  tuner export recommended.policy.json --endpoint my-endpoint --format terraform > asg.tf
"""


def register(sub: Any) -> argparse.ArgumentParser:
    from tuner.policy.export import FORMATS

    p: argparse.ArgumentParser = sub.add_parser(
        "export",
        help="print a policy as AWS CLI commands, CloudFormation or Terraform",
        description="Print what applies the policy file with another tool: the two AWS CLI "
        "commands with --cli-input-json payloads, a CloudFormation template (ScalableTarget + "
        "ScalingPolicy), or Terraform (aws_appautoscaling_target + aws_appautoscaling_policy).",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("policy", metavar="POLICY", help="policy file (*.policy.json)")
    p.add_argument("--format", required=True, choices=FORMATS, help="output format")
    add_resource_options(p)
    return p


def run(args: argparse.Namespace) -> int:
    from tuner.policy.export import export_policy
    from tuner.policy.policy import ScalingPolicy

    policy = ScalingPolicy.load(args.policy)
    print(export_policy(policy, resource_from(args), args.format), end="")
    return 0
