"""The report's tables as DataFrames, computed from a :class:`Run` (no drawing, no writing)."""

from __future__ import annotations

import html
import math
from typing import Any

import numpy as np
import pandas as pd

from tuner.tune.run import Run

# Colour-blind-safe (Okabe-Ito, then Tableau) so a candidate keeps one colour in every plot.
PALETTE = (
    "#009E73",  # recommended
    "#0072B2",
    "#CC79A7",
    "#D55E00",  # rule-of-thumb
    "#E69F00",  # current
    "#56B4E9",
    "#8C564B",
    "#7F7F7F",
    "#BCBD22",
    "#17BECF",
)


def html_table(frame: pd.DataFrame) -> str:
    """A plain HTML table of ``frame``, every header and cell escaped."""
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in frame.columns)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(str(v))}</td>" for v in row) + "</tr>"
        for row in frame.itertuples(index=False)
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def usd(x: float) -> str:
    return "n/a" if _nan(x) else f"${x:,.0f}" if abs(x) >= 100 else f"${x:,.2f}"


def pct(x: float) -> str:
    if _nan(x):
        return "n/a"
    return "0%" if x == 0 else f"{100 * x:.3g}%" if x < 0.01 else f"{100 * x:.1f}%"


def ms(x: float) -> str:
    return "n/a" if _nan(x) else f"{x:,.0f} ms"


def seconds(x: float) -> str:
    if _nan(x):
        return "none"
    return f"{x:,.0f} s" if x < 120 else f"{x / 60:,.1f} min"


def _nan(x: Any) -> bool:
    return x is None or (isinstance(x, float) and math.isnan(x))


def highlighted(run: Run) -> list[str]:
    """Candidates drawn in colour: recommended, its alternatives, baselines, trialled ones."""
    c = run.candidates
    names = [run.recommendation.label, *run.recommendation.alternatives]
    names += list(c.loc[c["is_rule_of_thumb"], "candidate"]) + list(
        c.loc[c["is_current"], "candidate"]
    )
    names += sorted({t.label for t in run.trials.values()})
    return list(dict.fromkeys(names))


def colours(run: Run) -> dict[str, str]:
    """One colour per highlighted candidate, the same in every plot and table."""
    return {label: PALETTE[i % len(PALETTE)] for i, label in enumerate(highlighted(run))}


def roles(run: Run) -> dict[str, str]:
    """A short human name for each highlighted candidate ("recommended", "AWS rule of thumb")."""
    c = run.candidates.set_index("candidate")
    out: dict[str, str] = {}
    for label in highlighted(run):
        tags = []
        if label == run.recommendation.label:
            tags.append("recommended")
        if label in run.recommendation.alternatives:
            tags.append("alternative")
        if label in c.index and c.loc[label, "is_rule_of_thumb"]:
            tags.append("AWS rule of thumb")
        if label in c.index and c.loc[label, "is_current"]:
            tags.append("current")
        if label in {t.label for t in run.trials.values()}:
            tags.append("trialled")
        out[label] = ", ".join(tags)
    return out


def per_profile(run: Run) -> pd.DataFrame:
    """Candidate x profile: mean cost over seeds, worst seed for everything else."""
    g = run.results.groupby(["candidate", "profile"], sort=False)
    return g.agg(
        monthly_cost_usd=("monthly_cost_usd", "mean"),
        mean_instances=("mean_instances", "mean"),
        slo_violation_rate=("slo_violation_rate", "max"),
        error_rate=("error_rate", "max"),
        p99_latency_ms=("p99_latency_ms", "max"),
        scale_out_events=("scale_out_events", "mean"),
        scale_in_events=("scale_in_events", "mean"),
        recovery_s=("recovery_s", "max"),
        meets_objective=("meets_objective", "all"),
    ).reset_index()


