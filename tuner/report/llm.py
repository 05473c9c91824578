"""The report's section for an LLM endpoint (a run whose capacity file says ``"kind": "llm"``).

Two parts: TTFT and ITL per period for the recommendation on each profile (simulated; measured
beside it when a live trial's timeline has ``ttft_p99_ms`` / ``itl_p99_ms``, contract §2 of
issue #16), and the zero-copy trade-off: per MinCopyCount-0 candidate, the hours at zero copies
and the cold-start errors they cause against the monthly cost they save
(:func:`tuner.tune.llm.idle_tradeoff`).
"""

from __future__ import annotations

import base64
import html
import math
from typing import Any

import pandas as pd

from tuner.report import plots
from tuner.report.tables import html_table, ms, pct, usd
from tuner.tune.llm import idle_tradeoff
from tuner.tune.run import Run, Trial

ROWS = 24
"""Most rows of a per-period table: the timeline is cut into this many windows at most."""


def is_llm(run: Run) -> bool:
    return bool(run.manifest.get("capacity", {}).get("kind") == "llm")


def _objective(run: Run) -> tuple[float, float]:
    o = run.manifest.get("objective", {})
    return float(o.get("slo_ttft_p99_ms") or math.nan), float(o.get("slo_itl_p99_ms") or math.nan)


def _trial(run: Run, label: str, profile: str) -> Trial | None:
    for trial in run.trials.values():
        if trial.label == label and trial.profile == profile:
            return trial
    return None


def per_period(sim: pd.DataFrame, measured: pd.DataFrame | None, rows: int = ROWS) -> pd.DataFrame:
    """The timeline cut into at most ``rows`` windows: demand, copies, worst TTFT/ITL p99,
    errors; measured columns beside the simulated ones when the trial recorded them."""
    end = float(sim["t_s"].max()) + 1
    width = max(60.0, math.ceil(end / rows / 60.0) * 60.0)

    def cut(df: pd.DataFrame) -> Any:
        return df.groupby((df["t_s"] // width).astype(int))

    g = cut(sim)
    out = pd.DataFrame(
        {
            "From": [f"{k * width / 60:g} min" for k in g.groups],
            "Demand (rps)": g["demand_rps"].mean().map(lambda v: f"{v:.3g}"),
            "Copies in service": g["instances_in_service"].mean().map(lambda v: f"{v:.2f}"),
            "TTFT p99, simulated": g["ttft_p99_ms"].max().map(ms),
        }
    )
    has = measured is not None
    if has and measured is not None and "ttft_p99_ms" in measured:
        out["TTFT p99, measured"] = cut(measured)["ttft_p99_ms"].max().reindex(out.index).map(ms)
    out["ITL p99, simulated"] = g["itl_p99_ms"].max().map(ms)
    if has and measured is not None and "itl_p99_ms" in measured:
        out["ITL p99, measured"] = cut(measured)["itl_p99_ms"].max().reindex(out.index).map(ms)
    out["Errors (simulated)"] = g["errors"].sum().map(lambda v: f"{v:,.0f}")
    if "no_capacity_failures" in sim:
        out["of which at zero copies"] = g["no_capacity_failures"].sum().map(lambda v: f"{v:,.0f}")
    return out.reset_index(drop=True)


def idle_table(run: Run, limit: int = 8) -> pd.DataFrame:
    """Zero-copy idle periods against the cold-start errors they cause, best-ranked first."""
    t = idle_tradeoff(run.candidates)
    if t.empty:
        return t
    t = t.head(limit)
    return pd.DataFrame(
        {
            "MinCopyCount-0 candidate": t["candidate"],
            "Versus (same policy, lowest MinCopyCount > 0)": t["versus"],
            "Hours at zero copies (mean per run)": t["zero_copy_hours"].map(lambda v: f"{v:.2f}"),
            "Cold starts (mean per run)": t["cold_starts"].map(lambda v: f"{v:.1f}"),
            "Requests refused at zero copies": t["no_capacity_failures"].map(lambda v: f"{v:,.0f}"),
            "Error rate (worst)": t["error_rate"].map(pct),
            "Saves per month": t["monthly_saving_usd"].map(usd),
            "Meets objective": t["meets_objective"].map(lambda v: "yes" if v else "no"),
        }
    )


def _md_table(df: pd.DataFrame) -> str:
    lines = ["| " + " | ".join(map(str, df.columns)) + " |", "|" + "---|" * len(df.columns)]
    lines += ["| " + " | ".join(str(v) for v in row) + " |" for row in df.itertuples(index=False)]
    return "\n".join(lines)


_IDLE_TEXT = (
    "Each MinCopyCount-0 candidate scales in to zero copies when idle (target tracking) and out "
    "again with the step policy on NoCapacityInvocationFailures: every request that arrives "
    "while the first copy loads fails. Saved cost is against the same policy keeping its "
    "lowest positive MinCopyCount."
)


def section_html(run: Run) -> str:
    """The LLM section of report.html ("" for other runs)."""
    if not is_llm(run):
        return ""
    ttft, itl = _objective(run)
    label = run.recommendation.label
    parts = [
        '<section id="llm"><h2>LLM endpoint: TTFT and ITL per period</h2>',
        f"<p>Objectives: TTFT p99 {ms(ttft)}, ITL p99 {ms(itl)} (a request over either "
        "counts as an SLO violation). Worst p99 of each window for the recommendation "
        f"{html.escape(label)}; measured columns come from its live trial when one ran.</p>",
    ]
    for profile in run.profiles:
        sim = run.timelines.get(profile, {}).get(label)
        if sim is None or "ttft_p99_ms" not in sim:
            continue
        trial = _trial(run, label, profile)
        measured = trial.timeline if trial is not None else None
        parts.append(f"<h3>{html.escape(profile)}</h3>")
        parts.append(html_table(per_period(sim, measured)))
        fig = plots.token_latency_figure(
            f"{label} on {profile}", sim, measured, slo_ttft_ms=ttft, slo_itl_ms=itl
        )
        uri = base64.b64encode(plots.png(fig)).decode("ascii")
        alt = html.escape(f"{profile}: TTFT and ITL per period")
        parts.append(f'<img src="data:image/png;base64,{uri}" alt="{alt}">')
    idle = idle_table(run)
    if not idle.empty:
        parts += [
            "<h3>Zero-copy idle periods against cold-start errors</h3>",
            f"<p>{html.escape(_IDLE_TEXT)}</p>",
            html_table(idle),
        ]
    parts.append("</section>")
    return "\n".join(parts)


def section_markdown(run: Run) -> str:
    """The LLM section of report.md ("" for other runs)."""
    if not is_llm(run):
        return ""
    ttft, itl = _objective(run)
    label = run.recommendation.label
    out = [
        "## LLM endpoint: TTFT and ITL per period",
        "",
        f"Objectives: TTFT p99 {ms(ttft)}, ITL p99 {ms(itl)}. Worst p99 of each window for "
        f"{label}.",
        "",
    ]
    for profile in run.profiles:
        sim = run.timelines.get(profile, {}).get(label)
        if sim is None or "ttft_p99_ms" not in sim:
            continue
        trial = _trial(run, label, profile)
        out += [f"### {profile}", "", _md_table(per_period(sim, trial and trial.timeline)), ""]
    idle = idle_table(run)
    if not idle.empty:
        out += [
            "### Zero-copy idle periods against cold-start errors",
            "",
            _IDLE_TEXT,
            "",
            _md_table(idle),
            "",
        ]
    return "\n".join(out)
