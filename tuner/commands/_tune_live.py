"""`tuner tune --live` and the profiles tune plays: ready profiles scaled to the capacity, windows
of a profile, the checks made before anything is simulated, and the trials themselves."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tuner.commands._common import PROFILES_DIR, aws_session, endpoint_clock, resolve_profile
from tuner.errors import ValidationError
from tuner.tune.run import folder_name

if TYPE_CHECKING:
    from tuner.aws import AwsSession
    from tuner.live import Guardrails
    from tuner.model import Capacity
    from tuner.policy import ScalingPolicy
    from tuner.profiles import Profile

# Per trial beyond the profile itself (virtual s): the CloudWatch settle wait (2 periods + lag);
# bringing the endpoint to its starting count adds up to one boot more.
SETTLE_S = 180.0
# Per trial (real s): Locust's start, the snapshot, the restore.
TRIAL_OVERHEAD_REAL_S = 15.0


def progress(message: str) -> None:
    print(f"tune: {message}", file=sys.stderr, flush=True)


def parse_window(text: str) -> tuple[float, float]:
    """--live-window START,LENGTH -> (start_s, length_s); START may be 0."""
    from tuner.profiles import parse_duration

    start, sep, length = text.partition(",")
    if not sep:
        raise ValidationError(f"--live-window must be START,LENGTH such as 6h,30m, got {text!r}")
    start_s = 0.0 if start.strip() in ("0", "0s", "") else parse_duration(start, "--live-window")
    return start_s, parse_duration(length, "--live-window LENGTH")


def profile_for(
    spec: str, args: argparse.Namespace, capacity: Capacity, out: Path | None
) -> tuple[Profile, Path]:
    """(Profile, its file) for --profile: a ready profile scaled by --scale-to-capacity is
    written to OUT/profiles/ (with out None: checked only, the file named is the original)."""
    profile, path = resolve_profile(spec)
    if args.scale_to_capacity is None or path.parent != PROFILES_DIR:
        return profile, path
    from tuner.profiles.window import scaled, to_toml

    factor = args.scale_to_capacity * capacity.max_rps_per_instance / profile.peak_rps
    profile = scaled(profile, factor)
    if out is None:
        progress(
            f"{profile.name}: rates x{factor:.3g} (peak {profile.peak_rps:.3g} rps = "
            f"{args.scale_to_capacity:g} instances of {capacity.max_rps_per_instance:g} rps)"
        )
        return profile, path
    scaled_path = out / "profiles" / f"{profile.name}.toml"
    scaled_path.parent.mkdir(parents=True, exist_ok=True)
    scaled_path.write_text(to_toml(profile, description=f"{spec} x{factor:.6g}"))
    return profile, scaled_path


def point_out_mismatch(profiles: Sequence[Profile], capacity: Capacity, max_instances: int) -> None:
    """A profile whose peak needs more instances than a trial may use is likely sized for
    another endpoint (the ready profiles assume ~20 rps per instance): say so."""
    for profile in profiles:
        need = profile.peak_rps / capacity.max_rps_per_instance
        if need > max_instances:
            progress(
                f"warning: {profile.name} peaks at {profile.peak_rps:.4g} rps, {need:.0f} "
                f"instances of {capacity.max_rps_per_instance:g} rps (the capacity file); is it "
                "sized for "
                "this endpoint? --scale-to-capacity N plays ready profiles at N instances' peak"
            )


def live_profile(
    spec: str,
    args: argparse.Namespace,
    capacity: Capacity,
    out: Path | None,
    window: tuple[float, float] | None,
) -> Profile:
    """A profile for the trials: the profile (scaled as tuned), cut to --live-window. The trials
    play this object; a window is also recorded in OUT/live-profiles/ (out None: checked only)."""
    profile, _ = profile_for(spec, args, capacity, out)
    if window is None:
        return profile
    from tuner.profiles.window import to_toml
    from tuner.profiles.window import window as cut

    profile = cut(profile, *window)
    if out is None:
        return profile

    target = out / "live-profiles" / f"{folder_name(profile.name)}.toml"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(to_toml(profile, description=f"{spec}, window {args.live_window}"))
    return profile


def check_live(
    args: argparse.Namespace,
    session: AwsSession | None,
    live: Sequence[Profile],
    candidates: int,
    guardrails: Guardrails,
    limit_s: float,
) -> float:
    """Every refusal of --live before anything runs: endpoint, tags, rate, duration."""
    from tuner.aws import Endpoints
    from tuner.live.trial import discover_clock
    from tuner.profiles import format_duration

    peak = max(p.peak_rps for p in live)
    if peak > guardrails.max_rps:
        raise ValidationError(
            f"live profile peak rate <= --max-rps must hold, got {peak:g} > {guardrails.max_rps:g}"
        )
    if session is not None:
        endpoints = Endpoints(session=session)
        endpoints.describe(args.endpoint).variant(args.variant)
        guardrails.check(endpoints, args.endpoint, None, peak)
        clock = endpoint_clock(session, args.endpoint, progress)
    else:
        clock = discover_clock(args.endpoint_url)
    virtual_s = candidates * sum(p.duration_s + SETTLE_S for p in live)
    real_s = virtual_s / clock.speed + candidates * len(live) * TRIAL_OVERHEAD_REAL_S
    if real_s > limit_s:
        raise ValidationError(
            f"live trials estimated <= --live-time-limit must hold, got about "
            f"{human(real_s)} > {human(limit_s)}: fewer --top, a shorter "
            "--live-profile or --live-window, or a longer limit"
        )
    where = "virtual, " if clock.speed != 1.0 else ""
    progress(
        f"live: {candidates} candidate(s) x {len(live)} profile(s) "
        f"({', '.join(f'{p.name} {format_duration(p.duration_s)}' for p in live)}): about "
        f"{human(virtual_s)} ({where}plus boots), {human(real_s)} real at "
        f"x{clock.speed:g}; limit {human(limit_s)}"
    )
    return float(real_s)


def human(seconds: float) -> str:
    """``46s``, ``16m``, ``1h06m``: a duration to read at a glance."""
    s = round(seconds)
    if s < 120:
        return f"{s}s"
    if s < 3600:
        return f"{round(s / 60)}m"
    h, m = divmod(round(s / 60), 60)
    return f"{h}h{m:02d}m"


def print_dry_run(args: argparse.Namespace, live: Sequence[Profile]) -> None:
    from tuner.commands.trial import AWS_CALLS

    print(
        f"dry run: no live trial ran; --live would make these AWS calls on {args.endpoint}/"
        f"{args.variant} per candidate ({args.top}) and profile ({len(live)}):"
    )
    for line in AWS_CALLS:
        print(f"  {line}")


def add_trials(
    args: argparse.Namespace,
    out: Path,
    capacity: Capacity,
    guardrails: Guardrails,
    window: tuple[float, float] | None,
    limit_s: float,
) -> int:
    """--live on an earlier run: trial its top candidates; the simulation is not run again."""
    from tuner.report.render import write_report
    from tuner.tune import Run

    saved = Run.load(out)
    progress(f"adding live trials to {out} (its simulation is reused; --force runs it again)")
    top = ranked_policies(saved, args.top)
    for policy in top:
        if policy.max_capacity > guardrails.max_instances:
            raise ValidationError(
                f"MaxCapacity <= --max-instances must hold, got {policy.max_capacity} > "
                f"{guardrails.max_instances} ({policy.label})"
            )
    specs = args.live_profile or [
        str(p["path"]) for p in saved.manifest.get("profiles", []) if p.get("path")
    ]
    if not specs:
        raise ValidationError(f"{out}: the run records no profile files; give --live-profile")
    live = [live_profile(spec, args, capacity, None, window) for spec in specs]
    session = None if args.dry_run else aws_session(args)
    check_live(args, session, live, len(top), guardrails, limit_s)
    live = [live_profile(spec, args, capacity, out, window) for spec in specs]
    if args.dry_run:
        print_dry_run(args, live)
        return 0
    assert session is not None
    from tuner.commands._live import confirm
    from tuner.live import session_endpoint_url

    confirm(
        [f"live trials of {', '.join(p.label for p in top)} on {args.endpoint}/{args.variant}"],
        yes=args.yes,
        endpoint_url=session_endpoint_url(session),
    )
    try:
        run_live(
            out,
            top,
            live,
            endpoint=args.endpoint,
            variant=args.variant,
            session=session,
            guardrails=guardrails,
            time_limit_s=limit_s,
        )
    finally:
        progress("rendering the report")
        html_path, _ = write_report(out)
    print(f"report:      {html_path}")
    return 0


def ranked_policies(saved: Any, top: int) -> list[ScalingPolicy]:
    """The ``top`` best candidates of a saved run, as policies (labels checked)."""
    from tuner.policy import ScalingPolicy

    table = saved.candidates.sort_values("rank")
    policies = []
    for _, row in table.head(top).iterrows():
        label = str(row["candidate"])
        if label == saved.recommendation.label:
            policy = saved.recommended
        elif row.get("role") == "current" and saved.manifest.get("current_policy"):
            policy = ScalingPolicy.from_dict(saved.manifest["current_policy"])
        else:
            policy = ScalingPolicy(
                min_capacity=int(row["min_capacity"]),
                max_capacity=int(row["max_capacity"]),
                target_value=float(row["target_value"]),
                scale_out_cooldown_s=int(row["scale_out_cooldown_s"]),
                scale_in_cooldown_s=int(row["scale_in_cooldown_s"]),
                disable_scale_in=bool(row["disable_scale_in"]),
            )
        if policy.label != label:
            raise ValidationError(
                f"{saved.path}: candidates.csv row {label!r} does not rebuild (got {policy.label})"
            )
        policies.append(policy)
    return policies


def run_live(
    out: Path,
    candidates: Sequence[ScalingPolicy],
    profiles: Sequence[Profile],
    *,
    endpoint: str,
    variant: str,
    session: AwsSession,
    guardrails: Guardrails | None = None,
    time_limit_s: float | None = None,
    log: Callable[[str], None] | None = None,
) -> list[Path]:
    """Trial each candidate on each profile, best first; none starts after the time limit."""
    from tuner.live import Guardrails, run_trials

    log = log or progress
    began = time.monotonic()
    done: list[Path] = []
    pairs = [(c, p) for c in candidates for p in profiles]
    progress(f"live trials of {', '.join(c.label for c in candidates)} on {endpoint}")
    for i, (policy, profile) in enumerate(pairs):
        elapsed = time.monotonic() - began
        if time_limit_s is not None and elapsed > time_limit_s:
            log(
                f"live time limit {human(time_limit_s)} reached after {human(elapsed)}: "
                f"{len(pairs) - i} trial(s) not started"
            )
            break
        done += run_trials(
            out,
            candidates=[policy],
            profiles=[profile],
            endpoint=endpoint,
            variant=variant,
            session=session,
            guardrails=guardrails or Guardrails(),
            log=log,
        )
    return done