def attainment(run: Run, label: str | None = None) -> pd.DataFrame:
    """SLO attainment of one candidate (default: the recommended) on each profile."""
    label = label or run.recommendation.label
    rows = per_profile(run)
    rows = rows[rows["candidate"] == label].set_index("profile").reindex(run.profiles)
    return pd.DataFrame(
        {
            "Profile": rows.index,
            "SLO attainment (worst seed)": [pct(1 - v) for v in rows["slo_violation_rate"]],
            "Error rate (worst seed)": [pct(v) for v in rows["error_rate"]],
            "p99 latency (worst seed)": [ms(v) for v in rows["p99_latency_ms"]],
            "Instances (mean)": [f"{v:.2f}" for v in rows["mean_instances"]],
            "Monthly cost": [usd(v) for v in rows["monthly_cost_usd"]],
            "Meets objective": ["yes" if v else "NO" for v in rows["meets_objective"]],
        }
    )


def side_by_side(run: Run, limit: int | None = None) -> pd.DataFrame:
    """Every candidate (or the first ``limit`` by rank, baselines always kept), formatted."""
    c = run.candidates.copy()
    c["_first"] = np.select(
        [c["role"] == "recommended", c["is_current"], c["is_rule_of_thumb"]], [0, 1, 2], 3
    )
    c = c.sort_values(["_first", "rank"])
    if limit is not None:
        c = c[(c["_first"] < 3) | (c["rank"] <= limit)]
    names = roles(run)
    return pd.DataFrame(
        {
            "Candidate": c["candidate"],
            "Role": [names.get(label, "") for label in c["candidate"]],
            "Rank": c["rank"],
            "Target (inv./instance/min)": [f"{v:g}" for v in c["target_value"]],
            "Min": c["min_capacity"],
            "Max": c["max_capacity"],
            "Scale-out cooldown": [seconds(v) for v in c["scale_out_cooldown_s"]],
            "Scale-in cooldown": [seconds(v) for v in c["scale_in_cooldown_s"]],
            "Monthly cost": [usd(v) for v in c["monthly_cost_usd"]],
            "p99 latency (worst)": [ms(v) for v in c["p99_latency_ms"]],
            "Error rate (worst)": [pct(v) for v in c["error_rate"]],
            "SLO violation (worst)": [pct(v) for v in c["slo_violation_rate"]],
            "Scale-outs / run": [f"{v:.1f}" for v in c["scale_out_events"]],
            "Scale-ins / run": [f"{v:.1f}" for v in c["scale_in_events"]],
            "Recovery (worst)": [seconds(v) for v in c["recovery_s"]],
            "Pareto": ["★" if v else "" for v in c["pareto"]],
            "Meets objective": ["yes" if v else "no" for v in c["meets_objective"]],
        }
    ).reset_index(drop=True)


def heatmap(run: Run, profile: str, value: str) -> pd.DataFrame:
    """Target value x scale-in cooldown of ``value`` on ``profile``; the rest as recommended."""
    c = run.candidates.set_index("candidate")
    me = c.loc[run.recommendation.label]
    same = c[
        (c["min_capacity"] == me["min_capacity"])
        & (c["max_capacity"] == me["max_capacity"])
        & (c["scale_out_cooldown_s"] == me["scale_out_cooldown_s"])
        & (c["disable_scale_in"] == me["disable_scale_in"])
    ]
    rows = per_profile(run)
    rows = rows[(rows["profile"] == profile) & rows["candidate"].isin(same.index)]
    rows = rows.join(same[["target_value", "scale_in_cooldown_s"]], on="candidate")
    return rows.pivot_table(
        index="target_value", columns="scale_in_cooldown_s", values=value, aggfunc="mean"
    ).sort_index()


