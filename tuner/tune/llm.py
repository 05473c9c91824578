"""Tuning an LLM's inference component: copies, TTFT and ITL objectives, and scale to zero.

``tune(profiles, objective, capacity=LlmCapacity(...))`` comes here (:func:`tune_llm`). The grid
is target tracking on ``SageMakerInferenceComponentConcurrentRequestsPerCopyHighResolution``:
TargetValues as fractions of the copy's concurrency limit (or the grid's ``target_values``,
sequences in flight per copy), cooldowns, MinCopyCount levels from demand percentiles plus 0,
MaxCopyCount from peak demand x headroom. A MinCopyCount-0 candidate carries AWS's pattern for
scaling out from zero: a step policy (ChangeInCapacity +1) whose alarm fires on one
``NoCapacityInvocationFailures`` in a minute (Sum, Period 60); target tracking scales in to zero.
Candidates are simulated by :mod:`tuner.model.copies` and ranked by
:func:`tuner.tune.recommend.score` as any other: the cheapest that meets the objective wins, and
at equal cost the candidate without a step policy ranks first, so zero is chosen only where its
idle periods pay for themselves at the same objective.

Mean prompt and output tokens come from the capacity file unless a profile exposes
``mean_prompt_tokens`` / ``mean_output_tokens`` (a token trace), per profile.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd

from tuner.errors import ValidationError
from tuner.model.copies import CopiesResult, simulate_copies, steady_copies
from tuner.model.llm_capacity import LlmCapacity
from tuner.model.settings import SimulationSettings
from tuner.policy.alarm import Comparison, StepAlarm
from tuner.policy.policy import ScalingPolicy
from tuner.policy.resource import ResourceKind
from tuner.policy.step import AdjustmentType, MetricAggregation, StepAdjustment, StepScalingPolicy
from tuner.policy.tracking import DEFAULT_POLICY_NAME, MetricType
from tuner.profiles.profile import Profile
from tuner.tune.grid import Grid
from tuner.tune.pipeline import Tuning
from tuner.tune.recommend import Recommendation, recommend, score
from tuner.tune.search import Objective, results_table

FROM_ZERO = "scale-from-zero"
LLM_GRID = Grid(
    target_fractions=(0.25, 0.4, 0.5, 0.6, 0.75, 0.9, 1.0),
    scale_out_cooldowns_s=(0, 60, 300),
    scale_in_cooldowns_s=(300, 900, 1800),
)
"""The default grid for an LLM: target fractions of the concurrency limit per copy."""
LLM_COLUMNS = {
    "ttft_p99_ms": "max",
    "itl_p99_ms": "max",
    "no_capacity_failures": "mean",
    "zero_copy_hours": "mean",
    "cold_starts": "mean",
    "mean_copies": "mean",
}
"""Columns :func:`tune_llm` adds to the candidates table (aggregate over profiles x seeds)."""


def from_zero_step(cooldown_s: int = 300) -> StepScalingPolicy:
    """AWS's scale-out-from-zero step policy: +1 copy on a NoCapacityInvocationFailures alarm.

    The cooldown (300 s) starts when the new copy serves; it keeps the failures of the minute
    before it served, visible a metric delay later, from adding a second copy.
    """
    return StepScalingPolicy(
        name=FROM_ZERO,
        alarm=StepAlarm(
            metric_name="NoCapacityInvocationFailures",
            statistic="Sum",
            period_s=60,
            evaluation_periods=1,
            datapoints_to_alarm=1,
            threshold=1,
            comparison=Comparison.GREATER_OR_EQUAL,
        ),
        steps=(StepAdjustment(1, 0, None),),
        adjustment_type=AdjustmentType.CHANGE_IN_CAPACITY,
        metric_aggregation=MetricAggregation.MAXIMUM,
        cooldown_s=cooldown_s,
    )


def llm_objective(
    capacity: LlmCapacity,
    *,
    max_error_rate: float,
    slo_ttft_p99_ms: float | None = None,
    slo_itl_p99_ms: float | None = None,
    max_slo_violation: float = 0.01,
    margin: float = 0.8,
) -> Objective:
    """The objective of an LLM endpoint; TTFT/ITL default to the copy's p99s at its limit.

    ``slo_p99_ms`` carries the TTFT objective too (the latency the tables and plots show).
    """
    ttft = capacity.ttft_p99_at_max_ms if slo_ttft_p99_ms is None else slo_ttft_p99_ms
    itl = capacity.itl_p99_at_max_ms if slo_itl_p99_ms is None else slo_itl_p99_ms
    return Objective(
        slo_p99_ms=ttft,
        max_error_rate=max_error_rate,
        max_slo_violation=max_slo_violation,
        margin=margin,
        slo_ttft_p99_ms=ttft,
        slo_itl_p99_ms=itl,
    )


def _for_profile(capacity: LlmCapacity, profile: object) -> LlmCapacity:
    return capacity.with_tokens(
        getattr(profile, "mean_prompt_tokens", None), getattr(profile, "mean_output_tokens", None)
    )


def copy_policy(
    target: float,
    min_copies: int,
    max_copies: int,
    *,
    scale_out_cooldown_s: int = 300,
    scale_in_cooldown_s: int = 300,
    from_zero_cooldown_s: int = 300,
    name: str = DEFAULT_POLICY_NAME,
) -> ScalingPolicy:
    """Target tracking on ConcurrentRequestsPerCopy; at MinCopyCount 0 with the from-zero step."""
    return ScalingPolicy(
        min_capacity=min_copies,
        max_capacity=max_copies,
        target_value=target,
        metric_type=MetricType.CONCURRENT_REQUESTS_PER_COPY,
        kind=ResourceKind.INFERENCE_COMPONENT,
        scale_out_cooldown_s=scale_out_cooldown_s,
        scale_in_cooldown_s=scale_in_cooldown_s,
        step_policies=(from_zero_step(from_zero_cooldown_s),) if min_copies == 0 else (),
        name=name,
    )


def llm_candidates(
    profiles: Sequence[Profile],
    capacity: LlmCapacity,
    grid: Grid,
    *,
    zero: bool = True,
    from_zero_cooldown_s: int = 300,
    max_copies: int | None = None,
) -> tuple[list[ScalingPolicy], tuple[int, ...], tuple[int, ...]]:
    """(candidates, MinCopyCount levels, MaxCopyCount levels) of the grid for ``capacity``;
    ``max_copies`` caps MaxCopyCount (and MinCopyCount) levels."""
    rate = min(_for_profile(capacity, p).max_rps_per_copy for p in profiles)
    levels, high = grid.capacity_bounds(profiles, rate)
    mins = tuple(sorted(({0} if zero else set()) | set(grid.min_capacities or levels)))
    maxes = tuple(grid.max_capacities or (high,))
    if max_copies is not None:
        mins = tuple(sorted({min(m, max_copies) for m in mins}))
        maxes = tuple(sorted({min(m, max_copies) for m in maxes}))
    limit = float(capacity.max_concurrency_per_copy)
    targets = grid.target_values or tuple(round(limit * f, 3) for f in grid.target_fractions)
    out: dict[str, ScalingPolicy] = {}
    for target, mn, mx, sout, sin in itertools.product(
        targets, mins, maxes, grid.scale_out_cooldowns_s, grid.scale_in_cooldowns_s
    ):
        if mn > mx:
            continue
        p = copy_policy(
            float(target),
            int(mn),
            int(mx),
            scale_out_cooldown_s=int(sout),
            scale_in_cooldown_s=int(sin),
            from_zero_cooldown_s=from_zero_cooldown_s,
        )
        out.setdefault(p.label, p)
    if not out:
        raise ValidationError("grid: every MinCapacity exceeds every MaxCapacity")
    return list(out.values()), mins, maxes


def simulate_llm_candidates(
    profile: Profile,
    policies: Sequence[ScalingPolicy],
    capacity: LlmCapacity,
    objective: Objective,
    settings: SimulationSettings,
    seed: int,
) -> CopiesResult:
    """One simulation of every candidate on ``profile``, warm-started like a live trial."""
    cap = _for_profile(capacity, profile)
    initial = None
    if settings.warm_start:
        opening = profile.opening_rps()
        initial = np.array([steady_copies(p, cap, opening) for p in policies])
    return simulate_copies(
        profile,
        list(policies),
        cap,
        settings,
        seed=seed,
        initial_capacity=initial,
        slo_ttft_p99_ms=objective.slo_ttft_p99_ms,
        slo_itl_p99_ms=objective.slo_itl_p99_ms,
    )


def evaluate_llm(
    profiles: Sequence[Profile],
    policies: Sequence[ScalingPolicy],
    capacity: LlmCapacity,
    objective: Objective,
    settings: SimulationSettings,
    progress: Callable[[str], None] | None = None,
) -> pd.DataFrame:
    """Every candidate on every profile and seed: one row per (candidate, profile, seed)."""

    def summary_of(profile: Profile, seed: int) -> pd.DataFrame:
        return simulate_llm_candidates(
            profile, policies, capacity, objective, settings, seed
        ).summary

    return results_table(
        profiles, policies, objective, settings, summary_of, "copy policies", progress
    )


def tune_llm(
    profiles: Sequence[Profile],
    objective: Objective,
    *,
    capacity: LlmCapacity,
    settings: SimulationSettings | None = None,
    grid: Grid | None = None,
    timelines_top: int = 0,
    zero: bool = True,
    progress: Callable[[str], None] | None = None,
    max_instances: int | None = None,
    current: ScalingPolicy | None = None,
) -> Tuning:
    """Simulate the copy grid (with MinCopyCount 0 unless ``zero`` is False) and recommend;
    ``max_instances`` caps MaxCopyCount so the copies fit on that many instances.

    ``current`` (the component's live policy) is simulated beside the grid and flagged in the
    table, and the recommendation takes its name so ``tuner apply`` replaces it instead of adding
    a second target-tracking policy that would keep acting beside it."""
    settings = settings or SimulationSettings()
    grid = grid or LLM_GRID
    profiles = tuple(profiles)
    if not profiles:
        raise ValidationError("at least one profile must be given")
    if objective.slo_ttft_p99_ms is None or objective.slo_itl_p99_ms is None:
        objective = llm_objective(
            capacity,
            max_error_rate=objective.max_error_rate,
            slo_ttft_p99_ms=objective.slo_ttft_p99_ms or objective.slo_p99_ms,
            slo_itl_p99_ms=objective.slo_itl_p99_ms,
            max_slo_violation=objective.max_slo_violation,
            margin=objective.margin,
        )
    if max_instances is not None and max_instances < 1:
        raise ValidationError(f"--max-instances >= 1 must hold, got {max_instances}")
    cap = None if max_instances is None else max_instances * capacity.copies_per_instance
    policies, mins, maxes = llm_candidates(profiles, capacity, grid, zero=zero, max_copies=cap)
    positive = [m for m in mins if m > 0] or [1]
    baseline = copy_policy(
        round(capacity.max_concurrency_per_copy * 0.5, 3), min(positive), max(maxes)
    )
    by_label = {p.label: p for p in policies}
    by_label.setdefault(baseline.label, baseline)
    if current is not None:
        by_label.setdefault(current.label, current)
    policies = list(by_label.values())
    say = progress or (lambda _: None)
    say(
        f"{len(policies)} copy policies x {len(profiles)} profiles x {len(settings.seeds)} seeds "
        f"(MinCopyCount {'/'.join(map(str, mins))}, MaxCopyCount {'/'.join(map(str, maxes))})"
    )
    results = evaluate_llm(profiles, policies, capacity, objective, settings, say)
    table = score(results, policies, objective, current=current.label if current else None)
    extra = results.groupby("candidate", sort=False).agg(
        **{c: (c, how) for c, how in LLM_COLUMNS.items()}
    )
    table = table.join(extra, on="candidate")
    recommendation = recommend(table, results, objective)
    reasons = (*recommendation.reasons, *zero_reasons(table, by_label, recommendation.label))
    recommendation = Recommendation(
        label=recommendation.label,
        meets_objective=recommendation.meets_objective,
        alternatives=recommendation.alternatives,
        reasons=reasons,
    )
    shown = [recommendation.label, *recommendation.alternatives, baseline.label]
    shown += [current.label] if current else []
    shown += list(table["candidate"])[:timelines_top]
    # the best zero-copy candidate, whether chosen or not: the report weighs its idle periods
    zeros = table[table["min_capacity"] == 0]
    if len(zeros):
        shown.append(str(zeros.iloc[0]["candidate"]))
    shown = list(dict.fromkeys(shown))
    timelines: dict[str, dict[str, pd.DataFrame]] = {}
    chosen = [by_label[x] for x in shown]
    for profile in profiles:
        result = simulate_llm_candidates(
            profile, chosen, capacity, objective, settings, settings.seeds[0]
        )
        timelines[profile.name] = {p.label: result.timeline(i) for i, p in enumerate(chosen)}
    return Tuning(
        profiles=profiles,
        capacity=capacity,
        objective=objective,
        settings=settings,
        grid=grid,
        policies=by_label,
        rule_of_thumb=baseline,
        current=current,
        min_capacities=mins,
        max_capacities=maxes,
        results=results,
        candidates=table,
        recommendation=recommendation,
        recommended=by_label[recommendation.label].replace(
            name=current.name if current and current.name else DEFAULT_POLICY_NAME
        ),
        timelines=timelines,
        validation={
            "note": "Held-out validation is not run for inference components (LLM capacity)."
        },
    )


def zero_reasons(table: pd.DataFrame, by_label: dict[str, ScalingPolicy], label: str) -> list[str]:
    """Why the recommendation scales to zero, or why zero does not pay here (sentences)."""
    rows = table.set_index("candidate")
    zeros = rows[rows["min_capacity"] == 0]
    if not len(zeros):
        return []
    me = rows.loc[label]
    if me["min_capacity"] == 0:
        p = by_label[label]
        twins = rows[
            (rows["min_capacity"] > 0)
            & (rows["target_value"] == p.target_value)
            & (rows["scale_out_cooldown_s"] == p.scale_out_cooldown_s)
            & (rows["scale_in_cooldown_s"] == p.scale_in_cooldown_s)
            & (rows["max_capacity"] == p.max_capacity)
        ].sort_values("min_capacity")
        versus = ""
        if len(twins):
            twin = twins.iloc[0]
            saved = twin["monthly_cost_usd"] - me["monthly_cost_usd"]
            versus = (
                f" saves ${saved:,.0f}/month against the same policy at MinCopyCount "
                f"{int(twin['min_capacity'])} ({twin.name}),"
            )
        return [
            f"It scales to zero copies (MinCopyCount 0, target tracking scales in, the step "
            f"policy {FROM_ZERO} scales out on NoCapacityInvocationFailures): "
            f"{me['zero_copy_hours']:.2f} h at zero per run;{versus} at the price of "
            f"{me['cold_starts']:.1f} cold starts and {me['no_capacity_failures']:,.0f} requests "
            f"refused while the first copy loads (worst error rate {100 * me['error_rate']:.2f}%)."
        ]
    best = zeros.sort_values("rank").iloc[0]
    if not best["meets_objective"]:
        why = (
            f"misses the objective (worst error rate {100 * best['error_rate']:.2f}%: "
            f"{best['no_capacity_failures']:,.0f} requests refused per run while copies load "
            "after an idle period)"
        )
    else:
        why = (
            f"meets it but costs ${best['monthly_cost_usd'] - me['monthly_cost_usd']:,.0f}/month "
            "more (the idle periods are too short to pay for the copies' load time)"
        )
    return [
        f"Scaling to zero does not pay here: the best MinCopyCount-0 candidate ({best.name}) {why}."
    ]


def idle_tradeoff(table: pd.DataFrame) -> pd.DataFrame:
    """Per MinCopyCount-0 candidate: its zero-copy hours and cold-start errors against the
    monthly cost saved versus the same policy at the lowest positive MinCopyCount."""
    zeros = table[table["min_capacity"] == 0]
    keys = ["target_value", "max_capacity", "scale_out_cooldown_s", "scale_in_cooldown_s"]
    positive = table[table["min_capacity"] > 0]
    if not len(zeros) or not len(positive):
        return pd.DataFrame()
    floor = positive[positive["min_capacity"] == positive["min_capacity"].min()]
    twins = floor.set_index(keys)
    rows = []
    for _, z in zeros.sort_values("rank").iterrows():
        key = tuple(z[k] for k in keys)
        if key not in twins.index:
            continue
        t = twins.loc[key]
        t = t.iloc[0] if isinstance(t, pd.DataFrame) else t
        rows.append(
            {
                "candidate": z["candidate"],
                "versus": t["candidate"],
                "zero_copy_hours": z["zero_copy_hours"],
                "cold_starts": z["cold_starts"],
                "no_capacity_failures": z["no_capacity_failures"],
                "error_rate": z["error_rate"],
                "monthly_saving_usd": t["monthly_cost_usd"] - z["monthly_cost_usd"],
                "meets_objective": bool(z["meets_objective"]),
            }
        )
    return pd.DataFrame(rows)
