"""tuner snapshot: save a variant's whole scaling state to a JSON file."""

from __future__ import annotations

import argparse
from typing import Any

from tuner.commands._common import add_aws_options, add_resource_options, aws_session, resource_from

EPILOG = """\
example:
  tuner snapshot --endpoint my-endpoint --out my-endpoint.snapshot.json
  ... change things ...
  tuner restore my-endpoint.snapshot.json

The snapshot holds the scalable target (Min/Max, suspended state), every scaling policy and every
scheduled action, exactly as Application Auto Scaling describes them.
"""


def register(sub: Any) -> argparse.ArgumentParser:
    p: argparse.ArgumentParser = sub.add_parser(
        "snapshot",
        help="save the scaling state of an endpoint variant to a file",
        description="Save the scalable target, all scaling policies and scheduled actions of a "
        "variant, so `tuner restore` can put them back exactly.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_resource_options(p)
    p.add_argument("--out", required=True, help="snapshot file to write")
    add_aws_options(p)
    return p


def run(args: argparse.Namespace) -> int:
    from tuner.aws import AutoScaling

    resource = resource_from(args)
    snap = AutoScaling(session=aws_session(args)).snapshot(resource)
    snap.save(args.out)
    if snap.target is None:
        print(f"{resource.resource_id}: no scalable target registered; saved that to {args.out}")
    else:
        print(
            f"{resource.resource_id}: saved target Min {snap.target['MinCapacity']} / Max "
            f"{snap.target['MaxCapacity']}, {len(snap.policies)} policies, "
            f"{len(snap.scheduled_actions)} scheduled actions to {args.out}"
        )
    return 0
