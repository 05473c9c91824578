"""The report rendered from a run directory (whose files :mod:`tuner.tune.run` owns).

``write_report`` reads the directory back and writes ``report.html`` and ``report.md``, so
``tuner tune`` and ``tuner report RUN_DIR`` produce the same bytes from the same files.
"""

from __future__ import annotations

from pathlib import Path

from tuner.report import document, llm, plots, tables
from tuner.report.backtest import BACKTEST_JSON, section_html, section_markdown
from tuner.tune.recommend import pareto_mask
from tuner.tune.run import (
    Run,
)

REPORT_HTML = "report.html"
REPORT_MD = "report.md"
BACKTEST_DIR = "backtest"
"""Where ``tune --backtest`` writes the backtest inside the run directory."""


def figures(run: Run) -> dict[str, list[tuple[str, bytes]]]:
    """Every plot of the report as (alt text, PNG) by section."""
    colours, names = tables.colours(run), tables.roles(run)
    capacity = run.manifest.get("capacity", {})
    objective = run.manifest.get("objective", {})
    slo_ms = float(objective.get("slo_p99_ms", 0)) or float("nan")
    bound = float(objective.get("max_slo_violation", 0.01)) * float(objective.get("margin", 1))
    rec = run.candidates.set_index("candidate").loc[run.recommendation.label]
    per_profile = tables.per_profile(run)
    out: dict[str, list[tuple[str, bytes]]] = {}
    for profile in run.profiles:
        images = out.setdefault(f"profile:{profile}", [])
        lines = run.timelines.get(profile, {})
        ordered = {k: lines[k] for k in colours if k in lines}
        if ordered:
            fig = plots.timeline_figure(
                profile,
                ordered,
                colours,
                names,
                max_rps_per_instance=float(capacity.get("max_rps_per_instance", 1.0)),
                slo_p99_ms=slo_ms,
            )
            images.append((f"{profile}: demand against capacity over time", plots.png(fig)))
        rows = per_profile[per_profile["profile"] == profile].copy()
        # A history's results are per part (in-sample, held-out, stress): no rows by its name.
        if not rows.empty:
            # The front of this profile's own results, not of the aggregate across profiles.
            rows["pareto"] = pareto_mask(rows["monthly_cost_usd"], rows["slo_violation_rate"])
            fig = plots.pareto_figure(profile, rows, colours, names, violation_bound=bound)
            images.append((f"{profile}: monthly cost against SLO violation", plots.png(fig)))
        cost = tables.heatmap(run, profile, "monthly_cost_usd")
        if cost.size > 1:
            fig = plots.heatmap_figure(
                profile,
                cost,
                tables.heatmap(run, profile, "slo_violation_rate"),
                violation_bound=bound,
                mark=(float(rec["target_value"]), float(rec["scale_in_cooldown_s"])),
                fixed=f"Min {rec['min_capacity']}, Max {rec['max_capacity']}, "
                f"scale-out cooldown {rec['scale_out_cooldown_s']} s",
            )
            images.append(
                (f"{profile}: heatmap of target value x scale-in cooldown", plots.png(fig))
            )
    for _, trial in sorted(run.trials.items()):
        sim = run.timelines.get(trial.profile, {}).get(trial.label)
        fig = plots.trial_figure(
            f"{trial.label} on {trial.profile}",
            trial.timeline,
            sim,
            colours.get(trial.label, "#333333"),
            slo_p99_ms=slo_ms,
        )
        out.setdefault("trials", []).append(
            (f"{trial.label} on {trial.profile}: measured against simulated", plots.png(fig))
        )
    return out


def write_report(path: str | Path) -> tuple[Path, Path]:
    """Render ``report.html`` and ``report.md`` from the saved files of a run directory."""
    run = Run.load(path)
    html_path, md_path = run.path / REPORT_HTML, run.path / REPORT_MD
    page, text = document.render_html(run, figures(run)), document.render_markdown(run)
    folder = run.path / BACKTEST_DIR
    if (folder / BACKTEST_JSON).is_file():  # tune --backtest: the model checked first
        page = page.replace("</body>", section_html(folder) + "</body>", 1)
        text += "\n" + section_markdown(folder)
    if llm.is_llm(run):  # an inference component of an LLM: TTFT/ITL and the zero-copy trade-off
        page = page.replace("</body>", llm.section_html(run) + "</body>", 1)
        text += "\n" + llm.section_markdown(run)
    html_path.write_text(page, encoding="utf-8")
    md_path.write_text(text, encoding="utf-8")
    return html_path, md_path
