"""The report as text: a self-contained HTML page and a Markdown version, from a Run.

Every string that came from an input (endpoint, profile and file names, reasons) is escaped;
images are PNG data: URIs, and a Content-Security-Policy forbids anything else, so the page
opens from disk with no network.
"""

from __future__ import annotations

import base64
import html
from collections.abc import Callable

import pandas as pd

from tuner.policy.resource import Resource, ResourceKind
from tuner.policy.step import AdjustmentType
from tuner.report import tables
from tuner.tune.run import Run

_CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"
_STYLE = """
body{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;margin:2rem auto;max-width:1280px;
 padding:0 1rem;color:#222;line-height:1.45}
h1{margin-bottom:.2rem} .sub{color:#555;margin-top:0}
table{border-collapse:collapse;margin:.6rem 0;font-size:.85rem}
th,td{border:1px solid #ccc;padding:.25rem .5rem;text-align:right;white-space:nowrap}
th{background:#f3f3f3;position:sticky;top:0} td:first-child,th:first-child{text-align:left}
td.l{text-align:left} tr.recommended td{background:#e6f5ef;font-weight:600}
tr.baseline td{background:#fff6e5} .swatch{display:inline-block;width:.8rem;height:.8rem;
 border-radius:2px;margin-right:.35rem;vertical-align:middle}
.box{border:2px solid #009E73;border-radius:8px;padding:.5rem 1.2rem;margin:1rem 0}
.box.miss{border-color:#B00020} .badge{font-weight:700;color:#009E73}
.box.miss .badge{color:#B00020}
pre{background:#f6f8fa;padding:.6rem;overflow-x:auto;font-size:.8rem}
img{max-width:100%;border:1px solid #eee;margin:.4rem 0} .scroll{overflow-x:auto;max-height:36rem}
"""


