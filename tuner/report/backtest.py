"""The backtest's files and its report section (Markdown and HTML), from a BacktestResult.

``write_backtest`` writes ``backtest.json`` (fitted values, scores, notes), ``backtest.csv`` (per
minute: recorded, fitted and default desired capacity, invocations), ``backtest.md`` and
``backtest.html``. ``section_markdown`` / ``section_html`` render the section from those files
alone, so ``tuner tune --backtest`` puts the same section in its report.
"""

from __future__ import annotations

import base64
import datetime as dt
import html
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from tuner.model.backtest import BacktestResult, Recording, Score
from tuner.report import plots
from tuner.report.tables import html_table

BACKTEST_JSON = "backtest.json"
BACKTEST_CSV = "backtest.csv"
ROBUSTNESS_CSV = "robustness.csv"
"""``tune --backtest``: the recommendation at the corners of the fitted values' uncertainty."""


def _num(x: float) -> float | None:
    return None if not math.isfinite(x) else round(float(x), 3)


def _score(s: Score) -> dict[str, Any]:
    return {
        "metric_lag_s": s.metric_lag_s,
        "boot_s": s.boot_s,
        "agreement": round(s.agreement, 6),
        "scale_out_errors_s": list(s.scale_out_errors_s),
        "scale_in_errors_s": list(s.scale_in_errors_s),
        "mean_scale_out_error_s": _num(s.mean_scale_out_error_s),
        "mean_abs_error_s": _num(s.mean_abs_error_s),
        "missed": s.missed,
        "extra": s.extra,
        "simulated_events": len(s.simulated),
    }


