"""The LLM paths of ``tuner tune`` and ``tuner simulate``: a capacity file with ``"kind": "llm"``.

The target is an inference component: copies of a model, tracked on
``ConcurrentRequestsPerCopy`` (10-s), with TTFT and ITL objectives and MinCopyCount 0 searched
(:mod:`tuner.tune.llm`, :mod:`tuner.model.copies`).
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tuner.commands._common import PROFILES_DIR, resolve_profile, write_simulation
from tuner.commands._tune_llm_live import check_llm_live
from tuner.errors import ValidationError

if TYPE_CHECKING:
    from tuner.model.llm_capacity import LlmCapacity
    from tuner.policy.policy import ScalingPolicy
    from tuner.profiles import Profile

_LIVE = "inference components are trialled with --live --endpoint E --inference-component IC"
_HISTORY = "a history is not held out, stressed or refined for inference components"
# flags of `tuner tune` the LLM path does not honour (yet), each refused when given; --top,
# --backtest-days, --variant and --live-time-limit only act with flags refused here or --live.
# --no-schedules is honoured: scheduled floors are never searched for copies.
NOT_FOR_LLM = (
    ("backtest", "--backtest", "a backtest fits an endpoint variant's history"),
    ("live_profile", "--live-profile", "live trials of copies play the tuned profiles"),
    ("live_window", "--live-window", "live trials of copies play the tuned profiles"),
    ("dry_run", "--dry-run", "it lists the AWS calls of a variant's --live"),
    ("step_companion", "--step-companion", "step companions are not searched for copies"),
    ("holdout", "--holdout", _HISTORY),
    ("stress_level", "--stress-level", _HISTORY),
    ("schedule_timezone", "--schedule-timezone", "scheduled floors are not searched for copies"),
)
# flags that act only with --live (the simulation itself makes no AWS call)
ONLY_LIVE = (
    ("allow_production", "--allow-production"),
    ("yes", "--yes"),
    ("region", "--region"),
    ("aws_profile", "--aws-profile"),
    ("endpoint_url", "--endpoint-url"),
)


def llm_capacity_or_none(path: str | None) -> LlmCapacity | None:
    """The LLM capacity file at ``path`` (``"kind": "llm"``), or None for any other file."""
    from tuner.model.llm_capacity import LlmCapacity, is_llm_capacity

    if path and is_llm_capacity(path):
        return LlmCapacity.load(path)
    return None


def refuse_llm_flags(args: argparse.Namespace) -> None:
    """--slo-ttft-p99-ms / --slo-itl-p99-ms need an LLM capacity file."""
    for attr, flag in (
        ("slo_ttft_p99_ms", "--slo-ttft-p99-ms"),
        ("slo_itl_p99_ms", "--slo-itl-p99-ms"),
        ("inference_component", "--inference-component"),
    ):
        if getattr(args, attr, None) is not None:
            raise ValidationError(
                f'{flag} needs --capacity naming an LLM capacity file ("kind": "llm"), '
                f"got {args.capacity or 'the default capacity'}"
            )


def _profiles(
    args: argparse.Namespace, capacity: LlmCapacity, out: Path | None
) -> list[tuple[Profile, Path]]:
    """--profile, ready profiles scaled by --scale-to-capacity N copies (written into OUT)."""
    from tuner.profiles.window import scaled, to_toml

    loaded = []
    for spec in args.profile:
        profile, path = resolve_profile(spec)
        if args.scale_to_capacity is not None and path.parent == PROFILES_DIR:
            factor = args.scale_to_capacity * capacity.max_rps_per_copy / profile.peak_rps
            profile = scaled(profile, factor)
            if out is not None:
                path = out / "profiles" / f"{profile.name}.toml"
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(to_toml(profile, description=f"{spec} x{factor:.6g}"))
        loaded.append((profile, path))
    return loaded


def run_llm_tune(
    args: argparse.Namespace,
    capacity: LlmCapacity,
    *,
    now: datetime,
    out_dir: Any,
    command: str,
) -> int:
    """``tuner tune`` with an LLM capacity file; ``out_dir(args, now)`` makes the run folder."""
    from tuner.model.settings import SimulationSettings
    from tuner.report.render import write_report
    from tuner.tune import Grid, manifest, tune, write_run
    from tuner.tune.llm import LLM_GRID, llm_objective

    for attr, flag, why in NOT_FOR_LLM:
        if getattr(args, attr, None) not in (None, False):
            raise ValidationError(f"{flag} is not available with an LLM capacity file ({why})")
    for attr, flag in ONLY_LIVE:
        if not args.live and getattr(args, attr, None) not in (None, False):
            raise ValidationError(
                f"{flag} acts only with --live with an LLM capacity file (the simulation makes "
                f"no AWS call; {_LIVE})"
            )
    check_llm_live(args)
    if not args.profile:
        raise ValidationError("--profile is required (a profile TOML, replay CSV or ready name)")
    if not 1 <= args.seeds <= 100:
        raise ValidationError(f"--seeds must be in 1..100, got {args.seeds}")
    if args.scale_to_capacity is not None and not args.scale_to_capacity > 0:
        raise ValidationError(f"--scale-to-capacity must be > 0, got {args.scale_to_capacity:g}")
    objective = llm_objective(
        capacity,
        max_error_rate=args.max_error_rate,
        slo_ttft_p99_ms=args.slo_ttft_p99_ms or args.slo_p99_ms,
        slo_itl_p99_ms=args.slo_itl_p99_ms,
        max_slo_violation=args.max_slo_violation,
        margin=args.margin,
    )
    settings = SimulationSettings(
        seeds=tuple(range(args.seeds)),
        boot_s=args.boot_s,
        metric_lag_s=60.0 if args.metric_lag_s is None else args.metric_lag_s,
        boot_jitter_s=args.boot_jitter_s,
    )
    grid = Grid.load(args.grid) if args.grid else LLM_GRID
    _profiles(args, capacity, None)  # every profile checked before any output
    out: Path = out_dir(args, now)
    loaded = _profiles(args, capacity, out)
    names = [p.name for p, _ in loaded]
    if len(set(names)) != len(names):
        raise ValidationError(f"--profile names must be unique, got {names}")

    def say(message: str) -> None:
        print(f"tune: {message}", file=sys.stderr, flush=True)

    current = None
    if args.live:  # the component's live policy: evaluated beside the grid, and it names the
        # recommendation so `tuner apply` replaces it rather than adding a second one
        from tuner.aws import AutoScaling
        from tuner.commands._common import aws_session
        from tuner.policy import Resource

        resource = Resource.for_component(args.inference_component)
        current = AutoScaling(session=aws_session(args)).read_current(resource)
        say(f"current policy of {resource}: {current.label if current else 'none'}")
    tuning = tune(
        [p for p, _ in loaded],
        objective,
        capacity=capacity,
        settings=settings,
        grid=grid,
        progress=say,
        max_instances=args.max_instances,
        current=current,
    )
    meta = manifest(
        tuning,
        out,
        profile_paths=[path for _, path in loaded],
        capacity_path=Path(args.capacity),
        grid_path=Path(args.grid) if args.grid else None,
        command=command,
        created=now,
    )
    write_run(tuning.to_run(out, meta))
    if args.live:
        from tuner.commands._common import aws_session
        from tuner.commands._tune_llm_live import trial_llm_candidates

        profiles = [p for p, _ in loaded]
        try:
            trial_llm_candidates(args, tuning, profiles, capacity, out, aws_session(args))
        finally:
            say("rendering the report")
            html_path, _ = write_report(out)
    else:
        say("rendering the report")
        html_path, _ = write_report(out)
    row = tuning.candidates.iloc[0]
    verdict = "meets" if tuning.recommendation.meets_objective else "does NOT meet"
    print(
        f"recommended: {tuning.recommendation.label} ({verdict} the objective), "
        f"${row['monthly_cost_usd']:,.0f}/month, MinCopyCount {int(row['min_capacity'])}"
    )
    print(f"policy:      {out / 'recommended.policy.json'}")
    print(f"report:      {html_path}")
    return 0


def run_llm_simulate(
    args: argparse.Namespace,
    capacity: LlmCapacity,
    groups: list[list[ScalingPolicy]],
    jsonable: Any,
) -> int:
    """``tuner simulate`` with an LLM capacity file: copies, TTFT/ITL, zero copies."""
    from tuner.model.copies import simulate_copies
    from tuner.model.scaling import step_s_for
    from tuner.model.settings import SimulationSettings
    from tuner.model.simulator import check_size
    from tuner.policy.resource import ResourceKind

    if args.scheduled:
        raise ValidationError("--scheduled is not modelled for inference components yet")
    for group in groups:
        for p in group:
            if p.kind is not ResourceKind.INFERENCE_COMPONENT:
                raise ValidationError(
                    f"--policy must scale an inference component with an LLM capacity file, "
                    f"got {p.label} for an {p.kind.noun}"
                )
    profile, _ = resolve_profile(args.profile)
    if args.initial_capacity is not None and args.initial_capacity < 0:
        raise ValidationError(f"--initial-capacity >= 0 must hold, got {args.initial_capacity}")
    check_size(
        math.ceil(profile.duration_s / step_s_for(groups)), groups, args.initial_capacity, ()
    )
    capacity = capacity.with_tokens(
        getattr(profile, "mean_prompt_tokens", None), getattr(profile, "mean_output_tokens", None)
    )
    started = time.perf_counter()
    result = simulate_copies(
        profile,
        groups,
        capacity,
        SimulationSettings(
            boot_s=args.boot_s,
            metric_lag_s=60.0 if args.metric_lag_s is None else args.metric_lag_s,
            boot_jitter_s=args.boot_jitter_s,
        ),
        seed=args.seed,
        initial_capacity=args.initial_capacity,
        slo_ttft_p99_ms=args.slo_ttft_p99_ms or args.slo_p99_ms,
        slo_itl_p99_ms=args.slo_itl_p99_ms,
    )
    out = Path(args.out)
    try:
        out.mkdir(parents=True, exist_ok=True)
        result.timeline(0).to_csv(out / "timeline.csv", index=False)
        rows = []
        for i, group in enumerate(groups):
            row = jsonable(result.summary.iloc[i].to_dict())
            row.update(
                profile=profile.name,
                seed=args.seed,
                period_s=result.period_s,
                slo_ttft_p99_ms=result.slo_ttft_p99_ms,
                slo_itl_p99_ms=result.slo_itl_p99_ms,
                policy=group[0].to_dict(),
            )
            rows.append(row)
        write_simulation(out, rows[0], result, many=len(groups) > 1)
    except OSError as e:
        raise ValidationError(f"--out {out}: cannot write ({e.strerror})") from e
    print(f"done in {time.perf_counter() - started:.2f} s; wrote {out}/", file=sys.stderr)
    for row in rows:
        print(
            f"{row['label']}: {row['instance_hours']:.2f} instance-h (${row['cost_usd']:.2f}), "
            f"errors {row['error_rate']:.3%} ({row['no_capacity_failures']:.0f} at zero copies), "
            f"SLO violations {row['slo_violation_rate']:.3%}, TTFT p99 {row['ttft_p99_ms']:.0f} "
            f"ms, ITL p99 {row['itl_p99_ms']:.0f} ms"
        )
    return 0
