"""Ranking simulated candidates: the Pareto front, the score table and the recommendation.

``score`` aggregates :func:`tuner.tune.search.evaluate`'s rows per candidate and ranks them;
``recommend`` picks rank 1 and says why in sentences. A candidate's monthly cost is the mean over
profiles (each weighted equally) of its mean over seeds; SLO violation, error rate, latency and
recovery are the worst profile and seed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from tuner.policy.policy import ScalingPolicy
from tuner.tune.search import Objective

__all__ = [
    "Recommendation",
    "nearest_alternatives",
    "pareto_mask",
    "recommend",
    "score",
]
ROLES = ("recommended", "current", "rule-of-thumb", "candidate")
"""Values of the ``role`` column, in precedence order when one policy plays several."""


def pareto_mask(cost: Sequence[float], violation: Sequence[float]) -> np.ndarray:
    """True where no other point is at least as good on both and better on one (minimising)."""
    c = np.asarray(cost, dtype=float)
    v = np.asarray(violation, dtype=float)
    le = (c[None, :] <= c[:, None]) & (v[None, :] <= v[:, None])
    lt = (c[None, :] < c[:, None]) | (v[None, :] < v[:, None])
    return np.asarray(~np.any(le & lt, axis=1))


_POLICY_COLUMNS = {
    "min_capacity": "min_capacity",
    "max_capacity": "max_capacity",
    "target_value": "target_value",
    "scale_out_cooldown_s": "scale_out_cooldown_s",
    "scale_in_cooldown_s": "scale_in_cooldown_s",
    "disable_scale_in": "disable_scale_in",
}


def score(
    results: pd.DataFrame,
    policies: Sequence[ScalingPolicy],
    objective: Objective,
    *,
    rule_of_thumb: str | None = None,
    current: str | None = None,
    cost_profiles: Sequence[str] | None = None,
) -> pd.DataFrame:
    """One row per candidate: policy fields, aggregates over profiles x seeds, flags and rank.

    Rank 1 is the recommendation: the cheapest candidate meeting the objective on every run; when
    none does, the one that misses it by the smallest factor. ``cost_profiles`` limits the
    monthly cost to those profiles (a history's parts; stress scenarios are judged, not priced).
    """
    priced = results if cost_profiles is None else results[results["profile"].isin(cost_profiles)]
    per_profile = priced.groupby(["candidate", "profile"], sort=False).agg(
        monthly_cost_usd=("monthly_cost_usd", "mean")
    )
    g = results.groupby("candidate", sort=False)
    table = pd.DataFrame(
        {
            "monthly_cost_usd": per_profile.groupby(level=0, sort=False)["monthly_cost_usd"].mean(),
            "mean_instances": priced.groupby("candidate", sort=False)["mean_instances"].mean(),
            "slo_violation_rate": g["slo_violation_rate"].max(),
            "error_rate": g["error_rate"].max(),
            "p99_latency_ms": g["p99_latency_ms"].max(),
            "scale_out_events": g["scale_out_events"].mean(),
            "scale_in_events": g["scale_in_events"].mean(),
            "recovery_s": g["recovery_s"].max(),
            "meets_objective": g["meets_objective"].all(),
        }
    )
    by_label = {p.label: p for p in policies}
    table = table.loc[[p.label for p in policies if p.label in table.index]]
    for column, attr in _POLICY_COLUMNS.items():
        table[column] = [getattr(by_label[label], attr) for label in table.index]
    table["metric_type"] = [by_label[label].metric_type or "custom" for label in table.index]
    table["is_rule_of_thumb"] = table.index == rule_of_thumb
    table["is_current"] = table.index == current
    table["pareto"] = pareto_mask(table["monthly_cost_usd"], table["slo_violation_rate"])
    excess = np.maximum(
        table["slo_violation_rate"] / objective.violation_bound,
        table["error_rate"] / objective.error_bound,
    )
    order = pd.DataFrame(
        {
            "miss": ~table["meets_objective"],
            "excess": np.where(table["meets_objective"], 0.0, excess),
            "cost": table["monthly_cost_usd"].round(6),
            # at the same cost target tracking alone ranks first: a step companion must be cheaper
            "steps": [len(by_label[label].step_policies) for label in table.index],
            "violation": table["slo_violation_rate"],
            "churn": table["scale_out_events"] + table["scale_in_events"],
            "label": table.index,
        },
        index=table.index,
    ).sort_values(["miss", "excess", "cost", "steps", "violation", "churn", "label"])
    table = table.loc[order.index]
    table["rank"] = np.arange(1, len(table) + 1)
    table["role"] = np.select(
        [table["rank"] == 1, table["is_current"], table["is_rule_of_thumb"]],
        ["recommended", "current", "rule-of-thumb"],
        "candidate",
    )
    table.index.name = "candidate"
    front = ["role", "rank", *_POLICY_COLUMNS, "metric_type"]
    return table[front + [c for c in table.columns if c not in front]].reset_index()


def nearest_alternatives(table: pd.DataFrame, label: str, count: int = 2) -> list[str]:
    """The neighbours in target value with the same other settings, then the runners-up."""
    rows = table.set_index("candidate")
    me = rows.loc[label]
    same = rows[
        (rows["min_capacity"] == me["min_capacity"])
        & (rows["max_capacity"] == me["max_capacity"])
        & (rows["scale_out_cooldown_s"] == me["scale_out_cooldown_s"])
        & (rows["scale_in_cooldown_s"] == me["scale_in_cooldown_s"])
        & (rows["disable_scale_in"] == me["disable_scale_in"])
    ]
    picks: list[str] = []
    higher = same[same["target_value"] > me["target_value"]]["target_value"]
    lower = same[same["target_value"] < me["target_value"]]["target_value"]
    if not higher.empty:
        picks.append(str(higher.idxmin()))
    if not lower.empty:
        picks.append(str(lower.idxmax()))
    for other in rows.sort_values("rank").index:
        if len(picks) >= count:
            break
        if other != label and other not in picks:
            picks.append(str(other))
    return picks[:count]


@dataclass(frozen=True, kw_only=True)
class Recommendation:
    """The chosen candidate, whether it meets the objective, and why, in sentences."""

    label: str
    meets_objective: bool
    alternatives: tuple[str, ...]
    reasons: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        return {
            "label": self.label,
            "meets_objective": self.meets_objective,
            "alternatives": list(self.alternatives),
            "reasons": list(self.reasons),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Recommendation:
        return cls(
            label=str(data["label"]),
            meets_objective=bool(data["meets_objective"]),
            alternatives=tuple(data.get("alternatives", ())),
            reasons=tuple(data.get("reasons", ())),
        )


def _pct(x: float) -> str:
    return f"{100 * x:.2f}%"


def recommend(table: pd.DataFrame, results: pd.DataFrame, objective: Objective) -> Recommendation:
    """Explain rank 1 against the objective, the baselines and its nearest alternatives."""
    rows = table.set_index("candidate")
    label = str(rows.index[rows["rank"] == 1][0])
    me = rows.loc[label]
    prof = results.groupby(["candidate", "profile"], sort=False).agg(
        cost=("monthly_cost_usd", "mean"),
        violation=("slo_violation_rate", "max"),
        error=("error_rate", "max"),
    )
    bounds = (
        f"SLO violation ≤ {_pct(objective.violation_bound)} and error rate ≤ "
        f"{_pct(objective.error_bound)} on every profile and seed (bounds "
        f"{_pct(objective.max_slo_violation)} and {_pct(objective.max_error_rate)} x margin "
        f"{objective.margin:g})"
    )
    meeting = int(rows["meets_objective"].sum())
    if me["meets_objective"]:
        reasons = [
            f"Cheapest of the {meeting} of {len(rows)} candidates that meet the objective: "
            f"{bounds}; ${me['monthly_cost_usd']:,.0f}/month."
        ]
    else:
        reasons = [
            f"No candidate meets the objective ({bounds}); this one misses it by the least "
            f"(worst SLO violation {_pct(me['slo_violation_rate'])}, worst error rate "
            f"{_pct(me['error_rate'])}). Raise MaxCapacity, shorten boot time, or relax the SLO."
        ]

    same = rows[
        (rows["min_capacity"] == me["min_capacity"]) & (rows["max_capacity"] == me["max_capacity"])
    ]
    if me["meets_objective"] and len(same) > 1 and me["target_value"] >= same["target_value"].max():
        reasons.append(
            f"Its TargetValue {me['target_value']:g} is the highest of the grid: a higher target "
            "may be cheaper still; widen the grid (target_fractions or target_values) to see."
        )
    floor = rows["min_capacity"].min()
    if me["meets_objective"] and me["min_capacity"] > floor:
        low = rows[rows["min_capacity"] == floor].sort_values("rank").iloc[0]
        worst = prof.loc[low.name].sort_values("violation").iloc[-1]
        reasons.append(
            f"It keeps MinCapacity {me['min_capacity']} instead of {floor}: the best candidate "
            f"with MinCapacity {floor} ({low.name}) misses the objective (worst SLO violation "
            f"{_pct(worst['violation'])} on {worst.name}), so scaling out alone does not add "
            "instances in time there; the standing capacity is the price of meeting the SLO."
        )

    def versus(other: str, name: str) -> None:
        if other == label:
            reasons.append(f"The {name} policy is itself the recommendation.")
            return
        o = rows.loc[other]
        diff = o["monthly_cost_usd"] - me["monthly_cost_usd"]
        verdict = "meets" if o["meets_objective"] else "misses"
        reasons.append(
            f"Versus the {name} policy ({other}, which {verdict} the objective): "
            f"{'saves' if diff >= 0 else 'costs'} ${abs(diff):,.0f}/month"
            f"{'' if diff >= 0 else ' more'} "
            f"({abs(diff) / max(o['monthly_cost_usd'], 1e-9):.0%}), worst SLO violation "
            f"{_pct(me['slo_violation_rate'])} vs {_pct(o['slo_violation_rate'])}."
        )
        for profile in prof.loc[label].index:
            mine, theirs = prof.loc[(label, profile)], prof.loc[(other, profile)]
            if mine["cost"] > theirs["cost"] + 1e-9:
                why = (
                    f"it misses the objective there (SLO violation {_pct(theirs['violation'])}, "
                    f"error rate {_pct(theirs['error'])})"
                    if theirs["violation"] > objective.violation_bound
                    or theirs["error"] > objective.error_bound
                    else "it misses the objective on another profile"
                    if not o["meets_objective"]
                    else "it costs more over all profiles together"
                )
                reasons.append(
                    f"On {profile} the {name} policy is cheaper (${theirs['cost']:,.0f} vs "
                    f"${mine['cost']:,.0f}/month) but {why}."
                )

    for flag, name in (("is_rule_of_thumb", "AWS rule-of-thumb"), ("is_current", "current")):
        hits = rows.index[rows[flag]]
        if len(hits):
            versus(str(hits[0]), name)
    alternatives = nearest_alternatives(table, label)
    for other in alternatives:
        o = rows.loc[other]
        diff = o["monthly_cost_usd"] - me["monthly_cost_usd"]
        worst = prof.loc[other].sort_values("violation").iloc[-1]
        reasons.append(
            f"Alternative {other}: {'+' if diff >= 0 else '-'}${abs(diff):,.0f}/month, "
            + (
                "also meets the objective."
                if o["meets_objective"]
                else f"misses the objective (worst SLO violation {_pct(worst['violation'])} "
                f"on {worst.name})."
            )
        )
    return Recommendation(
        label=label,
        meets_objective=bool(me["meets_objective"]),
        alternatives=tuple(alternatives),
        reasons=tuple(reasons),
    )
