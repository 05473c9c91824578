"""tuner collect: an endpoint's real traffic history from CloudWatch, ready to replay."""

from __future__ import annotations

import argparse
import datetime as dt
import sys
from pathlib import Path
from typing import Any

from tuner.commands._common import add_aws_options, aws_session

EPILOG = """\
examples:
  tuner collect --endpoint my-endpoint --days 14 --out history.csv
  tuner tune --profile history.toml ...      # history.toml: [[segment]] replay = "history.csv"

Writes `timestamp,invocations,instances` (ISO-8601 UTC): Invocations per period, and the
instances in service derived as Invocations / InvocationsPerInstance (empty when idle). The period
is the finest CloudWatch keeps for that age: 1 minute up to 15 days, 5 minutes up to 63 days,
1 hour beyond. A replay profile next to the CSV is written too (`--profile-out`).
"""


def register(sub: Any) -> argparse.ArgumentParser:
    p: argparse.ArgumentParser = sub.add_parser(
        "collect",
        help="download an endpoint's invocation history from CloudWatch (replay format)",
        description="Fetch per-minute Invocations and instance counts of a variant from "
        "CloudWatch into a CSV that a replay profile plays back.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--endpoint", required=True, help="SageMaker endpoint name")
    p.add_argument(
        "--variant", default="AllTraffic", help="production variant (default: AllTraffic)"
    )
    p.add_argument("--days", type=float, default=14.0, help="how far back (default: 14)")
    p.add_argument("--end", help="end of the window, ISO-8601 UTC (default: now)")
    p.add_argument("--period-s", type=int, help="override the period (60, 300, 3600)")
    p.add_argument("--out", required=True, help="CSV to write")
    p.add_argument(
        "--profile-out",
        help="replay profile TOML to write beside it (default: OUT with .toml)",
    )
    add_aws_options(p)
    return p


def run(args: argparse.Namespace) -> int:
    from tuner.aws import AwsSession
    from tuner.aws.cloudwatch import collect_history, history_period_s
    from tuner.aws.endpoint import Endpoints
    from tuner.errors import ValidationError

    if not 0 < args.days <= 455:
        raise ValidationError(
            f"--days must be in (0, 455] (CloudWatch retention), got {args.days:g}"
        )
    if args.end:
        try:
            end = dt.datetime.fromisoformat(args.end.replace("Z", "+00:00"))
        except ValueError as e:
            raise ValidationError(f"--end must be ISO-8601, got {args.end!r}") from e
    else:
        end = dt.datetime.now(dt.UTC)
    if end.tzinfo is None:
        end = end.replace(tzinfo=dt.UTC)
    period_s = args.period_s or history_period_s(args.days)
    if period_s not in (60, 300, 3600):
        raise ValidationError(f"--period-s must be 60, 300 or 3600, got {period_s}")
    end = dt.datetime.fromtimestamp(int(end.timestamp()) // period_s * period_s, dt.UTC)
    start = end - dt.timedelta(days=args.days)
    session: AwsSession = aws_session(args)
    Endpoints(session=session).describe(args.endpoint).variant(args.variant)
    print(
        f"collecting {args.endpoint}/{args.variant} from {start:%Y-%m-%d %H:%M} to "
        f"{end:%Y-%m-%d %H:%M} UTC at {period_s} s ...",
        file=sys.stderr,
    )
    history = collect_history(
        session.client("cloudwatch"), args.endpoint, args.variant, start, end, period_s=period_s
    )
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    history.to_csv(out, index=False)
    profile_out = Path(args.profile_out) if args.profile_out else out.with_suffix(".toml")
    profile_out.write_text(
        f'name = "{args.endpoint}-history"\n\n[[segment]]\nreplay = "{out.name}"\n',
        encoding="utf-8",
    )
    total = history["invocations"].sum()
    print(
        f"wrote {out} ({len(history)} rows, {total:,.0f} invocations) and replay profile "
        f"{profile_out}"
    )
    return 0