def _iso(t_s: float) -> str:
    return dt.datetime.fromtimestamp(t_s, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def to_doc(rec: Recording, result: BacktestResult) -> dict[str, Any]:
    f = result.fitted
    choices = rec.choices
    return {
        "window": {"start": _iso(rec.start_s), "minutes": rec.minutes, "warmup_s": rec.warmup_s},
        "fitted": {
            "boot_s": f.boot_s,
            "boot_spread_s": _num(f.boot_spread_s),
            "boot_uncertainty_s": _num(f.boot_uncertainty_s),
            "boot_samples": f.boot_samples,
            "metric_lag_s": f.metric_lag_s,
            "metric_lag_uncertainty_s": _num(f.metric_lag_uncertainty_s),
            "metric_lag_samples": f.metric_lag_samples,
        },
        "defaults": {
            "boot_s": result.defaults.boot_s,
            "metric_lag_s": result.defaults.metric_lag_s,
        },
        "alarm_shape": None
        if choices is None
        else {
            "high_datapoints": choices.high_datapoints,
            "low_datapoints": choices.low_datapoints,
            "low_datapoints_high_resolution": choices.low_datapoints_high_resolution,
            "low_ratio": choices.low_ratio,
        },
        "fitted_score": _score(result.fitted_score),
        "default_score": _score(result.default_score),
        "recorded": {
            "scale_outs": sum(1 for d in result.recorded if d.kind.value == "scale-out"),
            "scale_ins": sum(1 for d in result.recorded if d.kind.value == "scale-in"),
            "activities": len(rec.activities),
        },
        "policy_spans": [
            {"from": _iso(s.from_s), "policies": [p.label for p in s.policies]} for s in rec.spans
        ],
        "lag_scan": [
            {
                "metric_lag_s": s.metric_lag_s,
                "agreement": round(s.agreement, 6),
                "cost_s": round(s.cost_s, 3),
                "missed": s.missed,
                "extra": s.extra,
            }
            for s in result.lag_scan
        ],  # fmt: skip
        "notes": list(result.notes),
    }


def write_backtest(out: str | Path, rec: Recording, result: BacktestResult) -> Path:
    """Write the backtest's files into OUT; the path of backtest.json."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    minutes = result.minutes_table(rec.start_s)
    minutes["invocations"] = rec.invocations
    minutes.to_csv(out / BACKTEST_CSV, index=False)
    doc = to_doc(rec, result)
    path = out / BACKTEST_JSON
    path.write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
    (out / "backtest.md").write_text(
        "# Backtest\n\n" + section_markdown(out, level=2), encoding="utf-8"
    )
    page = (
        '<!doctype html><html><head><meta charset="utf-8"><title>Backtest</title>'
        '<meta http-equiv="Content-Security-Policy" content="default-src \'none\'; '
        "img-src data:; style-src 'unsafe-inline'\"><style>body{font-family:system-ui,sans-serif;"
        "max-width:1200px;margin:2rem auto;padding:0 1rem}table{border-collapse:collapse}"
        "td,th{border:1px solid #ccc;padding:.25rem .5rem}img{max-width:100%}</style></head>"
        f"<body><h1>Backtest</h1>{section_html(out)}</body></html>\n"
    )
    (out / "backtest.html").write_text(page, encoding="utf-8")
    return path


def _pm(value: Any) -> str:
    return "not identifiable" if value is None else f"± {float(value):.0f} s"


def summary_table(doc: dict[str, Any]) -> pd.DataFrame:
    """The section's table: fitted against default, one row per quantity."""
    f, d = doc["fitted"], doc["defaults"]
    fs, ds = doc["fitted_score"], doc["default_score"]

    def err(s: dict[str, Any]) -> str:
        v = s["mean_scale_out_error_s"]
        return "n/a" if v is None else f"{v:+.0f} s"

    def absolute(s: dict[str, Any]) -> str:
        v = s["mean_abs_error_s"]
        return "n/a" if v is None else f"{v:.0f} s"

    spread = "" if f["boot_spread_s"] is None else f", IQR {f['boot_spread_s']:.0f} s"
    rows = [
        (
            "boot_s",
            f"{f['boot_s']:.0f} s {_pm(f['boot_uncertainty_s'])} "
            f"({f['boot_samples']} scale-outs{spread})",
            f"{d['boot_s']:g} s",
        ),
        (
            "metric delay",
            f"{f['metric_lag_s']:.0f} s {_pm(f['metric_lag_uncertainty_s'])} "
            f"({f['metric_lag_samples']} decisions)",
            f"{d['metric_lag_s']:g} s",
        ),
        ("minutes agreeing", f"{fs['agreement']:.1%}", f"{ds['agreement']:.1%}"),
        ("mean scale-out time error", err(fs), err(ds)),
        ("mean absolute decision-time error", absolute(fs), absolute(ds)),
        (
            "missed / extra events",
            f"{fs['missed']} / {fs['extra']}",
            f"{ds['missed']} / {ds['extra']}",
        ),
    ]
    return pd.DataFrame(rows, columns=["", "fitted", "model defaults"])


def _read(out: Path) -> tuple[dict[str, Any], pd.DataFrame]:
    doc = json.loads((out / BACKTEST_JSON).read_text(encoding="utf-8"))
    return doc, pd.read_csv(out / BACKTEST_CSV)


def _reading(doc: dict[str, Any]) -> str:
    rec = doc["recorded"]
    return (
        f"Window from {doc['window']['start']}, {doc['window']['minutes']} minutes, "
        f"{rec['scale_outs']} recorded scale-outs and {rec['scale_ins']} scale-ins. The recorded "
        "demand was replayed through the model; 'minutes agreeing' is the share of minutes whose "
        "simulated desired capacity equals the one the scaling activities set; a decision-time "
        "error is simulated minus recorded (positive: the model decides later); missed events "
        "are recorded changes the model did not make within 10 minutes, extra ones the reverse."
    )


def section_markdown(out: str | Path, *, level: int = 2) -> str:
    doc, _ = _read(Path(out))
    table = summary_table(doc)
    lines = [
        f"{'#' * level} Backtest: the model against the endpoint's own history",
        "",
        _reading(doc),
        "",
        "| | fitted | model defaults |",
        "|---|---|---|",
        *(f"| {r.iloc[0]} | {r.iloc[1]} | {r.iloc[2]} |" for _, r in table.iterrows()),
        "",
        "Policies in force: "
        + "; ".join(f"from {s['from']}: {', '.join(s['policies'])}" for s in doc["policy_spans"]),
        "",
    ]
    lines += [f"- {n}" for n in doc["notes"]]
    if (Path(out) / ROBUSTNESS_CSV).is_file():
        frame = pd.read_csv(Path(out) / ROBUSTNESS_CSV)
        lines += ["", _robust_text(frame), "", "| " + " | ".join(frame.columns) + " |"]
        lines.append("|" + "---|" * len(frame.columns))
        lines += [
            "| " + " | ".join(str(v) for v in r) + " |" for r in frame.itertuples(index=False)
        ]
    return "\n".join(lines) + "\n"


def section_html(out: str | Path) -> str:
    out = Path(out)
    doc, minutes = _read(out)
    table = summary_table(doc)
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in table.columns)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(str(v))}</td>" for v in row) + "</tr>"
        for row in table.itertuples(index=False)
    )
    fig = plots.backtest_figure(
        minutes,
        np.asarray(minutes["invocations"], dtype=float),
        "Desired capacity: recorded against the model",
    )
    uri = "data:image/png;base64," + base64.b64encode(plots.png(fig)).decode("ascii")
    spans = "; ".join(f"from {s['from']}: {', '.join(s['policies'])}" for s in doc["policy_spans"])
    notes = "".join(f"<li>{html.escape(n)}</li>" for n in doc["notes"])
    robust = ""
    if (out / ROBUSTNESS_CSV).is_file():
        frame = pd.read_csv(out / ROBUSTNESS_CSV)
        robust = f"<p>{html.escape(_robust_text(frame))}</p>" + html_table(frame)
    return (
        "<section><h2>Backtest: the model against the endpoint's own history</h2>"
        f"<p>{html.escape(_reading(doc))}</p>"
        f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
        f"<p>Policies in force: {html.escape(spans)}</p>"
        f"{'<ul>' + notes + '</ul>' if notes else ''}"
        f'<img src="{uri}" alt="recorded against simulated desired capacity">{robust}</section>'
    )


def _robust_text(frame: pd.DataFrame) -> str:
    held = int(frame["meets_objective"].sum())
    verdict = "holds" if held == len(frame) else "does NOT hold"
    return (
        f"Robustness: the recommended policy was simulated at every combination of the fitted "
        f"boot time and metric delay minus, at and plus their uncertainty; the objective "
        f"{verdict} at {held} of {len(frame)} combinations."
    )
