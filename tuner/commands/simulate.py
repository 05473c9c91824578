"""tuner simulate: replay one traffic profile against a policy (or several), write the timeline."""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path
from typing import Any

from tuner.commands._common import resolve_profile, write_simulation
from tuner.commands._tune_llm import llm_capacity_or_none, refuse_llm_flags, run_llm_simulate
from tuner.errors import ValidationError

EPILOG = """\
examples:
  tuner simulate --profile flash-spike --policy my.policy.json --out reports/sim
  tuner simulate --profile launch.toml --policy a.policy.json --policy b.policy.json \\
      --capacity capacity.json --boot-s 420 --metric-lag-s 120 --seed 3 --out reports/ab
  tuner simulate --profile diurnal-24h --policy inv.policy.json+conc.policy.json \\
      --scheduled 7h:4: --scheduled 21h:1: --out reports/day

--policy A+B puts several policies on one target (the same MinCapacity/MaxCapacity): any of them
may scale out, the largest wins; scale-in needs all that allow it to agree. --scheduled AT:MIN:MAX
is a scheduled action (PutScheduledAction) at AT from the profile start ("0", "90m", "7h"); an
empty MIN or MAX keeps the current value. Each applies to every --policy, as on one target.

--profile takes a profile TOML, a replay CSV (timestamp,invocations) or the name of a ready
profile in locustfiles/profiles/. Writes DIR/timeline.csv (one row per metric period: t_s,
demand_rps, invocations, instances_in_service, desired_capacity, invocations_per_instance,
alarm_high, alarm_low, errors, p99_latency_ms, then p50_latency_ms, served, queued, updating,
concurrency_per_instance) and DIR/summary.json (instance_hours, cost_usd, error_rate,
slo_violation_rate, scale_out_events, scale_in_events, underprovisioned_minutes, recovery_s, ...).
With several --policy, timeline.csv and summary.json describe the first, DIR/summary.csv has one
row per policy and DIR/timelines/<label>.csv holds each timeline.

With --capacity naming an LLM capacity file ("kind": "llm", see README "LLM endpoints") the
policies scale an inference component's copies: the timeline adds TTFT/ITL p50 and p99 per
10-s period and requests refused at zero copies; --slo-ttft-p99-ms and --slo-itl-p99-ms set the
objectives, --boot-s replaces the copy load time.

The model is reference/target-tracking.md: alarms of 3 and 15 datapoints (10-s metrics: 3 and
90), metric lag, boot delay with the endpoint Updating, cooldowns, Min/Max. Step policies in the
file's StepScalingPolicies run on their own alarms, beside target tracking or without it (then
alarm_high and alarm_low stay 0). Instances are billed from launch, so booting ones count in
instance_hours.
"""


def register(sub: Any) -> argparse.ArgumentParser:
    p: argparse.ArgumentParser = sub.add_parser(
        "simulate",
        help="replay a traffic profile against a scaling policy, write timeline and summary",
        description="Simulate how Application Auto Scaling would size the endpoint under a\n"
        "traffic profile with the given scaling policy (target tracking, step policies or both):\n"
        "instances, alarms, queueing, errors, latency and cost, period by period, in a fraction\n"
        "of a second.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--profile",
        required=True,
        metavar="P",
        help="traffic profile: TOML, replay CSV or ready profile name",
    )
    p.add_argument(
        "--policy",
        action="append",
        required=True,
        metavar="FILE",
        help="policy file (*.policy.json, AWS field names); repeat to compare; "
        "A+B for several policies on one target",
    )
    p.add_argument(
        "--scheduled",
        action="append",
        default=[],
        metavar="AT:MIN:MAX",
        help="scheduled action: new MinCapacity/MaxCapacity from AT (e.g. 7h:4:20, 21h:1:); "
        "repeatable",
    )
    p.add_argument(
        "--capacity",
        metavar="FILE",
        help="capacity.json from `tuner calibrate` (default: DESIGN.md's example, "
        "ml.m5.xlarge at 20 rps per instance)",
    )
    p.add_argument(
        "--boot-s",
        type=float,
        metavar="S",
        help="seconds from scale-out to instances in service (default: the capacity file's boot_s)",
    )
    p.add_argument(
        "--boot-jitter-s",
        type=float,
        default=0.0,
        metavar="S",
        help="each scale-out boots in boot-s +- uniform jitter, seeded (default: 0)",
    )
    p.add_argument(
        "--metric-lag-s",
        type=float,
        metavar="S",
        help="CloudWatch publishing and evaluation delay of each datapoint (default: the "
        "capacity file's metric_lag_s from `tuner backtest`, else 60; 0 gives the reference's "
        "exact hand-checked timings)",
    )
    p.add_argument(
        "--seed",
        type=int,
        default=0,
        help="seed of the profile's noise and the boot jitter (default: 0)",
    )
    p.add_argument(
        "--slo-p99-ms",
        type=float,
        metavar="MS",
        help="latency objective for slo_violation_rate (default: the capacity's p99 "
        "at max_rps_per_instance)",
    )
    p.add_argument(
        "--slo-ttft-p99-ms",
        type=float,
        metavar="MS",
        help='LLM capacity file ("kind": "llm"): TTFT objective (default: --slo-p99-ms, else '
        "the copy's TTFT p99 at its concurrency limit)",
    )
    p.add_argument(
        "--slo-itl-p99-ms",
        type=float,
        metavar="MS",
        help="LLM capacity file: ITL objective (default: the copy's ITL p99 at its limit)",
    )
    p.add_argument(
        "--initial-capacity",
        type=int,
        metavar="N",
        help="instances at the start (default: MinCapacity)",
    )
    p.add_argument("--out", required=True, metavar="DIR", help="output directory")
    return p


