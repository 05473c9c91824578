"""tuner backtest: replay an endpoint's recorded demand through the model and compare."""

from __future__ import annotations

import argparse
import datetime as dt
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tuner.commands._common import add_aws_options, aws_session, parse_end

if TYPE_CHECKING:
    from tuner.aws import AwsSession
    from tuner.model import Capacity
    from tuner.model.backtest import BacktestResult, Recording

EPILOG = """\
examples:
  tuner backtest --endpoint my-endpoint --days 3 --capacity capacity.json --out reports/bt
  tuner collect --endpoint my-endpoint --days 3 --period-s 60 --out history.csv
  tuner backtest --history history.csv --capacity capacity.json --write-capacity fitted.json \\
      --out reports/bt

Reads the per-minute Invocations, the scaling activities, the policies in force and the alarms
target tracking created (live with --endpoint, or from the files `tuner collect` writes:
HISTORY.csv and HISTORY.scaling.json). Replays the demand through the model with each candidate
metric delay (--lags), fits boot_s (median start-to-end of the recorded scale-outs) and the
delay that best aligns the decision times, and compares minute by minute with the recorded
desired capacity, beside the model's defaults (--metric-lag-s, the capacity's boot_s).
Writes DIR/backtest.json, backtest.csv, backtest.md, backtest.html (and, with --endpoint,
history.csv and history.scaling.json); --write-capacity writes the capacity file with the fitted
boot_s and metric_lag_s, which `tuner simulate` and `tuner tune` read.
"""


