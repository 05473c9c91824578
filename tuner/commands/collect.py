"""tuner collect: an endpoint's real traffic history from CloudWatch, ready to replay."""

from __future__ import annotations

import argparse
import datetime as dt
import sys
from pathlib import Path
from typing import Any

from tuner.commands._common import add_aws_options, aws_session, endpoint_clock, parse_end

# Below this share of periods with traffic the history is mostly empty: say so.
SPARSE_SHARE = 0.5

EPILOG = """\
examples:
  tuner collect --endpoint my-endpoint --days 14 --out history.csv
  tuner tune --profile history.toml ...      # history.toml: [[segment]] replay = "history.csv"

Writes `timestamp,invocations,instances` (ISO-8601 UTC): Invocations per period, and the
instances in service derived as Invocations / InvocationsPerInstance (empty when idle). The period
is the finest CloudWatch keeps for that age: 1 minute up to 15 days, 5 minutes up to 63 days,
1 hour beyond. A replay profile next to the CSV is written too (`--profile-out`), and OUT with
.scaling.json: the scaling activities of the window, the policies in force (merged with an earlier
file at that path, so a policy changed between collections keeps both spans) and the alarms
target tracking created, which `tuner backtest --history OUT` reads.

Time is the endpoint's: against the local AWS of `tuner emulate`, "now" is its virtual clock
(GET $AWS_ENDPOINT_URL/_tuner/clock); against AWS, real time checked against AWS's clock. A
window without any invocation is an error; one with traffic in under half of its periods is
written with a warning naming where the traffic is.
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
    p.add_argument(
        "--end", help="end of the window, ISO-8601 UTC (default: now, on the endpoint's clock)"
    )
    p.add_argument("--period-s", type=int, help="override the period (60, 300, 3600)")
    p.add_argument(
        "--trim",
        action="store_true",
        help="drop the idle periods before the first and after the last invocation",
    )
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
    from tuner.aws.history import SUFFIX, read_scaling_history, save_history
    from tuner.errors import TunerError, ValidationError
    from tuner.policy import Resource

    if not 0 < args.days <= 455:
        raise ValidationError(
            f"--days must be in (0, 455] (CloudWatch retention), got {args.days:g}"
        )
    end: dt.datetime | None = None
    if args.end:
        end = parse_end(args.end)
    period_s = args.period_s or history_period_s(args.days)
    if period_s not in (60, 300, 3600):
        raise ValidationError(f"--period-s must be 60, 300 or 3600, got {period_s}")
    session: AwsSession = aws_session(args)
    Endpoints(session=session).describe(args.endpoint).variant(args.variant)
    # The clock is announced when it sets the window; an --end in the future is refused quietly.
    clock = endpoint_clock(session, args.endpoint, _log if end is None else _quiet)
    now = clock.datetime_at(clock.now())
    if end is None:
        end = now
    elif end > now + dt.timedelta(seconds=period_s):
        raise ValidationError(
            f"--end {end:%Y-%m-%dT%H:%M:%SZ} is in the future: CloudWatch has no data after the "
            f"endpoint's now ({now:%Y-%m-%dT%H:%M:%SZ})"
        )
    end = dt.datetime.fromtimestamp(int(end.timestamp()) // period_s * period_s, dt.UTC)
    start = end - dt.timedelta(days=args.days)
    window = f"{start:%Y-%m-%d %H:%M} to {end:%Y-%m-%d %H:%M} UTC"
    _log(f"collecting {args.endpoint}/{args.variant} from {window} at {period_s} s ...")
    history = collect_history(
        session.client("cloudwatch"), args.endpoint, args.variant, start, end, period_s=period_s
    )
    busy = history["invocations"] > 0
    if not busy.any():
        raise TunerError(
            f"no invocations of {args.endpoint}/{args.variant} from {window} "
            f"({len(history)} periods): nothing written; check --end/--days and the endpoint"
        )
    share = float(busy.mean())
    first, last = (int(i) for i in history.index[busy.to_numpy()][[0, -1]])
    if args.trim:
        history = history.iloc[first : last + 1].reset_index(drop=True)
        _log(f"--trim: kept {len(history)} periods from {history['timestamp'].iloc[0]}")
    elif share < SPARSE_SHARE:
        until = dt.datetime.fromisoformat(history["timestamp"].iloc[last].replace("Z", "+00:00"))
        until += dt.timedelta(seconds=period_s)
        _log(
            f"warning: traffic in only {share:.0%} of the periods from {window}, all of it from "
            f"{history['timestamp'].iloc[first]} to {until:%Y-%m-%dT%H:%M:%SZ}; --trim keeps "
            "just that"
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
    if total == 0:
        print(
            f"note: CloudWatch holds no Invocations for {args.endpoint}/{args.variant} in this "
            "window: every row is zero (an idle endpoint, or the wrong window or region)"
        )
    print(
        f"wrote {out} ({len(history)} rows, {total:,.0f} invocations) and replay profile "
        f"{profile_out}"
    )
    # What `tuner backtest --history` needs besides the demand: activities, policies, alarms.
    doc = read_scaling_history(
        session,
        Resource.for_variant(args.endpoint, args.variant),
        start,
        end,
        require_activities=False,
    )
    scaling = save_history(doc, out.with_name(out.stem + SUFFIX))
    print(
        f"wrote {scaling} ({len(doc['activities'])} scaling activities, "
        f"{len(doc['policy_spans'])} policy span(s), {len(doc['alarms'])} alarms)"
    )
    if doc["activities_unavailable"]:
        print(f"note: scaling activities unavailable: {doc['activities_unavailable']}")
    return 0


def _quiet(message: str) -> None:
    """Say nothing."""


def _log(message: str) -> None:
    print(f"collect: {message}", file=sys.stderr, flush=True)
