"""tuner tune: simulate a grid of candidate policies on traffic profiles and recommend one."""

from __future__ import annotations

import argparse
import shlex
import shutil
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tuner.commands._common import add_aws_options, aws_session, resolve_profile
from tuner.errors import ValidationError

if TYPE_CHECKING:
    from tuner.aws import AwsSession
    from tuner.model import Capacity, SimulationSettings
    from tuner.profiles import Profile
    from tuner.tune import Grid, Objective

EPILOG = """\
examples:
  tuner tune --profile steady --profile flash-spike --slo-p99-ms 500 --max-error-rate 0.001 \\
      --out reports/launch
  tuner tune --profile history.csv --capacity capacity.json --slo-p99-ms 300 \\
      --max-error-rate 0.001 --grid grid.toml --endpoint my-endpoint --out reports/retune
  tuner report reports/launch          # re-render the report from the saved files

--profile takes a profile TOML, a replay CSV (timestamp,invocations, as `tuner collect` writes),
or the name of a ready profile in locustfiles/profiles/. The grid: target values at 0.30..0.90 x
max_rps_per_instance x 60, scale-out cooldowns 0/60/120/300 s, scale-in cooldowns
300/600/900/1800 s, MinCapacity levels covering the 10th and 50th percentile and the peak of
per-minute demand, MaxCapacity from peak demand x 1.5; a --grid TOML overrides any list (keys:
target_fractions, target_values, scale_out_cooldowns_s, scale_in_cooldowns_s, min_capacities,
max_capacities, min_percentiles, peak_headroom).

One profile of two days or more is a history: the newest window (--holdout) is held out, the
stress level is calibrated on walk-forward folds, and the search is finer (every integer
MinCapacity near the best, targets bisected); the report shows in-sample and held-out side by side.

The recommendation is the cheapest candidate whose worst seed on every profile keeps the SLO
violation (share of requests failed or slower than --slo-p99-ms) under --max-slo-violation and
the error rate under --max-error-rate, both scaled by --margin. AWS's rule-of-thumb policy
(target = max rps x 60 x 0.5) and, with --endpoint, the live policy are always evaluated beside it.
Writes DIR/report.html, report.md, candidates.csv, results.csv, recommended.policy.json (ready
for `tuner apply`), timelines/, manifest.json.
"""


def register(sub: Any) -> argparse.ArgumentParser:
    p: argparse.ArgumentParser = sub.add_parser(
        "tune",
        help="simulate candidate policies on profiles, recommend one, write the report",
        description="Build a grid of target-tracking policies, simulate each on every profile "
        "and seed, score cost, SLO violation, churn and recovery, and recommend the cheapest "
        "policy that meets the objective everywhere with a safety margin.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--profile",
        action="append",
        required=True,
        metavar="P",
        help="traffic profile: TOML, replay CSV or ready profile name (repeatable)",
    )
    p.add_argument(
        "--capacity",
        metavar="FILE",
        help="capacity.json from `tuner calibrate` (default: DESIGN.md's example)",
    )
    p.add_argument(
        "--slo-p99-ms",
        type=float,
        required=True,
        metavar="MS",
        help="latency objective: a request slower than this violates the SLO",
    )
    p.add_argument(
        "--max-error-rate",
        type=float,
        required=True,
        metavar="R",
        help="largest acceptable share of failed requests, e.g. 0.001",
    )
    p.add_argument(
        "--max-slo-violation",
        type=float,
        default=0.01,
        metavar="R",
        help="largest acceptable share of requests failed or slower than the SLO "
        "(default: 0.01, a p99 objective)",
    )
    p.add_argument(
        "--margin",
        type=float,
        default=0.8,
        help="the worst seed must meet each bound x this factor (default: 0.8)",
    )
    p.add_argument("--grid", metavar="TOML", help="override the candidate grid's lists")
    p.add_argument(
        "--holdout",
        default="auto",
        metavar="H",
        help="newest window of a history (one profile of 2 days or more) held out to validate "
        'on: "auto" (a quarter, whole days), a duration ("3d", "12h"), a share ("0.25") or '
        '"off" (default: auto)',
    )
    p.add_argument(
        "--stress-level",
        type=float,
        metavar="S",
        help="scale of the stress scenarios built from the history, 1..10 (default: the "
        "least level walk-forward folds needed)",
    )
    p.add_argument(
        "--max-instances",
        type=int,
        metavar="N",
        help="cap on MaxCapacity, e.g. the account quota (default: no cap)",
    )
    p.add_argument(
        "--seeds",
        type=int,
        default=3,
        metavar="N",
        help="simulate each candidate with seeds 0..N-1 (default: 3)",
    )
    p.add_argument(
        "--boot-s",
        type=float,
        metavar="S",
        help="instance boot time (default: the capacity file's boot_s)",
    )
    p.add_argument(
        "--boot-jitter-s",
        type=float,
        default=60.0,
        metavar="S",
        help="seed-dependent spread of boot times (default: 60)",
    )
    p.add_argument(
        "--metric-lag-s",
        type=float,
        default=60.0,
        metavar="S",
        help="CloudWatch publishing delay of each datapoint (default: 60)",
    )
    p.add_argument("--endpoint", help="evaluate this endpoint's current policy too (reads AWS)")
    p.add_argument(
        "--variant", default="AllTraffic", help="production variant (default: AllTraffic)"
    )
    p.add_argument(
        "--live", action="store_true", help="also trial the top K candidates live on --endpoint"
    )
    p.add_argument(
        "--top",
        type=int,
        default=2,
        metavar="K",
        help="how many candidates --live trials (default: 2)",
    )
    p.add_argument(
        "--out", metavar="DIR", help="run directory to write (default: reports/tune-<UTC time>)"
    )
    p.add_argument("--force", action="store_true", help="replace DIR if it holds an earlier run")
    add_aws_options(p)
    return p


