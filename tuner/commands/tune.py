"""tuner tune: simulate a grid of candidate policies on traffic profiles and recommend one."""

from __future__ import annotations

import argparse
import shlex
import shutil
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tuner.commands._common import add_aws_options, aws_session
from tuner.commands._live import (
    add_guardrail_options,
    check_can_confirm,
    confirm,
    guardrails_from,
)
from tuner.commands._tune_live import (
    add_trials,
    check_live,
    live_profile,
    parse_window,
    point_out_mismatch,
    print_dry_run,
    profile_for,
    progress,
    run_live,
)
from tuner.commands._tune_llm import llm_capacity_or_none, refuse_llm_flags, run_llm_tune
from tuner.errors import ValidationError

if TYPE_CHECKING:
    from tuner.aws import AwsSession
    from tuner.live import Guardrails
    from tuner.model import Capacity, SimulationSettings
    from tuner.model.backtest import Fitted
    from tuner.profiles import Profile
    from tuner.tune import CompanionGrid, Grid, Objective


EPILOG = """\
examples:
  tuner tune --profile steady --profile flash-spike --slo-p99-ms 500 --max-error-rate 0.001 \\
      --out reports/launch
  tuner tune --profile chat-day.toml --capacity examples/llm-capacity.json \\
      --slo-ttft-p99-ms 1500 --slo-itl-p99-ms 100 --max-error-rate 0.02 --out reports/llm
  tuner tune --profile history.csv --capacity capacity.json --slo-p99-ms 300 \\
      --max-error-rate 0.001 --grid grid.toml --endpoint my-endpoint --out reports/retune
  tuner report reports/launch          # re-render the report from the saved files
  # validate the best two live, on the last 30 minutes of a day of history (same --out: the
  # simulation already there is reused):
  tuner tune --profile history.toml --slo-p99-ms 500 --max-error-rate 0.001 \\
      --endpoint my-endpoint --out reports/retune --live --top 2 --live-window 23h30m,30m

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

--live trials the --top K candidates on --endpoint (as `tuner trial`, guardrails included) on
the tuning's profiles, or on --live-profile, each cut to --live-window START,LENGTH if given.
Everything is checked before the simulation starts: the endpoint and its tags, the grid's
MaxCapacity against --max-instances, the live peak rate against --max-rps, and the estimated
duration of the trials against --live-time-limit. With --out naming an earlier run, --live adds
the trials to it without simulating again.
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
        metavar="P",
        help="traffic profile: TOML, replay CSV or ready profile name (repeatable; required "
        "unless --live adds trials to the run in --out)",
    )
    p.add_argument(
        "--scale-to-capacity",
        type=float,
        metavar="N",
        help="play ready profiles (given by name) at rates whose peak needs N instances of "
        "--capacity (they are sized for ~20-rps instances); files play as written",
    )
    p.add_argument(
        "--capacity",
        metavar="FILE",
        help="capacity.json from `tuner calibrate` (default: DESIGN.md's example)",
    )
    p.add_argument(
        "--slo-p99-ms",
        type=float,
        metavar="MS",
        help="latency objective: a request slower than this violates the SLO (required, "
        "except with an LLM capacity file)",
    )
    p.add_argument(
        "--slo-ttft-p99-ms",
        type=float,
        metavar="MS",
        help='LLM capacity file ("kind": "llm"): time-to-first-token objective (default: '
        "--slo-p99-ms, else the copy's TTFT p99 at its concurrency limit)",
    )
    p.add_argument(
        "--slo-itl-p99-ms",
        type=float,
        metavar="MS",
        help="LLM capacity file: inter-token latency objective, a request's ITL p99 (default: "
        "the copy's ITL p99 at its concurrency limit)",
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
        "--no-schedules",
        dest="schedules",
        action="store_false",
        help="do not search scheduled floors (by default, where the longest profile has a daily "
        "or weekly rhythm, a raised MinCapacity over its busy hours is tried with the best "
        "policies and recommended only when cheaper at the same objective)",
    )
    p.add_argument(
        "--schedule-timezone",
        metavar="ZONE",
        help="IANA time zone of the scheduled floors' cron expressions and of the busy hours "
        "found (default: UTC)",
    )
    p.add_argument(
        "--holdout",
        metavar="H",
        help="newest window of a history (one profile of 2 days or more) held out to validate "
        'on: "auto" (a quarter, whole days), a duration ("3d", "12h"), a share ("0.25") or '
        '"off" (default: auto)',
    )
    p.add_argument(
        "--stress-level",
        type=float,
        metavar="S",
        help="scale of the stress scenarios built from the history, 1..10, or 0 for none "
        "(the objective itself over the whole history, no margin) (default: the least level "
        "walk-forward folds needed)",
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
        metavar="S",
        help="CloudWatch publishing delay of each datapoint (default: the capacity file's "
        "metric_lag_s, else 60)",
    )
    p.add_argument(
        "--step-companion",
        action="store_true",
        help="also try target tracking plus a step scale-out companion (threshold and step "
        "size searched); recommended only when cheaper at the same objective",
    )
    p.add_argument("--endpoint", help="evaluate this endpoint's current policy too (reads AWS)")
    p.add_argument(
        "--inference-component",
        metavar="IC",
        help="with an LLM capacity file and --live: the inference component on --endpoint to "
        "trial the top candidates on (streaming)",
    )
    p.add_argument(
        "--backtest",
        action="store_true",
        help="with --endpoint: first run `tuner backtest` on its last --backtest-days, tune "
        "with the fitted boot_s and metric delay, and check the recommendation across their "
        "uncertainty (DIR/backtest/, a section of the report)",
    )
    p.add_argument(
        "--backtest-days",
        type=float,
        default=3.0,
        metavar="D",
        help="window of the backtest (default: 3)",
    )
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
        "--live-profile",
        action="append",
        metavar="P",
        help="what --live plays (repeatable; default: the tuning's profiles)",
    )
    p.add_argument(
        "--live-window",
        metavar="START,LENGTH",
        help="play only this window of each live profile, e.g. 6h,30m (profile time)",
    )
    p.add_argument(
        "--live-time-limit",
        default="2h",
        metavar="DUR",
        help="refuse --live trials estimated to take longer (real time), and start none after "
        "it (default: 2h)",
    )
    p.add_argument(
        "--out", metavar="DIR", help="run directory to write (default: reports/tune-<UTC time>)"
    )
    p.add_argument(
        "--force",
        action="store_true",
        help="replace DIR if it holds an earlier run (never one with a restore journal left)",
    )
    add_guardrail_options(
        p,
        max_instances_help="cap on MaxCapacity, e.g. the account quota: caps the search of a "
        "history, and --live refuses candidates above it (default: no cap on the search; 20 "
        "for --live)",
    )
    add_aws_options(p)
    parser: argparse.ArgumentParser = p
    return parser


def _out_dir(args: argparse.Namespace, now: datetime) -> Path:
    out = Path(args.out or f"reports/tune-{now:%Y%m%d-%H%M%S}")
    if out.exists() and any(out.iterdir()):
        if not args.force:
            raise ValidationError(
                f"--out must be a new or empty folder, got {out} (holds files; --force replaces; "
                "with --live, trials are added to an earlier run)"
            )
        if not (out / "manifest.json").is_file():
            raise ValidationError(f"--force replaces only an earlier run directory, got {out}")
        from tuner.live.safety import JOURNAL_NAME

        journals = sorted(out.rglob(JOURNAL_NAME))
        if journals:
            # The journal is the only record of an endpoint's original configuration.
            raise ValidationError(
                f"--force will not delete {out}: it holds an outstanding restore journal "
                f"({journals[0]}); run `tuner restore {out}` first"
            )
        shutil.rmtree(out)
    return out


def _command_line(args: argparse.Namespace) -> str:
    words = ["tuner", "tune"]
    for spec in args.profile or []:
        words += ["--profile", spec]
    for spec in args.live_profile or []:
        words += ["--live-profile", spec]
    for flag in (
        "capacity",
        "slo_p99_ms",
        "slo_ttft_p99_ms",
        "slo_itl_p99_ms",
        "max_error_rate",
        "max_slo_violation",
        "margin",
        "grid",
        "schedule_timezone",
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
        "live_window",
        "scale_to_capacity",
        "out",
    ):
        value = getattr(args, flag)
        if value is not None:
            words += [
                f"--{flag.replace('_', '-')}",
                f"{value:g}" if isinstance(value, float) else str(value),
            ]
    if args.backtest:
        words += ["--backtest", "--backtest-days", f"{args.backtest_days:g}"]
    words += [] if args.schedules else ["--no-schedules"]
    return shlex.join(words + (["--live"] if args.live else []))


def run(args: argparse.Namespace) -> int:
    from tuner.model import Capacity, SimulationSettings
    from tuner.profiles import parse_duration
    from tuner.tune import CompanionGrid, Grid, Objective
    from tuner.tune.history import parse_holdout

    now = datetime.now(UTC).replace(microsecond=0)
    llm = llm_capacity_or_none(args.capacity)
    if llm is not None:
        return run_llm_tune(args, llm, now=now, out_dir=_out_dir, command=_command_line(args))
    refuse_llm_flags(args)
    if args.slo_p99_ms is None:
        raise ValidationError("--slo-p99-ms is required: the latency objective in ms")
    objective = Objective(
        slo_p99_ms=args.slo_p99_ms,
        max_error_rate=args.max_error_rate,
        max_slo_violation=args.max_slo_violation,
        margin=args.margin,
    )
    if args.schedule_timezone is not None:
        from tuner.policy.cron import timezone

        timezone(args.schedule_timezone, "--schedule-timezone")
    if not 1 <= args.seeds <= 100:
        raise ValidationError(f"--seeds must be in 1..100, got {args.seeds}")
    limit_s = parse_duration(args.live_time_limit, "--live-time-limit")
    window = parse_window(args.live_window) if args.live_window else None
    if args.live:
        if not args.endpoint:
            raise ValidationError("--live needs --endpoint: the endpoint to trial on")
        if args.top < 1:
            raise ValidationError(f"--top >= 1 must hold, got {args.top}")
    elif args.live_profile or args.live_window:
        raise ValidationError("--live-profile and --live-window need --live")
    if args.scale_to_capacity is not None and not args.scale_to_capacity > 0:
        raise ValidationError(f"--scale-to-capacity must be > 0, got {args.scale_to_capacity:g}")
    capacity = Capacity.load(args.capacity) if args.capacity else Capacity.default()
    if args.metric_lag_s is None:
        args.metric_lag_s = 60.0 if capacity.metric_lag_s is None else capacity.metric_lag_s
    guardrails = guardrails_from(args)  # checked before simulating, like every flag
    out = Path(args.out or f"reports/tune-{now:%Y%m%d-%H%M%S}")
    if args.live and not args.force and (out / "manifest.json").is_file():
        return add_trials(args, out, capacity, guardrails, window, limit_s)
    if not args.profile:
        raise ValidationError("--profile is required (a profile TOML, replay CSV or ready name)")
    settings = SimulationSettings(
        seeds=tuple(range(args.seeds)),
        boot_s=args.boot_s,
        metric_lag_s=args.metric_lag_s,
        boot_jitter_s=args.boot_jitter_s,
    )
    if args.backtest and not args.endpoint:
        raise ValidationError("--backtest needs --endpoint: the endpoint whose history to replay")
    loaded = [profile_for(spec, args, capacity, None) for spec in args.profile]
    names = [p.name for p, _ in loaded]
    if len(set(names)) != len(names):
        raise ValidationError(f"--profile names must be unique, got {names}")
    point_out_mismatch([p for p, _ in loaded], capacity, guardrails.max_instances)
    grid = Grid.load(args.grid) if args.grid else Grid()
    holdout = parse_holdout("auto" if args.holdout is None else args.holdout)
    live: list[Profile] = []
    live_specs = args.live_profile or list(args.profile)
    session = aws_session(args) if args.endpoint and not args.dry_run else None
    if args.live:
        live = [live_profile(spec, args, capacity, None, window) for spec in live_specs]
        _, max_capacity = grid.capacity_bounds(
            [p for p, _ in loaded], capacity.max_rps_per_instance
        )
        if grid.max_capacities:
            max_capacity = max(grid.max_capacities)
        if max_capacity > guardrails.max_instances:
            raise ValidationError(
                f"the grid's MaxCapacity <= --max-instances must hold for --live, got "
                f"{max_capacity} > {guardrails.max_instances} (peak demand x "
                f"{grid.peak_headroom:g} / {capacity.max_rps_per_instance:g} rps per instance): "
                "raise --max-instances, set max_capacities in --grid, or --scale-to-capacity"
            )
        if not args.dry_run:  # asked after the simulation; refused now if it cannot be asked
            from tuner.live.trial import session_endpoint_url

            check_can_confirm(yes=args.yes, endpoint_url=session_endpoint_url(aws_session(args)))
        check_live(args, session, live, args.top, guardrails, limit_s)
    out = _out_dir(args, now)
    fitted = _backtest(args, out) if args.backtest else None
    if fitted is not None:
        settings = replace(settings, boot_s=fitted.boot_s, metric_lag_s=fitted.metric_lag_s)
    # Derived profiles (scaled, windowed) are written into the run directory once it exists.
    loaded = [profile_for(spec, args, capacity, out) for spec in args.profile]
    if args.live:
        live = [live_profile(spec, args, capacity, out, window) for spec in live_specs]
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
        live_top=args.top if args.live and not args.dry_run else 0,
        session=session,
        ask_first=not args.yes,
        command=_command_line(args),
        created=now,
        fitted=fitted,
        companions=CompanionGrid() if args.step_companion else None,
        schedules=args.schedules,
        schedule_timezone=args.schedule_timezone,
        live_profiles=live,
        guardrails=guardrails,
        time_limit_s=limit_s,
        holdout=holdout,
        stress_level=args.stress_level,
        max_instances=args.max_instances,
    )
    if args.live and args.dry_run:
        print_dry_run(args, live)
    return 0


def _backtest(args: argparse.Namespace, out: Path) -> Fitted:
    """``tuner backtest`` on the endpoint into DIR/backtest; the fitted values."""
    from tuner.commands.backtest import run_backtest
    from tuner.report.render import BACKTEST_DIR

    bt = argparse.Namespace(**vars(args))
    bt.history, bt.hours, bt.end, bt.days = None, None, None, args.backtest_days
    _, result, _ = run_backtest(bt, aws_session(args), out / BACKTEST_DIR)
    f = result.fitted
    progress(
        f"backtest: boot_s {f.boot_s:.0f} s (+-{f.boot_uncertainty_s:.0f}), metric delay "
        f"{f.metric_lag_s:.0f} s (+-{f.metric_lag_uncertainty_s:.0f}); per-minute agreement "
        f"{result.fitted_score.agreement:.1%} (defaults {result.default_score.agreement:.1%})"
    )
    return f


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
    fitted: Fitted | None = None,
    companions: CompanionGrid | None = None,
    schedules: bool = True,
    schedule_timezone: str | None = None,
    live_profiles: Sequence[Profile] | None = None,
    guardrails: Guardrails | None = None,
    time_limit_s: float | None = None,
    ask_first: bool = False,
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
        from tuner.aws.endpoint import Endpoints

        resource = Resource.for_variant(endpoint, variant)
        Endpoints(session=session).describe(endpoint).variant(variant)  # it must exist
        current = AutoScaling(session=session).read_current(resource)
        progress(f"current policy of {resource}: {current.label if current else 'none'}")
        if current is not None:
            current_note = unmodelled(current, profiles[0], capacity)
            if current_note:
                progress(f"the current policy is left out: {current_note}")
                current = None
    tuning = tune(
        profiles,
        objective,
        capacity=capacity,
        settings=settings,
        grid=grid,
        current=current,
        timelines_top=live_top,
        schedules=schedules,
        schedule_timezone=schedule_timezone,
        companions=companions,
        progress=progress,
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
    if fitted is not None:
        _check_robustness(tuning, profiles, capacity, objective, settings, fitted, out)
    try:
        if live_top and endpoint and session is not None:
            top = tuning.ranked(live_top)
            if ask_first:
                from tuner.live import session_endpoint_url

                confirm(
                    [f"live trials of {', '.join(p.label for p in top)} on {endpoint}/{variant}"],
                    yes=False,
                    endpoint_url=session_endpoint_url(session),
                )
            run_live(
                out,
                top,
                live_profiles or profiles,
                endpoint=endpoint,
                variant=variant,
                session=session,
                guardrails=guardrails,
                time_limit_s=time_limit_s,
            )
    finally:
        # A failed or interrupted trial still leaves the simulation's report (and any finished
        # trials) on disk; `tuner report DIR` re-renders once more trials are there.
        progress("rendering the report")
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


def _check_robustness(
    tuning: Any,
    profiles: Sequence[Profile],
    capacity: Capacity,
    objective: Objective,
    settings: SimulationSettings,
    fitted: Fitted,
    out: Path,
) -> None:
    from tuner.report.backtest import ROBUSTNESS_CSV
    from tuner.report.render import BACKTEST_DIR
    from tuner.tune import robustness

    table = robustness(
        profiles,
        tuning.recommended,
        capacity,
        objective,
        settings,
        boot_s=(fitted.boot_s, fitted.boot_uncertainty_s),
        metric_lag_s=(fitted.metric_lag_s, fitted.metric_lag_uncertainty_s),
    )
    table.to_csv(out / BACKTEST_DIR / ROBUSTNESS_CSV, index=False)
    held = int(table["meets_objective"].sum())
    progress(f"robustness: the recommendation meets the objective at {held} of {len(table)} "
              "combinations of boot time and metric delay within their uncertainty")  # fmt: skip
