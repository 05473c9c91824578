"""The report's figures: DataFrames in, matplotlib Figures out (the only matplotlib importer).

Figures are made with the object API: no pyplot, no global backend or state, so nothing changes
for the importing process and no window can open; ``png`` renders one to bytes (Agg) for the page.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.colors import LinearSegmentedColormap
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

OTHER = "#C8C8C8"


def png(fig: Figure, dpi: int = 100) -> bytes:
    """The figure as PNG bytes (no timestamp in the metadata, so renders are reproducible)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, metadata={"Software": None})
    return buf.getvalue()


def _time_axis(duration_s: float) -> tuple[float, str]:
    return (3600.0, "h") if duration_s > 3 * 3600 else (60.0, "min")


MAX_POINTS = 1500
"""Longer timelines are drawn in buckets: a 14-day replay has 20,160 one-minute periods."""


def _bucket_s(df: pd.DataFrame) -> float:
    """Bucket width that keeps a timeline under MAX_POINTS rows, or 0 to draw it as is."""
    if len(df) <= MAX_POINTS:
        return 0.0
    period_s = float(df["t_s"].iloc[1] - df["t_s"].iloc[0])
    return period_s * -(-len(df) // MAX_POINTS)


def _thin(df: pd.DataFrame, bucket_s: float) -> pd.DataFrame:
    if not bucket_s:
        return df
    how = {
        "demand_rps": "mean",
        "instances_in_service": "max",
        "desired_capacity": "max",
        "p99_latency_ms": "max",
    }
    g = df.groupby((df["t_s"] // bucket_s) * bucket_s)
    out = g.agg({k: v for k, v in how.items() if k in df})
    return out.rename_axis("t_s").reset_index()


def timeline_figure(
    profile: str,
    timelines: Mapping[str, pd.DataFrame],
    colours: Mapping[str, str],
    names: Mapping[str, str],
    *,
    max_rps_per_instance: float,
    slo_p99_ms: float,
) -> Figure:
    """Demand against capacity, instances in service and desired, and p99 latency over time."""
    fig = Figure(figsize=(11, 8.5), layout="constrained")
    ax_rps, ax_n, ax_lat = fig.subplots(3, 1, sharex=True)
    bucket_s = _bucket_s(next(iter(timelines.values())))
    timelines = {label: _thin(df, bucket_s) for label, df in timelines.items()}
    first = next(iter(timelines.values()))
    scale, unit = _time_axis(float(first["t_s"].max()) + 60)
    t = first["t_s"] / scale
    ax_rps.fill_between(t, first["demand_rps"], step="post", color="#DDDDDD", label="demand")
    # Drawn in reverse so the first (the recommended policy) lies on top where lines coincide.
    for z, (label, df) in reversed(list(enumerate(timelines.items()))):
        x = df["t_s"] / scale
        style = {"color": colours.get(label, OTHER), "zorder": 10 - z, "where": "post"}
        width = 2.6 if z == 0 else 1.4
        name = f"{label} ({names[label]})" if names.get(label) else label
        ax_rps.step(
            x, df["instances_in_service"] * max_rps_per_instance, lw=width, label=name, **style
        )
        ax_n.step(x, df["instances_in_service"], lw=width, **style)
        ax_n.step(x, df["desired_capacity"], lw=1, ls="--", **style)
        ax_lat.step(x, df["p99_latency_ms"], lw=width, **style)
    handles, labels = ax_rps.get_legend_handles_labels()
    order = [0, *reversed(range(1, len(labels)))]  # demand first, then the recommended policy
    ax_rps.legend(
        [handles[i] for i in order],
        [labels[i] for i in order],
        loc="upper left",
        fontsize=8,
        title="capacity = in service x max rps per instance",
        title_fontsize=8,
    )
    per = f" (per {bucket_s / 60:g}-min bucket: mean demand, peak of the rest)" if bucket_s else ""
    ax_rps.set_title(f"{profile}: demand against capacity{per}")
    ax_rps.set_ylabel("requests per second")
    ax_n.set_title("instances in service (solid) and desired (dashed)")
    ax_n.set_ylabel("instances")
    ax_n.yaxis.get_major_locator().set_params(integer=True)
    ax_lat.axhline(slo_p99_ms, color="black", lw=0.8, ls=":", label=f"SLO {slo_p99_ms:g} ms")
    ax_lat.set_title("p99 latency per " + ("bucket (peak)" if bucket_s else "metric period"))
    ax_lat.set_ylabel("p99 latency (ms)")
    ax_lat.set_yscale("log")
    ax_lat.legend(loc="upper left", fontsize=8)
    ax_lat.set_xlabel(f"time since profile start ({unit})")
    for ax in (ax_rps, ax_n, ax_lat):
        ax.grid(alpha=0.3)
    return fig


def pareto_figure(
    profile: str,
    rows: pd.DataFrame,
    colours: Mapping[str, str],
    names: Mapping[str, str],
    *,
    violation_bound: float,
) -> Figure:
    """Monthly cost against SLO violation for every candidate, the Pareto front joined."""
    fig = Figure(figsize=(10, 6.5), layout="constrained")
    ax = fig.subplots()
    viol = rows["slo_violation_rate"] * 100
    ax.scatter(rows["monthly_cost_usd"], viol, s=14, color=OTHER, label="other candidates")
    front = rows[rows["pareto"]].sort_values("monthly_cost_usd")
    ax.step(
        front["monthly_cost_usd"],
        front["slo_violation_rate"] * 100,
        where="post",
        color="black",
        lw=1,
        label="Pareto front",
    )
    ax.scatter(
        front["monthly_cost_usd"],
        front["slo_violation_rate"] * 100,
        s=18,
        facecolors="none",
        edgecolors="black",
    )
    for z, (label, colour) in enumerate(colours.items()):
        hit = rows[rows["candidate"] == label]
        if not hit.empty:
            # Shrinking markers, the recommended policy largest and on top, keep ties visible.
            ax.scatter(
                hit["monthly_cost_usd"],
                hit["slo_violation_rate"] * 100,
                s=max(140 - 25 * z, 40),
                color=colour,
                edgecolors="black",
                zorder=10 - z,
                label=f"{label} ({names.get(label, '')})",
            )
    ax.axhline(
        violation_bound * 100,
        color="#B00020",
        lw=1,
        ls="--",
        label=f"objective with margin ({violation_bound * 100:.2g}%)",
    )
    # Violations span zero to tens of percent: linear below 0.1%, logarithmic above.
    ax.set_yscale("symlog", linthresh=0.1)
    ax.set_ylim(0, max(float(viol.max()), violation_bound * 100) * 2)
    ax.set_xlabel("monthly cost (USD, mean over seeds)")
    ax.set_ylabel("SLO violation, worst seed (% of requests)")
    ax.set_title(f"{profile}: cost against SLO violation")
    ax.xaxis.set_major_formatter("${x:,.0f}")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=2)
    return fig


Spec = tuple[pd.DataFrame, str, Any, tuple[float, float] | None, Callable[[float], str]]
"""One heatmap panel: data, title, colour map, colour limits (None: the data's), cell text."""


def heatmap_figure(
    profile: str,
    cost: pd.DataFrame,
    violation: pd.DataFrame,
    *,
    violation_bound: float,
    mark: tuple[float, float],
    fixed: str,
) -> Figure:
    """Target value x scale-in cooldown, coloured by monthly cost and by SLO violation."""
    fig = Figure(figsize=(12, 0.9 + 0.38 * max(len(cost), 4)), layout="constrained")
    axes = fig.subplots(1, 2)
    worst = float(np.nanmax(violation.to_numpy(dtype=float), initial=0.0)) * 100
    specs: tuple[Spec, ...] = (
        (cost, "monthly cost (USD)", "viridis", None, _money_cell),
        # Fixed scale from 0 so white means "no violation" and red "at least twice the bound".
        (
            violation * 100,
            "SLO violation, worst seed (%)",
            LinearSegmentedColormap.from_list("v", ["#FFFFFF", "#F4A582", "#B00020"]),
            (0.0, max(worst, violation_bound * 200)),
            _pct_cell,
        ),
    )
    for ax, (data, what, cmap, limits, fmt) in zip(axes, specs, strict=True):
        values = data.to_numpy(dtype=float)
        lo, hi = limits or (np.nanmin(values), np.nanmax(values))
        image = ax.imshow(values, aspect="auto", cmap=cmap, origin="lower", vmin=lo, vmax=hi)
        bar = fig.colorbar(image, ax=ax)
        bar.set_label(what)
        if limits:
            bar.ax.axhline(violation_bound * 100, color="black", lw=1.5)
            what += f" (black line on the scale: objective {violation_bound * 100:.2g}%)"
        ax.set_xticks(range(data.shape[1]), [f"{c:g}" for c in data.columns])
        ax.set_yticks(range(data.shape[0]), [f"{r:g}" for r in data.index])
        ax.set_xlabel("scale-in cooldown (s)")
        ax.set_ylabel("target value (invocations/instance/min)")
        ax.set_title(what, fontsize=10)
        for (i, j), v in np.ndenumerate(values):
            if np.isfinite(v):
                dark = (v - lo) / (hi - lo or 1) < 0.5 if cmap == "viridis" else v > 0.7 * hi
                ax.text(
                    j,
                    i,
                    fmt(v),
                    ha="center",
                    va="center",
                    fontsize=7,
                    color="white" if dark else "black",
                )
        if mark[0] in data.index and mark[1] in data.columns:
            i, j = data.index.get_loc(mark[0]), data.columns.get_loc(mark[1])
            ax.add_patch(Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, lw=2.5, ec="#009E73"))
    fig.suptitle(f"{profile}: target value x scale-in cooldown ({fixed}; green box: recommended)")
    return fig


def _money_cell(v: float) -> str:
    return f"${v:,.0f}"


def _pct_cell(v: float) -> str:
    return "0" if v == 0 else "<0.01" if v < 0.01 else f"{v:.2g}"


def trial_figure(
    label: str,
    measured: pd.DataFrame,
    simulated: pd.DataFrame | None,
    colour: str,
    *,
    slo_p99_ms: float,
) -> Figure:
    """Measured (live trial) against simulated instance count and p99 latency."""
    fig = Figure(figsize=(11, 6), layout="constrained")
    ax_n, ax_lat = fig.subplots(2, 1, sharex=True)
    end = float(measured["t_s"].max())
    if simulated is not None:
        end = max(end, float(simulated["t_s"].max()))
    scale, unit = _time_axis(end + 60)
    for df, style, what in ((measured, "-", "measured"), (simulated, "--", "simulated")):
        if df is None:
            continue
        x = df["t_s"] / scale
        ax_n.step(
            x,
            df["instances_in_service"],
            where="post",
            color=colour,
            ls=style,
            lw=1.6,
            label=f"{what}: in service",
        )
        if "p99_latency_ms" in df:
            ax_lat.step(
                x, df["p99_latency_ms"], where="post", color=colour, ls=style, lw=1.2, label=what
            )
    ax_n.set_title(f"{label}: measured (solid) against simulated (dashed)")
    ax_n.set_ylabel("instances in service")
    ax_n.yaxis.get_major_locator().set_params(integer=True)
    ax_n.legend(fontsize=8, loc="upper left")
    ax_lat.axhline(slo_p99_ms, color="black", lw=0.8, ls=":", label=f"SLO {slo_p99_ms:g} ms")
    ax_lat.set_ylabel("p99 latency (ms)")
    ax_lat.set_xlabel(f"time since profile start ({unit})")
    ax_lat.legend(fontsize=8, loc="upper left")
    for ax in (ax_n, ax_lat):
        ax.grid(alpha=0.3)
    return fig


def backtest_figure(minutes: pd.DataFrame, invocations: np.ndarray, title: str) -> Figure:
    """Recorded against simulated desired capacity per minute, the demand beneath."""
    fig = Figure(figsize=(11, 5.5), layout="constrained")
    ax_n, ax_d = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": (2, 1)})
    scale, unit = _time_axis(float(minutes["t_s"].max()) + 60)
    x = minutes["t_s"] / scale
    for col, colour, style, label in (
        ("recorded_desired", "#000000", "-", "recorded (scaling activities)"),
        ("simulated_desired", "#009E73", "--", "model, fitted boot and delay"),
        ("default_desired", "#D55E00", ":", "model, defaults"),
    ):
        ax_n.step(x, minutes[col], where="post", color=colour, ls=style, lw=1.5, label=label)
    ax_n.set_title(title)
    ax_n.set_ylabel("desired instances")
    ax_n.yaxis.get_major_locator().set_params(integer=True)
    ax_n.legend(fontsize=8, loc="upper left")
    ax_d.step(x, invocations, where="post", color="#0072B2", lw=1.0)
    ax_d.set_ylabel("invocations / min")
    ax_d.set_xlabel(f"time since the window's start ({unit})")
    for ax in (ax_n, ax_d):
        ax.grid(alpha=0.3)
    return fig


def token_latency_figure(
    title: str,
    simulated: pd.DataFrame,
    measured: pd.DataFrame | None,
    *,
    slo_ttft_ms: float,
    slo_itl_ms: float,
) -> Figure:
    """An LLM endpoint per period: copies, TTFT p99 and ITL p99, simulated (dashed) and
    measured (solid, when a live trial recorded ``ttft_p99_ms`` / ``itl_p99_ms``)."""
    fig = Figure(figsize=(11, 7), layout="constrained")
    ax_n, ax_ttft, ax_itl = fig.subplots(3, 1, sharex=True)
    scale, unit = _time_axis(float(simulated["t_s"].max()) + 60)
    for df, style, what in ((simulated, "--", "simulated"), (measured, "-", "measured")):
        if df is None:
            continue
        x = df["t_s"] / scale
        if "instances_in_service" in df:
            ax_n.step(x, df["instances_in_service"], where="post", ls=style, lw=1.4, label=what)
        for ax, col in ((ax_ttft, "ttft_p99_ms"), (ax_itl, "itl_p99_ms")):
            if col in df:
                ax.step(x, df[col], where="post", ls=style, lw=1.2, label=what)
    ax_n.set_title(title)
    ax_n.set_ylabel("copies in service")
    ax_n.yaxis.get_major_locator().set_params(integer=True)
    ax_ttft.axhline(slo_ttft_ms, color="black", lw=0.8, ls=":", label=f"SLO {slo_ttft_ms:g} ms")
    ax_itl.axhline(slo_itl_ms, color="black", lw=0.8, ls=":", label=f"SLO {slo_itl_ms:g} ms")
    ax_ttft.set_ylabel("TTFT p99 (ms)")
    ax_ttft.set_yscale("log")
    ax_itl.set_ylabel("ITL p99 (ms)")
    ax_itl.set_xlabel(f"time since profile start ({unit})")
    for ax in (ax_n, ax_ttft, ax_itl):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="upper left")
    return fig