def trial_comparison(run: Run) -> pd.DataFrame:
    """Measured against simulated, per trial: instance count and p99 latency."""
    out = []
    for _, trial in sorted(run.trials.items()):
        label = trial.label
        sim = run.timelines.get(trial.profile, {}).get(label)
        m = trial.timeline

        def stat(df: pd.DataFrame | None, col: str, how: str) -> float:
            if df is None or col not in df or df[col].dropna().empty:
                return float("nan")
            return float(getattr(df[col].dropna(), how)())

        out.append(
            {
                "Candidate": label,
                "Profile": trial.profile,
                "Instances, mean (measured / simulated)": (
                    f"{stat(m, 'instances_in_service', 'mean'):.2f} / "
                    f"{stat(sim, 'instances_in_service', 'mean'):.2f}"
                ),
                "Instances, peak (measured / simulated)": (
                    f"{stat(m, 'instances_in_service', 'max'):.0f} / "
                    f"{stat(sim, 'instances_in_service', 'max'):.0f}"
                ),
                "p99 latency, worst (measured / simulated)": (
                    f"{ms(stat(m, 'p99_latency_ms', 'max'))} / "
                    f"{ms(stat(sim, 'p99_latency_ms', 'max'))}"
                ),
                "Errors (measured / simulated)": (
                    f"{stat(m, 'errors', 'sum'):,.0f} / {stat(sim, 'errors', 'sum'):,.0f}"
                ),
                "CloudWatch invocations / sent": _traffic_check(trial.summary),
            }
        )
    return pd.DataFrame(out)


def _traffic_check(summary: dict[str, Any]) -> str:
    """CloudWatch's count against the trial's own, flagged past the trial's 2% tolerance."""
    if "sent" not in summary or "cloudwatch_invocations" not in summary:
        return "n/a"
    text = f"{summary['cloudwatch_invocations']:,.0f} / {summary['sent']:,}"
    if summary.get("traffic_warning"):
        share = float(summary.get("invocations_mismatch", 0.0))
        text += f" ({share:.1%} apart: foreign traffic or lost requests)"
    return text


def inputs(run: Run) -> pd.DataFrame:
    """The manifest as rows of (what, value) for the report's last section."""
    m = run.manifest
    rows: list[tuple[str, str]] = [("Run", str(m.get("run_id", run.path.name)))]
    rows.append(("Created", str(m.get("created", ""))))
    rows.append(("Command", str(m.get("command", ""))))
    for p in m.get("profiles", []):
        rows.append(
            (f"Profile {p['name']}", f"{p.get('path', '')} (sha256 {p.get('sha256', '')[:12]})")
        )
    cap = m.get("capacity", {})
    rows.append(
        ("Capacity", f"{cap.get('path', 'default')} (sha256 {str(cap.get('sha256', ''))[:12]})")
    )
    for key in ("instance_type", "hourly_usd", "max_rps_per_instance", "boot_s"):
        if key in cap:
            rows.append((f"  {key}", str(cap[key])))
    grid = m.get("grid", {})
    rows.append(
        ("Grid", f"{grid.get('path') or 'default'}; {grid.get('candidates', '?')} candidates")
    )
    for key, value in m.get("objective", {}).items():
        rows.append((f"Objective {key}", str(value)))
    for key, value in m.get("simulation", {}).items():
        rows.append((f"Simulation {key}", str(value)))
    if m.get("endpoint"):
        rows.append(("Endpoint", f"{m['endpoint']} / {m.get('variant', 'AllTraffic')}"))
        current = m.get("current_policy")
        note = m.get("current_policy_note")
        rows.append(
            (
                "Current policy",
                f"not evaluated: {note}"
                if note
                else "evaluated (see the table)"
                if current
                else "none registered",
            )
        )
    for key, value in m.get("versions", {}).items():
        rows.append((f"Version {key}", str(value)))
    return pd.DataFrame(rows, columns=["Input", "Value"])


def held_out(run: Run) -> pd.DataFrame:
    """In-sample and held-out side by side for the recommended, rule-of-thumb and current."""
    v = run.validation
    rows = []
    for role, key in (
        ("recommended", "recommended"),
        ("rule of thumb", "rule_of_thumb"),
        ("current", "current"),
    ):
        label = v.get(key)
        figs = v.get("candidates", {}).get(label) if label else None
        if not figs:
            continue
        ins, out = figs["in_sample"], figs["held_out"]
        rows.append(
            {
                "Role": role,
                "Candidate": label,
                "In-sample SLO violation": pct(ins["slo_violation_rate"]),
                "In-sample error rate": pct(ins["error_rate"]),
                "In-sample $/month": usd(ins["monthly_cost_usd"]),
                "Held-out SLO violation": pct(out["slo_violation_rate"]),
                "Held-out error rate": pct(out["error_rate"]),
                "Held-out $/month": usd(out["monthly_cost_usd"]),
                "Meets (in / held-out)": f"{'yes' if ins['meets'] else 'no'} / "
                f"{'yes' if out['meets'] else 'no'}",
            }
        )
    return pd.DataFrame(rows)