def _jsonable(row: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in row.items():
        if hasattr(value, "item"):
            value = value.item()
        if isinstance(value, float) and not math.isfinite(value):
            value = None
        out[key] = value
    return out


def parse_scheduled(text: str) -> Any:
    """``AT:MIN:MAX`` -> ScheduledAction; AT a duration from the profile start, MIN/MAX optional."""
    from tuner.model.scaling import ScheduledAction
    from tuner.profiles.replay import parse_duration

    parts = text.split(":")
    if len(parts) != 3:
        raise ValidationError(
            f"--scheduled must be AT:MIN:MAX (e.g. 7h:4:20 or 21h:1:), got {text!r}"
        )
    at, lo, hi = (part.strip() for part in parts)
    at_s = 0.0 if at in ("0", "0s") else parse_duration(at, "--scheduled AT")
    bounds: list[int | None] = []
    for name, value in (("MIN", lo), ("MAX", hi)):
        if not value:
            bounds.append(None)
        elif value.isdigit():
            bounds.append(int(value))
        else:
            raise ValidationError(
                f"--scheduled {name} must be a whole number of instances or empty, got {value!r}"
            )
    if bounds[0] is not None and bounds[1] is not None and bounds[0] > bounds[1]:
        raise ValidationError(
            f"--scheduled MIN <= MAX must hold, got {bounds[0]} > {bounds[1]} in {text!r}"
        )
    return ScheduledAction(at_s, bounds[0], bounds[1])


def run(args: argparse.Namespace) -> int:
    from tuner.model.capacity import Capacity
    from tuner.model.settings import SimulationSettings
    from tuner.model.simulator import simulate
    from tuner.model.timetable import candidate_actions
    from tuner.policy.policy import ScalingPolicy

    groups = [
        [ScalingPolicy.load(path) for path in ([arg] if Path(arg).is_file() else arg.split("+"))]
        for arg in args.policy
    ]
    llm = llm_capacity_or_none(args.capacity)
    if llm is not None:
        return run_llm_simulate(args, llm, groups, _jsonable)
    refuse_llm_flags(args)
    scheduled = [parse_scheduled(text) for text in args.scheduled]
    capacity = Capacity.load(args.capacity) if args.capacity else Capacity.default()
    if args.metric_lag_s is None:
        args.metric_lag_s = 60.0 if capacity.metric_lag_s is None else capacity.metric_lag_s
    profile, _ = resolve_profile(args.profile)
    if args.initial_capacity is not None and args.initial_capacity < 0:
        raise ValidationError(f"--initial-capacity >= 0 must hold, got {args.initial_capacity}")
    from tuner.model.scaling import step_s_for
    from tuner.model.simulator import check_size

    periods = math.ceil(profile.duration_s / step_s_for(groups))
    check_size(periods, groups, args.initial_capacity, scheduled)
    out = Path(args.out)
    started = time.perf_counter()
    print(
        f"simulating {len(groups)} candidate{'' if len(groups) == 1 else 's'} on "
        f"{profile.name} ({profile.duration_s / 3600:.2f} h)...",
        file=sys.stderr,
    )
    # a policy file's ScheduledActions (the target's) run on the profile's clock
    targets = [next((p for p in g if p.scheduled_actions), g[0]) for g in groups]
    from_files = candidate_actions(profile, targets)
    result = simulate(
        profile,
        groups,
        capacity,
        seed=args.seed,
        initial_capacity=args.initial_capacity,
        scheduled=[*scheduled, *from_files],
        settings=SimulationSettings(
            boot_s=args.boot_s,
            metric_lag_s=args.metric_lag_s,
            slo_p99_ms=args.slo_p99_ms,
            boot_jitter_s=args.boot_jitter_s,
        ),
    )
    try:
        out.mkdir(parents=True, exist_ok=True)
        result.timeline(0).to_csv(out / "timeline.csv", index=False)
        rows = []
        for i, group in enumerate(groups):
            row = _jsonable(result.summary.iloc[i].to_dict())
            row.update(
                profile=profile.name,
                seed=args.seed,
                period_s=result.period_s,
                slo_p99_ms=result.slo_p99_ms,
                boot_s=capacity.boot_s if args.boot_s is None else args.boot_s,
                metric_lag_s=args.metric_lag_s,
                policy=group[0].to_dict(),
            )
            if len(group) > 1:
                row["policies"] = [p.to_dict() for p in group]
            if scheduled:
                row["scheduled"] = [
                    {"at_s": a.at_s, "MinCapacity": a.min_capacity, "MaxCapacity": a.max_capacity}
                    for a in scheduled
                ]
            rows.append(row)
        write_simulation(out, rows[0], result, many=len(groups) > 1)
    except OSError as e:
        raise ValidationError(f"--out {out}: cannot write ({e.strerror})") from e
    print(f"done in {time.perf_counter() - started:.2f} s; wrote {out}/", file=sys.stderr)
    for row in rows:
        print(
            f"{row['label']}: {row['instance_hours']:.2f} instance-h (${row['cost_usd']:.2f}), "
            f"errors {row['error_rate']:.3%}, SLO violations {row['slo_violation_rate']:.3%}, "
            f"{row['scale_out_events']} scale-outs / {row['scale_in_events']} scale-ins"
        )
    return 0