def _progress(message: str) -> None:
    print(f"tune: {message}", file=sys.stderr, flush=True)


def _out_dir(args: argparse.Namespace, now: datetime) -> Path:
    out = Path(args.out or f"reports/tune-{now:%Y%m%d-%H%M%S}")
    if out.exists() and any(out.iterdir()):
        if not args.force:
            raise ValidationError(
                f"--out must be a new or empty folder, got {out} (holds files; --force replaces)"
            )
        if not (out / "manifest.json").is_file():
            raise ValidationError(f"--force replaces only an earlier run directory, got {out}")
        shutil.rmtree(out)
    return out


def _command_line(args: argparse.Namespace) -> str:
    words = ["tuner", "tune"]
    for spec in args.profile:
        words += ["--profile", spec]
    for flag in (
        "capacity",
        "slo_p99_ms",
        "max_error_rate",
        "max_slo_violation",
        "margin",
        "grid",
        "holdout",
        "stress_level",
        "max_instances",
        "seeds",
        "boot_s",
        "boot_jitter_s",
        "metric_lag_s",
        "endpoint",
        "variant",
        "top",
        "out",
    ):
        value = getattr(args, flag)
        if value is not None:
            words += [
                f"--{flag.replace('_', '-')}",
                f"{value:g}" if isinstance(value, float) else str(value),
            ]
    return shlex.join(words + (["--live"] if args.live else []))


def run(args: argparse.Namespace) -> int:
    from tuner.model import Capacity, SimulationSettings
    from tuner.tune import Grid, Objective
    from tuner.tune.history import parse_holdout

    now = datetime.now(UTC).replace(microsecond=0)
    objective = Objective(
        slo_p99_ms=args.slo_p99_ms,
        max_error_rate=args.max_error_rate,
        max_slo_violation=args.max_slo_violation,
        margin=args.margin,
    )
    if not 1 <= args.seeds <= 100:
        raise ValidationError(f"--seeds must be in 1..100, got {args.seeds}")
    if args.live:
        if not args.endpoint:
            raise ValidationError("--live needs --endpoint: the endpoint to trial on")
        if args.top < 1:
            raise ValidationError(f"--top >= 1 must hold, got {args.top}")
    settings = SimulationSettings(
        seeds=tuple(range(args.seeds)),
        boot_s=args.boot_s,
        metric_lag_s=args.metric_lag_s,
        boot_jitter_s=args.boot_jitter_s,
    )
    loaded = [resolve_profile(spec) for spec in args.profile]
    names = [p.name for p, _ in loaded]
    if len(set(names)) != len(names):
        raise ValidationError(f"--profile names must be unique, got {names}")
    capacity = Capacity.load(args.capacity) if args.capacity else Capacity.default()
    grid = Grid.load(args.grid) if args.grid else Grid()
    holdout = parse_holdout(args.holdout)
    out = _out_dir(args, now)
    run_tuning(
        loaded,
        objective,
        out=out,
        capacity=capacity,
        capacity_path=Path(args.capacity) if args.capacity else None,
        settings=settings,
        grid=grid,
        grid_path=Path(args.grid) if args.grid else None,
        endpoint=args.endpoint,
        variant=args.variant,
        live_top=args.top if args.live else 0,
        session=aws_session(args) if args.endpoint else None,
        command=_command_line(args),
        created=now,
        holdout=holdout,
        stress_level=args.stress_level,
        max_instances=args.max_instances,
    )
    return 0


