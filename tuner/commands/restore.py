"""tuner restore: put back the scaling state saved by `tuner snapshot` or by a trial."""

from __future__ import annotations

import argparse
from functools import partial
from pathlib import Path
from typing import Any

from tuner.commands._common import add_aws_options, aws_session

EPILOG = """\
examples:
  tuner restore my-endpoint.snapshot.json
  tuner restore reports/run-1/       # every restore journal a trial or calibration left behind
  tuner restore --release-lock --endpoint my-endpoint   # drop a dead run's lock, after checking

A trial, calibration or apply writes a restore journal (the scaling configuration and the
instance count) before it changes anything and removes it once the original is back; after a
hard kill (kill -9, a lost laptop lid) run `tuner restore` on the run directory or the journal:
it puts back the configuration, then the instance count (within the original Min/Max), retrying
with backoff, and releases the endpoint's lock. It refuses (exit 2) while the run that wrote the
journal still runs. Exit status 3: the restore failed and the endpoint may not be as it was.
"""


def register(sub: Any) -> argparse.ArgumentParser:
    p: argparse.ArgumentParser = sub.add_parser(
        "restore",
        help="restore a scaling snapshot or a trial's restore journal",
        description="Put a variant's scaling state back exactly as a snapshot holds it.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "path", metavar="SNAPSHOT_OR_DIR", nargs="?", help="snapshot file, or a run directory"
    )
    p.add_argument(
        "--release-lock",
        action="store_true",
        help="remove the endpoint's tuner lock tag left by a run that cannot finish "
        "(needs --endpoint)",
    )
    p.add_argument("--endpoint", help="endpoint whose lock --release-lock removes")
    p.add_argument(
        "--variant", default="AllTraffic", help="production variant (default: AllTraffic)"
    )
    add_aws_options(p)
    parser: argparse.ArgumentParser = p
    return parser


def run(args: argparse.Namespace) -> int:
    from tuner.aws import AutoScaling, Endpoints, ScalingSnapshot
    from tuner.errors import TunerError, ValidationError
    from tuner.live.safety import (
        JOURNAL_NAME,
        EndpointLock,
        Journal,
        RestoreFailed,
        log_stderr,
        restore_file,
        with_retries,
    )

    session = aws_session(args)
    if args.release_lock:
        if not args.endpoint:
            raise ValidationError("--release-lock needs --endpoint")
        lock = EndpointLock(Endpoints(session=session), args.endpoint, args.variant)
        holder = lock.holder()
        if holder is None:
            print(f"{args.endpoint}: not locked")
        else:
            lock.endpoints.delete_tag(args.endpoint, lock.key)
            print(f"{args.endpoint}: removed the lock of {holder.describe()}")
        if not args.path:
            return 0
    if not args.path:
        raise ValidationError("give a snapshot file or run directory (or --release-lock)")
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
    scaling = AutoScaling(session=session)
    endpoints = Endpoints(session=session)
    for file in files:
        # A malformed snapshot is bad input (exit 2), refused before any change.
        if file.name == JOURNAL_NAME:
            Journal.load(file)
        loaded = None if file.name == JOURNAL_NAME else ScalingSnapshot.load(file)
        try:
            if loaded is None:
                journal = restore_file(file, scaling, endpoints, log_stderr)
                snap = journal.snapshot
            else:
                snap = loaded
                with_retries(partial(scaling.restore, snap), "restore", log_stderr)
        except RestoreFailed:
            raise
        except TunerError as e:
            if not isinstance(e, ValidationError):
                raise RestoreFailed(
                    f"{file}: restore failed ({e}); the endpoint may not be as it was: run "
                    "this command again"
                ) from e
            raise
        print(
            f"restored {snap.resource.resource_id} as of {snap.taken_at}: "
            f"{len(snap.policies)} policies, {len(snap.scheduled_actions)} scheduled actions"
        )
    return 0
