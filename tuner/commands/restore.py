"""tuner restore: put back the scaling state saved by `tuner snapshot` or by a trial."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from tuner.commands._common import add_aws_options, aws_session

EPILOG = """\
examples:
  tuner restore my-endpoint.snapshot.json
  tuner restore reports/run-1/       # every restore journal a trial or calibration left behind

A trial writes its snapshot (a restore journal) before it changes anything and removes it once
the original is back; after a hard kill (kill -9, a lost laptop lid) run `tuner restore` on the
run directory to put the original policy back.
"""

JOURNAL_NAME = "restore-journal.json"


def register(sub: Any) -> argparse.ArgumentParser:
    p: argparse.ArgumentParser = sub.add_parser(
        "restore",
        help="restore a scaling snapshot or a trial's restore journal",
        description="Put a variant's scaling state back exactly as a snapshot holds it.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("path", metavar="SNAPSHOT_OR_DIR", help="snapshot file, or a run directory")
    add_aws_options(p)
    return p


def run(args: argparse.Namespace) -> int:
    from tuner.aws import AutoScaling, ScalingSnapshot
    from tuner.errors import ValidationError

    path = Path(args.path)
    if path.is_dir():
        files = sorted(path.rglob(JOURNAL_NAME))
        if not files:
            print(f"{path}: no restore journal found: nothing to restore")
            return 0
    elif path.is_file():
        files = [path]
    else:
        raise ValidationError(f"{path}: no such file or directory")
    scaling = AutoScaling(session=aws_session(args))
    for file in files:
        snap = ScalingSnapshot.load(file)
        scaling.restore(snap)
        print(
            f"restored {snap.resource.resource_id} as of {snap.taken_at}: "
            f"{len(snap.policies)} policies, {len(snap.scheduled_actions)} scheduled actions"
        )
        if file.name == JOURNAL_NAME:
            file.unlink()
    return 0