def register(sub: Any) -> argparse.ArgumentParser:
    p: argparse.ArgumentParser = sub.add_parser(
        "backtest",
        help="check the model against the endpoint's own scaling history; fit boot and delay",
        description="Replay an endpoint's recorded Invocations through the target-tracking "
        "model, compare its decisions with the recorded scaling activities minute by minute, "
        "and fit the boot time and the metric delay.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    src = p.add_argument_group("what to backtest (one of)")
    src.add_argument("--endpoint", help="read the history of this SageMaker endpoint from AWS")
    src.add_argument(
        "--history", metavar="CSV", help="per-minute history written by `tuner collect`"
    )
    p.add_argument(
        "--scaling",
        metavar="JSON",
        help="scaling history of --history (default: HISTORY with .scaling.json)",
    )
    p.add_argument(
        "--variant", default="AllTraffic", help="production variant (default: AllTraffic)"
    )
    p.add_argument("--days", type=float, help="window length in days (default: 1)")
    p.add_argument("--hours", type=float, help="window length in hours (instead of --days)")
    p.add_argument("--end", help="end of the window, ISO-8601 UTC (default: now)")
    p.add_argument(
        "--capacity", metavar="FILE", help="capacity.json: boot_s is the default compared with"
    )
    p.add_argument(
        "--metric-lag-s",
        type=float,
        metavar="S",
        help="the default metric delay compared with (default: the capacity's, else 60)",
    )
    p.add_argument(
        "--lags",
        default="0:300:10",
        metavar="A:B:STEP",
        help="metric delays tried, in seconds (default: 0:300:10)",
    )
    p.add_argument(
        "--write-capacity",
        metavar="FILE",
        help="write the capacity file with the fitted boot_s and metric_lag_s here",
    )
    p.add_argument("--out", required=True, metavar="DIR", help="folder to write the backtest to")
    add_aws_options(p)
    return p


def parse_lags(text: str) -> tuple[float, ...]:
    from tuner.errors import ValidationError

    try:
        a, b, step = (float(x) for x in text.split(":"))
    except ValueError:
        raise ValidationError(f"--lags must be A:B:STEP in seconds, got {text!r}") from None
    if not (0 <= a <= b and step > 0 and (b - a) / step <= 200):
        raise ValidationError(
            f"--lags: 0 <= A <= B, STEP > 0 and at most 200 steps must hold, got {text!r}"
        )
    n = int((b - a) / step + 1e-9) + 1
    return tuple(a + i * step for i in range(n))


def _window(args: argparse.Namespace, now_s: float) -> tuple[dt.datetime, dt.datetime]:
    from tuner.errors import ValidationError

    if args.days is not None and args.hours is not None:
        raise ValidationError("give --days or --hours, not both")
    hours = args.hours if args.hours is not None else 24.0 * (args.days or 1.0)
    if not 0 < hours <= 15 * 24:
        raise ValidationError(
            f"the window must be in (0, 15] days (CloudWatch keeps 1-minute data 15 days), "
            f"got {hours / 24:g} days"
        )
    end = parse_end(args.end) if args.end else dt.datetime.fromtimestamp(now_s, dt.UTC)
    end = dt.datetime.fromtimestamp(int(end.timestamp()) // 60 * 60, dt.UTC)
    return end - dt.timedelta(hours=hours), end


def read_endpoint(
    session: AwsSession,
    endpoint: str,
    variant: str,
    start: dt.datetime,
    end: dt.datetime,
    out: Path,
) -> tuple[Path, Path]:
    """Collect the window's history and scaling history into OUT (the files --history reads)."""
    from tuner.aws.cloudwatch import collect_history
    from tuner.aws.endpoint import Endpoints
    from tuner.aws.history import read_scaling_history, save_history
    from tuner.policy import Resource

    Endpoints(session=session).describe(endpoint).variant(variant)
    history = collect_history(session.client("cloudwatch"), endpoint, variant, start, end)
    out.mkdir(parents=True, exist_ok=True)
    csv_path = out / "history.csv"
    history.to_csv(csv_path, index=False)
    doc = read_scaling_history(session, Resource.for_variant(endpoint, variant), start, end)
    return csv_path, save_history(doc, out / "history.scaling.json")


def load_recording(history: Path, scaling: Path, capacity: Capacity, lag_s: float) -> Recording:
    import pandas as pd

    from tuner.aws.history import load_history
    from tuner.errors import TunerError, ValidationError
    from tuner.model import ModelChoices
    from tuner.model.recording import recording_from

    if not history.is_file():
        raise ValidationError(f"--history: file not found: {history}")
    if not scaling.is_file():
        raise ValidationError(
            f"--scaling: file not found: {scaling} (`tuner collect` writes it beside the CSV)"
        )
    defaults = ModelChoices(metric_lag_s=lag_s, boot_s=capacity.boot_s)
    doc = load_history(scaling)
    try:
        frame = pd.read_csv(history)
        return recording_from(frame, doc, defaults=defaults)
    except (ValueError, TypeError, pd.errors.ParserError, TunerError) as e:
        if isinstance(e, ValidationError):
            raise
        raise ValidationError(f"{history}: not a per-minute history as `tuner collect` writes "
                              f"it (timestamp,invocations[,instances]): {e}") from e  # fmt: skip


def run_backtest(
    args: argparse.Namespace, session: AwsSession | None, out: Path
) -> tuple[Recording, BacktestResult, Capacity]:
    """The backtest of ``args`` (endpoint or files), written to OUT; also used by tune."""
    from tuner.errors import ValidationError
    from tuner.live import discover_clock, session_endpoint_url
    from tuner.model import Capacity, ModelChoices
    from tuner.model.backtest import backtest
    from tuner.report.backtest import write_backtest

    capacity = Capacity.load(args.capacity) if args.capacity else Capacity.default()
    lag = getattr(args, "metric_lag_s", None)
    if lag is None:
        lag = 60.0 if capacity.metric_lag_s is None else capacity.metric_lag_s
    lags = parse_lags(getattr(args, "lags", None) or "0:300:10")
    if getattr(args, "history", None):
        history = Path(args.history)
        scaling = (
            Path(args.scaling)
            if args.scaling
            else history.with_name(history.stem + ".scaling.json")
        )
    elif args.endpoint and session is not None:
        from tuner.aws.endpoint import Endpoints

        # An unknown endpoint is refused before any progress is printed.
        Endpoints(session=session).describe(args.endpoint).variant(args.variant)
        now_s = discover_clock(session_endpoint_url(session)).now()
        start, end = _window(args, now_s)
        _progress(f"reading {args.endpoint}/{args.variant} from {start:%Y-%m-%d %H:%M} to "
                  f"{end:%Y-%m-%d %H:%M} UTC")  # fmt: skip
        history, scaling = read_endpoint(session, args.endpoint, args.variant, start, end, out)
    else:
        raise ValidationError("give --endpoint or --history: what to backtest")
    rec = load_recording(history, scaling, capacity, lag)
    _progress(
        f"{rec.minutes} minutes, {len(rec.activities)} scaling activities, "
        f"{len(rec.spans)} policy span(s); replaying {len(lags)} metric delays"
    )
    result = backtest(
        rec, defaults=ModelChoices(metric_lag_s=lag, boot_s=capacity.boot_s), lags_s=lags
    )
    write_backtest(out, rec, result)
    return rec, result, capacity


def _progress(message: str) -> None:
    print(f"backtest: {message}", file=sys.stderr, flush=True)


def run(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from tuner.errors import ValidationError

    if bool(args.endpoint) == bool(args.history):
        raise ValidationError("give exactly one of --endpoint and --history")
    out = Path(args.out)
    session = aws_session(args) if args.endpoint else None
    _, result, capacity = run_backtest(args, session, out)
    f, fit, default = result.fitted, result.fitted_score, result.default_score
    print(
        f"fitted boot_s {f.boot_s:.0f} s (+-{f.boot_uncertainty_s:.0f} s, "
        f"IQR {f.boot_spread_s:.0f} s, "
        f"{f.boot_samples} scale-outs); metric delay {f.metric_lag_s:.0f} s "
        f"(+-{f.metric_lag_uncertainty_s:.0f} s, {f.metric_lag_samples} decisions)"
    )
    print(
        f"agreement of desired capacity per minute: fitted {fit.agreement:.1%}, "
        f"defaults (delay {result.defaults.metric_lag_s:g} s, boot {result.defaults.boot_s:g} s) "
        f"{default.agreement:.1%}"
    )
    for note in result.notes:
        print(f"note: {note}")
    if args.write_capacity:
        fitted = replace(capacity, boot_s=round(f.boot_s), metric_lag_s=f.metric_lag_s)
        path = fitted.save(args.write_capacity)
        print(f"capacity:  {path}")
    print(f"report:    {out / 'backtest.html'}")
    return 0
