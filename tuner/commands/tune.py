"""tuner tune: simulate a grid of candidate policies on traffic profiles and recommend one."""

from __future__ import annotations

import argparse
import hashlib
import platform
import shlex
import shutil
import sys
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

from tuner.commands._common import add_aws_options, aws_session, resolve_profile
from tuner.commands._live import add_guardrail_options, check_can_confirm, confirm, guardrails_from
from tuner.errors import ValidationError

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

The recommendation is the cheapest candidate whose worst seed on every profile keeps the SLO
violation (share of requests failed or slower than --slo-p99-ms) under --max-slo-violation and
the error rate under --max-error-rate, both scaled by --margin. AWS's rule-of-thumb policy
(target = max rps x 60 x 0.5) and, with --endpoint, the live policy are always evaluated beside it.
Writes DIR/report.html, report.md, candidates.csv, results.csv, recommended.policy.json (ready
for `tuner apply`), timelines/, manifest.json.
"""


def register(sub: Any) -> argparse.ArgumentParser:
    p = sub.add_parser(
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
    p.add_argument(
        "--force",
        action="store_true",
        help="replace DIR if it holds an earlier run (never one with a restore journal left)",
    )
    add_guardrail_options(p)
    add_aws_options(p)
    parser: argparse.ArgumentParser = p
    return parser


def _progress(message: str) -> None:
    print(f"tune: {message}", file=sys.stderr, flush=True)


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _out_dir(args: argparse.Namespace, now: datetime) -> Path:
    out = Path(args.out or f"reports/tune-{now:%Y%m%d-%H%M%S}")
    if out.exists() and any(out.iterdir()):
        if not args.force:
            raise ValidationError(
                f"--out must be a new or empty folder, got {out} (holds files; --force replaces)"
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
    for spec in args.profile:
        words += ["--profile", spec]
    for flag in (
        "capacity",
        "slo_p99_ms",
        "max_error_rate",
        "max_slo_violation",
        "margin",
        "grid",
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


def _versions() -> dict[str, str]:
    from tuner import __version__

    out = {"tuner": __version__, "python": platform.python_version()}
    for dist in ("numpy", "pandas", "matplotlib", "boto3"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = "not installed"
    return out


def run(args: argparse.Namespace) -> int:
    from tuner.model.capacity import Capacity
    from tuner.policy.policy import DEFAULT_POLICY_NAME, ScalingPolicy
    from tuner.policy.resource import Resource
    from tuner.tune.recommend import recommend, score
    from tuner.tune.search import Grid, Objective, Settings, evaluate

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
    guardrails = guardrails_from(args)  # checked before simulating, like every flag
    if args.live and not args.dry_run:
        from tuner.live.trial import session_endpoint_url

        check_can_confirm(yes=args.yes, endpoint_url=session_endpoint_url(aws_session(args)))
    settings = Settings(
        seeds=tuple(range(args.seeds)),
        boot_s=args.boot_s,
        metric_lag_s=args.metric_lag_s,
        boot_jitter_s=args.boot_jitter_s,
    )
    loaded = [resolve_profile(spec) for spec in args.profile]
    profiles = [p for p, _ in loaded]
    names = [p.name for p in profiles]
    if len(set(names)) != len(names):
        raise ValidationError(f"--profile names must be unique, got {names}")
    capacity = Capacity.load(args.capacity) if args.capacity else Capacity.default()
    grid = Grid.load(args.grid) if args.grid else Grid()
    out = _out_dir(args, now)

    levels, high = grid.capacity_bounds(profiles, capacity.max_rps_per_instance)
    mins, maxes = grid.min_capacities or levels, grid.max_capacities or (high,)
    policies = grid.candidates(profiles, capacity.max_rps_per_instance)
    # The rule of thumb gets the grid's lowest Min and highest Max: only its target is AWS's.
    rule = ScalingPolicy.aws_rule_of_thumb(
        capacity.max_rps_per_instance,
        min_capacity=min(mins),
        max_capacity=max(max(maxes), min(mins)),
    )
    current = None
    current_note = ""
    if args.endpoint:
        from tuner.aws import AutoScaling

        resource = Resource.for_variant(args.endpoint, args.variant)
        current = AutoScaling(session=aws_session(args)).read_policy(resource)
        _progress(f"current policy of {resource}: {current.label if current else 'none'}")
        if current is not None:
            current_note = _unmodelled(current, profiles[0], capacity)
            if current_note:
                _progress(f"the current policy is left out: {current_note}")
                current = None
    by_label = {p.label: p for p in policies}
    for extra in (rule, current):
        if extra is not None:
            by_label.setdefault(extra.label, extra)
    policies = list(by_label.values())
    _progress(
        f"{len(policies)} candidates x {len(profiles)} profiles x {args.seeds} seeds "
        f"(Min {'/'.join(map(str, mins))}, Max {'/'.join(map(str, maxes))})"
    )
    results = evaluate(profiles, policies, capacity, objective, settings, _progress)
    table = score(
        results,
        policies,
        objective,
        rule_of_thumb=rule.label,
        current=current.label if current else None,
    )
    recommendation = recommend(table, results, objective)
    ranked = list(table["candidate"])
    top = ranked[: args.top] if args.live else []
    shown = [
        recommendation.label,
        *recommendation.alternatives,
        rule.label,
        *([current.label] if current else []),
        *top,
    ]
    shown = list(dict.fromkeys(shown))
    timelines = _timelines(profiles, policies, shown, capacity, objective, settings)

    best = by_label[recommendation.label]
    # Keep the live policy's name so `tuner apply` replaces it instead of adding a second one.
    recommended = best.replace(name=current.name if current else DEFAULT_POLICY_NAME)
    manifest = _manifest(
        args,
        now,
        out,
        loaded,
        capacity,
        grid,
        objective,
        settings,
        candidates=len(policies),
        mins=mins,
        maxes=maxes,
        current=current,
        current_note=current_note,
    )
    from tuner.report.render import write_report, write_run
    from tuner.tune.run import Run

    run_data = Run(
        path=out,
        manifest=manifest,
        candidates=table,
        results=results,
        recommendation=recommendation,
        recommended=recommended,
        timelines=timelines,
    )
    write_run(run_data)
    try:
        if args.live and args.dry_run:
            _progress(f"dry run: no live trial of {', '.join(top)} on {args.endpoint}")
        elif args.live:
            from tuner.live.trial import run_trials, session_endpoint_url

            confirm(
                [f"live trials of {', '.join(top)} on {args.endpoint}/{args.variant}"],
                yes=args.yes,
                endpoint_url=session_endpoint_url(aws_session(args)),
            )

            _progress(f"live trials of {', '.join(top)} on {args.endpoint}")
            run_trials(
                out,
                candidates=[by_label[label] for label in top],
                profiles=[_toml_for(path, out) for _, path in loaded],
                endpoint=args.endpoint,
                variant=args.variant,
                session=aws_session(args),
                guardrails=guardrails,
                log=_progress,
            )
    finally:
        # A failed or interrupted trial still leaves the simulation's report (and any finished
        # trials) on disk; `tuner report DIR` re-renders once more trials are there.
        _progress("rendering the report")
        html_path, _ = write_report(out)
    row = table.iloc[0]
    verdict = "meets" if recommendation.meets_objective else "does NOT meet"
    print(
        f"recommended: {recommendation.label} ({verdict} the objective), "
        f"${row['monthly_cost_usd']:,.0f}/month"
    )
    print(f"policy:      {out / 'recommended.policy.json'}")
    print(f"report:      {html_path}")
    return 0


def _manifest(
    args: argparse.Namespace,
    now: datetime,
    out: Path,
    loaded: list[tuple[Any, Path]],
    capacity: Any,
    grid: Any,
    objective: Any,
    settings: Any,
    *,
    candidates: int,
    mins: tuple[int, ...],
    maxes: tuple[int, ...],
    current: Any,
    current_note: str,
) -> dict[str, Any]:
    """What the run used and how: inputs with hashes, grid, objective, versions, command line."""
    return {
        "run_id": out.name,
        "created": now.isoformat().replace("+00:00", "Z"),
        "command": _command_line(args),
        "out": str(out),
        "profiles": [
            {
                "name": p.name,
                "path": str(path),
                "sha256": _sha256(path),
                "duration_s": p.duration_s,
                "folder": _folder(p.name),
            }
            for p, path in loaded
        ],
        "capacity": {
            "path": args.capacity or "default",
            "sha256": _sha256(Path(args.capacity)) if args.capacity else "",
            **capacity.to_dict(),
        },
        "grid": {
            "path": args.grid,
            "sha256": _sha256(Path(args.grid)) if args.grid else "",
            "candidates": candidates,
            "min_capacities_used": list(mins),
            "max_capacities_used": list(maxes),
            **grid.to_dict(),
        },
        "objective": {
            "slo_p99_ms": objective.slo_p99_ms,
            "max_error_rate": objective.max_error_rate,
            "max_slo_violation": objective.max_slo_violation,
            "margin": objective.margin,
        },
        "simulation": {
            "seeds": list(settings.seeds),
            "boot_s": settings.boot_s,
            "metric_lag_s": settings.metric_lag_s,
            "boot_jitter_s": settings.boot_jitter_s,
            "timeline_seed": settings.seeds[0],
            "monthly_cost": "mean billed instances over the profile x 730 h x "
            "hourly_usd; mean over profiles",
        },
        "endpoint": args.endpoint,
        "variant": args.variant if args.endpoint else None,
        "current_policy": current.to_dict() if current else None,
        "current_policy_note": current_note or None,
        "versions": _versions(),
    }


def _unmodelled(policy: Any, profile: Any, capacity: Any) -> str:
    """Why the simulator cannot model ``policy`` (e.g. a customized metric), or ""."""
    from tuner.errors import PolicyError
    from tuner.model.simulator import simulate

    try:
        simulate(profile, [policy], capacity)
    except PolicyError as e:
        return str(e)
    return ""


def _toml_for(path: Path, out: Path) -> Path:
    """A profile file the trial can load: the TOML itself, or a replay TOML for a bare CSV."""
    if path.suffix.lower() != ".csv":
        return path
    from tuner.report.render import write_replay_profile

    return write_replay_profile(out, path)


def _folder(name: str) -> str:
    from tuner.tune.run import folder_name

    return folder_name(name)


def _timelines(
    profiles: list[Any],
    policies: list[Any],
    shown: list[str],
    capacity: Any,
    objective: Any,
    settings: Any,
) -> dict[str, dict[str, Any]]:
    """Timelines of the shown candidates on every profile, first seed.

    Only the shown candidates are simulated again: a candidate's result does not depend on the
    others simulated beside it (boot jitter is shared per period), so these match results.csv.
    """
    from tuner.tune.search import simulate_candidates

    by_label = {p.label: p for p in policies}
    chosen = [by_label[label] for label in shown]
    out: dict[str, dict[str, Any]] = {}
    for profile in profiles:
        result = simulate_candidates(
            profile, chosen, capacity, objective, settings, settings.seeds[0]
        )
        out[profile.name] = {label: result.timeline(i) for i, label in enumerate(shown)}
    return out