def _table(
    df: pd.DataFrame,
    *,
    row_class: Callable[[pd.Series], str] | None = None,
    swatches: dict[str, str] | None = None,
    left: tuple[str, ...] = (),
) -> str:
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in df.columns)
    rows = []
    for _, row in df.iterrows():
        cells = []
        for col, value in row.items():
            text = html.escape(str(value))
            if col == df.columns[0] and swatches and value in swatches:
                text = f'<span class="swatch" style="background:{swatches[value]}"></span>{text}'
            cls = ' class="l"' if col in left else ""
            cells.append(f"<td{cls}>{text}</td>")
        cls = row_class(row) if row_class else ""
        rows.append(f'<tr class="{cls}">' + "".join(cells) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


def _img(data: bytes, alt: str) -> str:
    uri = "data:image/png;base64," + base64.b64encode(data).decode("ascii")
    return f'<img src="{uri}" alt="{html.escape(alt)}">'


def policy_values(run: Run) -> pd.DataFrame:
    p = run.recommended
    rows = [("MinCapacity", str(p.min_capacity)), ("MaxCapacity", str(p.max_capacity))]
    if p.target_value is not None:
        rows += [
            ("TargetValue", f"{p.target_value:g} ({p.metric_type or 'custom metric'})"),
            ("ScaleOutCooldown", f"{p.scale_out_cooldown_s} s"),
            ("ScaleInCooldown", f"{p.scale_in_cooldown_s} s"),
            ("DisableScaleIn", str(p.disable_scale_in).lower()),
            ("PolicyName", p.name),
        ]
    for step in p.step_policies:
        a = step.alarm
        adjustments = ", ".join(
            f"{s.scaling_adjustment:+d}"
            if step.adjustment_type is not AdjustmentType.EXACT_CAPACITY
            else f"={s.scaling_adjustment}"
            for s in step.steps
        )
        rows.append(
            (
                f"StepScaling {step.name}",
                f"{a.metric_name} {a.comparison.value} {a.threshold:g} "
                f"({a.datapoints_to_alarm} of {a.evaluation_periods} x {a.period_s} s): "
                f"{step.adjustment_type.value} {adjustments}, cooldown {step.cooldown_s} s",
            )
        )
    return pd.DataFrame(rows, columns=["Field", "Value"])


def apply_snippets(run: Run) -> list[tuple[str, str]]:
    """(title, text) of every way to apply the recommendation."""
    from tuner.policy.export import FORMATS, export_policy

    policy_file = f"{run.manifest.get('out', run.path)}/recommended.policy.json"
    if run.recommended.kind is ResourceKind.INFERENCE_COMPONENT:
        component = run.manifest.get("inference_component") or "INFERENCE_COMPONENT_NAME"
        resource = Resource.for_component(component)
        target = f"--inference-component {component}"
    else:
        endpoint = run.manifest.get("endpoint") or "ENDPOINT_NAME"
        variant = run.manifest.get("variant") or "AllTraffic"
        resource = Resource.for_variant(endpoint, variant)
        target = f"--endpoint {endpoint} --variant {variant}"
    out = [
        (
            "tuner apply (diff and dry run first)",
            f"tuner apply {policy_file} {target} --dry-run\ntuner apply {policy_file} {target}\n",
        )
    ]
    titles = {"aws-cli": "AWS CLI", "cloudformation": "CloudFormation", "terraform": "Terraform"}
    out += [(titles.get(f, f), export_policy(run.recommended, resource, f)) for f in FORMATS]
    return out


def _heading(run: Run) -> tuple[str, str]:
    m = run.manifest
    target = m.get("endpoint") or "simulation only (no endpoint given)"
    sub = (
        f"Endpoint: {target} · profiles: {', '.join(run.profiles)} · created {m.get('created', '')}"
    )
    return f"Scaling policy recommendation: {run.recommendation.label}", sub


def _held_out_html(run: Run) -> list[str]:
    sentences = tables.validation_sentences(run)
    if not sentences:
        return []
    frame = tables.held_out(run)
    return [
        '<h3 id="held-out">Held-out validation and stress</h3>',
        *([_table(frame)] if not frame.empty else []),
        "<ul>",
        *(f"<li>{html.escape(s)}</li>" for s in sentences),
        "</ul>",
    ]


def _held_out_md(run: Run) -> list[str]:
    sentences = tables.validation_sentences(run)
    if not sentences:
        return []
    frame = tables.held_out(run)
    return [
        "## Held-out validation and stress",
        "",
        *([_md_table(frame), ""] if not frame.empty else []),
        *(f"- {_md(s)}" for s in sentences),
        "",
    ]


def render_html(run: Run, images: dict[str, list[tuple[str, bytes]]]) -> str:
    """The page; ``images`` maps a section ("profile:<name>", "trials") to (alt, png) pairs."""
    e = html.escape
    rec = run.recommendation
    colours = tables.colours(run)
    title, sub = _heading(run)
    cand = run.candidates.set_index("candidate").loc[rec.label]
    status = (
        "meets the objective on every profile and seed"
        if rec.meets_objective
        else "does NOT meet the objective: see why below"
    )
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f'<meta http-equiv="Content-Security-Policy" content="{_CSP}">',
        f"<title>{e(title)}</title><style>{_STYLE}</style></head><body>",
        f'<h1>{e(title)}</h1><p class="sub">{e(sub)}</p>',
        f'<section id="recommendation" class="box{"" if rec.meets_objective else " miss"}">',
        f'<h2>Recommendation</h2><p><span class="badge">{e(rec.label)}</span> {e(status)}. '
        f"Expected monthly cost: <strong>{e(tables.usd(cand['monthly_cost_usd']))}</strong> "
        f"(mean instances in service x 730 h x hourly price, mean over profiles).</p>",
        _table(policy_values(run), left=("Value",)),
        *_held_out_html(run),
        "<h3>SLO attainment on each profile</h3>",
        _table(tables.attainment(run)),
        "<h3>Why this policy</h3><ul>",
        *(f"<li>{e(r)}</li>" for r in rec.reasons),
        "</ul><h3>How to apply it</h3>",
    ]
    for name, text in apply_snippets(run):
        parts.append(
            f"<details{' open' if name.startswith('tuner') else ''}>"
            f"<summary>{e(name)}</summary><pre>{e(text)}</pre></details>"
        )
    parts.append(
        "<h3>Policy file (recommended.policy.json)</h3>"
        f'<pre id="recommended-policy">{e(run.recommended.to_json())}</pre></section>'
    )

    def row_class(row: pd.Series) -> str:
        return (
            "recommended"
            if row["Candidate"] == rec.label
            else ("baseline" if any(k in row["Role"] for k in ("rule of thumb", "current")) else "")
        )

    parts += [
        '<section id="candidates"><h2>All candidates side by side</h2>',
        f"<p>{len(run.candidates)} candidates, each simulated on every profile and seed. Cost is "
        "the mean over profiles; latency, error rate, SLO violation and recovery are the worst "
        "profile and seed; scale events are per run. ★ marks the Pareto front (no candidate is "
        "both cheaper and lower in SLO violation).</p>",
        '<div class="scroll">',
        _table(tables.side_by_side(run), row_class=row_class, swatches=colours, left=("Role",)),
        "</div></section>",
        '<section id="plots"><h2>Plots by profile</h2>',
    ]
    for profile in run.profiles:
        parts.append(f"<h3>{e(profile)}</h3>")
        parts += [_img(data, alt) for alt, data in images.get(f"profile:{profile}", [])]
    parts.append("</section>")
    if run.trials:
        parts += [
            '<section id="trials"><h2>Live trials: measured against simulated</h2>',
            _table(tables.trial_comparison(run), swatches=colours),
            *(_img(data, alt) for alt, data in images.get("trials", [])),
            "</section>",
        ]
    parts += [
        '<section id="inputs"><h2>Inputs and versions</h2>',
        _table(tables.inputs(run), left=("Value",)),
        "</section>",
        "</body></html>",
        "",
    ]
    return "\n".join(parts)