def run_tuning(
    loaded: Sequence[tuple[Profile, Path]],
    objective: Objective,
    *,
    out: Path,
    capacity: Capacity,
    capacity_path: Path | None,
    settings: SimulationSettings,
    grid: Grid,
    grid_path: Path | None,
    endpoint: str | None,
    variant: str,
    live_top: int,
    session: AwsSession | None,
    command: str,
    created: datetime,
    holdout: float | None = None,
    stress_level: float | None = None,
    max_instances: int | None = None,
) -> Path:
    """The workflow of ``tuner tune`` with its progress and output: read the current policy,
    tune, write the run, trial the ``live_top`` best on ``endpoint``, render; the report's path."""
    from tuner.policy import Resource
    from tuner.report.render import write_report
    from tuner.tune import manifest, tune, unmodelled, write_run

    profiles = [p for p, _ in loaded]
    current = None
    current_note = ""
    if endpoint and session is not None:
        from tuner.aws import AutoScaling

        resource = Resource.for_variant(endpoint, variant)
        current = AutoScaling(session=session).read_policy(resource)
        _progress(f"current policy of {resource}: {current.label if current else 'none'}")
        if current is not None:
            current_note = unmodelled(current, profiles[0], capacity)
            if current_note:
                _progress(f"the current policy is left out: {current_note}")
                current = None
    tuning = tune(
        profiles,
        objective,
        capacity=capacity,
        settings=settings,
        grid=grid,
        current=current,
        timelines_top=live_top,
        progress=_progress,
        holdout=holdout,
        stress_level=stress_level,
        max_instances=max_instances,
    )
    meta = manifest(
        tuning,
        out,
        profile_paths=[path for _, path in loaded],
        capacity_path=capacity_path,
        grid_path=grid_path,
        command=command,
        endpoint=endpoint,
        variant=variant,
        current_note=current_note,
        created=created,
    )
    write_run(tuning.to_run(out, meta))
    try:
        if live_top and endpoint and session is not None:
            from tuner.live import run_trials

            top = tuning.ranked(live_top)
            _progress(f"live trials of {', '.join(p.label for p in top)} on {endpoint}")
            run_trials(
                out,
                candidates=top,
                profiles=[_toml_for(path, out) for _, path in loaded],
                endpoint=endpoint,
                variant=variant,
                session=session,
                log=_progress,
            )
    finally:
        # A failed or interrupted trial still leaves the simulation's report (and any finished
        # trials) on disk; `tuner report DIR` re-renders once more trials are there.
        _progress("rendering the report")
        html_path, _ = write_report(out)
    row = tuning.candidates.iloc[0]
    verdict = "meets" if tuning.recommendation.meets_objective else "does NOT meet"
    print(
        f"recommended: {tuning.recommendation.label} ({verdict} the objective), "
        f"${row['monthly_cost_usd']:,.0f}/month"
    )
    print(f"policy:      {out / 'recommended.policy.json'}")
    print(f"report:      {html_path}")
    return html_path


def _toml_for(path: Path, out: Path) -> Path:
    """A profile file the trial can load: the TOML itself, or a replay TOML for a bare CSV."""
    if path.suffix.lower() != ".csv":
        return path
    from tuner.tune import write_replay_profile

    return write_replay_profile(out, path)
