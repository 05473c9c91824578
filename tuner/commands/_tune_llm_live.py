"""``tuner tune --live`` with an LLM capacity file: trial the top candidates on the inference
component (``--endpoint`` hosts it, ``--inference-component`` names it), streaming.

Each trial starts at the copies the simulator starts with (the candidate's steady count for the
profile's opening rate), so the measured timeline lines up with the simulated one in the report.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from tuner.errors import ValidationError

if TYPE_CHECKING:
    from tuner.aws import AwsSession
    from tuner.model.llm_capacity import LlmCapacity
    from tuner.policy import ScalingPolicy
    from tuner.profiles import Profile
    from tuner.tune.pipeline import Tuning

SETTLE_S = 180.0
"""Virtual seconds per trial beyond the profile: the settle wait (2 periods + 60)."""
OVERHEAD_REAL_S = 15.0


def say(message: str) -> None:
    print(f"tune: {message}", file=sys.stderr, flush=True)


def check_llm_live(args: argparse.Namespace) -> None:
    """--live needs the endpoint and the component; --endpoint alone has no use here."""
    if args.live and not (args.endpoint and args.inference_component):
        raise ValidationError(
            "--live with an LLM capacity file needs --endpoint (the endpoint hosting the "
            "inference component) and --inference-component"
        )
    if not args.live and (args.endpoint or args.inference_component):
        raise ValidationError(
            "--endpoint / --inference-component with an LLM capacity file are for --live trials"
        )
    if args.top < 1:
        raise ValidationError(f"--top >= 1 must hold, got {args.top}")


def top_policies(tuning: Tuning, top: int) -> list[ScalingPolicy]:
    """The ``top`` best-ranked candidates (the first named as recommended.policy.json is)."""
    labels = tuning.candidates.sort_values("rank")["candidate"].head(top).tolist()
    out = []
    for label in labels:
        policy = tuning.policies[str(label)]
        if str(label) == tuning.recommendation.label:
            policy = tuning.recommended
        out.append(policy)
    return out


def trial_llm_candidates(
    args: argparse.Namespace,
    tuning: Tuning,
    profiles: list[Profile],
    capacity: LlmCapacity,
    out: Path,
    session: AwsSession,
) -> list[Path]:
    """Trial the top ``--top`` candidates on each profile (none starts after the time limit)."""
    from tuner.commands._live import guardrails_from
    from tuner.live import TrialSpec, run_trial, session_endpoint_url
    from tuner.live.streaming import LlmLoad
    from tuner.live.trial import discover_clock
    from tuner.model.copies import steady_copies
    from tuner.profiles import parse_duration
    from tuner.profiles.tokens import TokenSpec

    guardrails = guardrails_from(args)
    limit_s = parse_duration(args.live_time_limit, "--live-time-limit")
    policies = top_policies(tuning, args.top)
    for policy in policies:
        if policy.max_capacity > guardrails.max_instances:
            raise ValidationError(
                f"MaxCapacity <= --max-instances must hold, got {policy.max_capacity} > "
                f"{guardrails.max_instances} ({policy.label})"
            )
    clock = discover_clock(session_endpoint_url(session))
    virtual_s = len(policies) * sum(p.duration_s + SETTLE_S for p in profiles)
    real_s = virtual_s / clock.speed + len(policies) * len(profiles) * OVERHEAD_REAL_S
    if real_s > limit_s:
        raise ValidationError(
            f"live trials estimated <= --live-time-limit must hold, got about {real_s:.0f} s > "
            f"{limit_s:.0f} s: fewer --top, or a longer limit"
        )
    say(
        f"live: {len(policies)} candidate(s) x {len(profiles)} profile(s) on "
        f"inference-component/{args.inference_component}, about {real_s:.0f} s real at "
        f"x{clock.speed:g}"
    )
    load = LlmLoad(
        stream=True,
        inference_component=args.inference_component,
        tokens=TokenSpec(
            prompt_tokens=int(capacity.prompt_tokens), output_tokens=int(capacity.output_tokens)
        ),
    )
    began = time.monotonic()
    done: list[Path] = []
    for policy in policies:
        for profile in profiles:
            if time.monotonic() - began > limit_s:
                say("live time limit reached: the remaining trials were not started")
                return done
            start = steady_copies(policy, capacity, profile.opening_rps())
            spec = TrialSpec(
                endpoint=args.endpoint,
                policy=policy,
                profile=profile,
                start_capacity=start,
                guardrails=guardrails,
                llm=load,
            )
            done.append(run_trial(spec, out, session, log=say))
    return done