def _md(text: object) -> str:
    """Input text made inert in Markdown: HTML-like characters become entities."""
    return html.escape(str(text), quote=False)


def _md_table(df: pd.DataFrame) -> str:
    def cell(v: object) -> str:
        return _md(v).replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(cell(c) for c in df.columns) + " |", "|" + "---|" * len(df.columns)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in df.itertuples(index=False)]
    return "\n".join(lines)


def render_markdown(run: Run, limit: int = 15) -> str:
    """The report for a pull request or ticket: no images, the top of the table."""
    rec = run.recommendation
    title, sub = _heading(run)
    cand = run.candidates.set_index("candidate").loc[rec.label]
    verdict = "meets" if rec.meets_objective else "does **not** meet"
    out = [
        f"# {_md(title)}",
        "",
        _md(sub),
        "",
        f"**{rec.label}** {verdict} the objective on every profile and seed; expected monthly "
        f"cost **{tables.usd(cand['monthly_cost_usd'])}**.",
        "",
        _md_table(policy_values(run)),
        "",
        *_held_out_md(run),
        "## SLO attainment on each profile",
        "",
        _md_table(tables.attainment(run)),
        "",
        "## Why this policy",
        "",
        *(f"- {_md(r)}" for r in rec.reasons),
        "",
        "## How to apply it",
        "",
    ]
    for name, text in apply_snippets(run):
        lang = {"Terraform": "hcl", "CloudFormation": "yaml"}.get(name, "sh")
        out += [f"**{name}**", "", f"```{lang}", text.rstrip("\n"), "```", ""]
    out += [
        f"## Candidates (top {limit} of {len(run.candidates)}, plus baselines)",
        "",
        "All candidates are in `candidates.csv`; plots are in `report.html`.",
        "",
        _md_table(tables.side_by_side(run, limit=limit)),
        "",
    ]
    if run.trials:
        out += [
            "## Live trials: measured against simulated",
            "",
            _md_table(tables.trial_comparison(run)),
            "",
        ]
    out += ["## Inputs and versions", "", _md_table(tables.inputs(run)), ""]
    return "\n".join(out)