def _days(x: float) -> str:
    return f"{x:g} day{'' if x == 1 else 's'}"


def validation_sentences(run: Run) -> list[str]:
    """The held-out section in sentences: the split, the level, what the policy absorbs."""
    v = run.validation
    if not v:
        return []
    if "note" in v:
        return [str(v["note"])]
    pooled = v["stress_level"] == 0
    split = (
        f"Tuned on the older {_days(v['in_sample_days'])} (in-sample) and validated on the "
        f"newest {_days(v['holdout_days'])} (held-out); "
    )
    out = [
        split
        + (
            "the walk-forward folds showed no margin was needed, so the recommendation must "
            "meet the objective itself over the whole history (in-sample and held-out together)."
            if pooled
            else "the recommendation must meet the objective on both and under the stress "
            "scenarios."
        ),
        f"Stress level x{v['stress_level']:g}: {v['stress_level_reason']}.",
    ]
    for f in v.get("folds", []):
        level = (
            "no level up to the highest"
            if f["level"] is None
            else "none (x0)"
            if f["level"] == 0
            else f"x{f['level']:g}"
        )
        naive = f["in_sample_pick"] or "none"
        verdict = "met" if f["in_sample_pick_meets_next_window"] else "missed"
        surge = (
            f" (a surge: the next window peaked at {f['peak_ratio']:.2f}x its past's peak)"
            if f.get("surge")
            else ""
        )
        out.append(
            f"Fold ({f['fold']}): the in-sample choice {naive} {verdict} the next window{surge}; "
            f"stress needed: {level}."
        )
    naive = v.get("in_sample_only_pick")
    if naive and not v.get("in_sample_only_pick_meets_held_out"):
        out.append(
            f"The cheapest candidate meeting the objective in-sample only ({naive}) misses it on "
            "the held-out window; the recommendation is the cheapest that also meets it there "
            "once the stress margin is added."
        )
    rec = v.get("candidates", {}).get(v.get("recommended"), {})
    if pooled and rec and not rec["held_out"]["meets"]:
        out.append(
            "On the held-out window alone it misses the objective (SLO violation "
            f"{pct(rec['held_out']['slo_violation_rate'])}, error rate "
            f"{pct(rec['held_out']['error_rate'])}): that window holds a larger share of the "
            "history's rare events than the whole does; over the whole history it meets it "
            f"(SLO violation {pct(rec['history']['slo_violation_rate'])}, error rate "
            f"{pct(rec['history']['error_rate'])}). Give --stress-level 1 or more to buy "
            "margin for such events in every window."
        )
    elif rec and not (rec["in_sample"]["meets"] and rec["held_out"]["meets"]):
        fallback = v.get("cheapest_meeting_in_sample_and_held_out")
        out.append(
            "No candidate meets the objective in-sample, held-out and under stress together; "
            + (
                f"the cheapest that meets it in-sample and on the held-out window is {fallback}."
                if fallback
                else "none meets it even on the held-out window: raise --max-instances or "
                "relax the objective."
            )
        )
    for kind, text in v.get("stress_scenarios", {}).items():
        fig = rec.get("stress", {}).get(kind)
        if fig:
            verdict = "within the objective" if fig["meets"] else "NOT within the objective"
            out.append(
                f"Absorbs {text}: {verdict} (SLO violation {pct(fig['slo_violation_rate'])}, "
                f"error rate {pct(fig['error_rate'])})."
            )
    return out
