"""The load generator's per-request records read back, counted per period and summarised.

Per-request CSV (``requests.csv``), one row per request the profile scheduled, sorted by seq:

=============  =====  ====================================================================
column         type   meaning
=============  =====  ====================================================================
seq            int    index of the request in the profile's schedule, from 0
scheduled_s    float  profile time it was due (virtual seconds from profile start)
sent_epoch_s   float  wall-clock epoch when it left (when it was due, if never sent)
latency_ms     float  from sending to the full response; empty if not sent
status         int    HTTP status; 0 for no response (connection failure, timeout, not sent)
error          str    empty on success, else one of ERROR_KINDS
worker         int    Locust process that sent it (0 without workers)
ttft_ms        float  streaming: sending to the first PayloadPart (time to first token)
itl_mean_ms    float  streaming: mean gap between consecutive tokens
itl_p99_ms     float  streaming: 99th percentile of those gaps
prompt_tokens  int    streaming: words of the prompt sent
output_tokens  int    streaming: token lines received
=============  =====  ====================================================================

The streaming columns are empty for InvokeEndpoint requests (``--stream`` off).

With workers, ``sent_epoch_s`` is on the master's clock: each worker measures its offset from
the master's clock and converts; the offsets are in ``summary.json`` (``workers``).

With ``--speed S`` a request due at profile time t leaves at start + t/S, so profile time of a
send is ``(sent_epoch_s - start_epoch_s) * S``. Latencies are wall-clock milliseconds everywhere
(requests, periods, summary); against the emulator's virtual clock, x S gives virtual ms.
"""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from tuner.errors import LoadTestError
from tuner.live.streaming import stream_period_columns, stream_summary
from tuner.profiles.profile import Profile
from tuner.records import REQUEST_COLUMNS, STREAM_COLUMNS

if TYPE_CHECKING:
    from tuner.live.loadgen import LoadTestConfig

ERROR_KINDS = (
    "throttled",
    "model_error",
    "not_ready",
    "unavailable",
    "server_error",
    "client_error",
    "timeout",
    "connection",
    "inflight_cap",
    "stream_error",
    "no_capacity",
)


def read_requests(path: Path) -> pd.DataFrame:
    """The per-request CSV as a DataFrame (error '' on success)."""
    df = pd.read_csv(
        path,
        dtype={"error": "string"},
        keep_default_na=False,
        na_values={c: [""] for c in ("latency_ms", *STREAM_COLUMNS)},
    )
    missing = set(REQUEST_COLUMNS) - set(STREAM_COLUMNS) - set(df.columns)
    if missing:
        raise LoadTestError(f"{path}: request records lack columns {sorted(missing)}")
    for col in STREAM_COLUMNS:  # records from before streaming have none
        if col not in df.columns:
            df[col] = np.nan
    df["error"] = df["error"].fillna("").astype(str)
    return df


def start_epoch(requests: pd.DataFrame, speed: float) -> float:
    """Wall-clock epoch of profile time 0 (no request leaves before it is due)."""
    if requests.empty:
        return float("nan")
    return float((requests["sent_epoch_s"] - requests["scheduled_s"] / speed).min())


def per_period(
    requests: pd.DataFrame,
    profile: Profile,
    *,
    period_s: float,
    speed: float,
    start_epoch_s: float,
    seed: int | None = None,
) -> pd.DataFrame:
    """One row per profile period: what was due, sent, answered, failed, and how fast.

    ``sent`` counts by actual send time (so a lagging generator shows); everything else counts
    the requests due in the period. Latency percentiles are over successful requests.
    """
    n = len(profile.counts(period_s))
    due = np.clip((requests["scheduled_s"].to_numpy() // period_s).astype(int), 0, n - 1)
    sent_mask = (requests["error"] != "inflight_cap").to_numpy()
    sent_t = (requests["sent_epoch_s"].to_numpy() - start_epoch_s) * speed
    sent_bin = np.clip((sent_t // period_s).astype(int), 0, n - 1)
    ok = ((requests["status"] // 100 == 2) & (requests["error"] == "")).to_numpy()
    answered = (requests["status"] > 0).to_numpy()
    expected = profile.counts(period_s, seed=seed)
    frame = {
        "t_s": np.arange(n) * period_s,
        "profile_requests": expected,
        "scheduled": np.bincount(due, minlength=n),
        "sent": np.bincount(sent_bin[sent_mask], minlength=n),
        "completed": np.bincount(due[answered], minlength=n),
        "ok": np.bincount(due[ok], minlength=n),
    }
    errors = requests["error"].to_numpy()
    for kind in ERROR_KINDS:
        frame[f"failed_{kind}"] = np.bincount(due[errors == kind], minlength=n)
    table = pd.DataFrame(frame)
    lat = pd.DataFrame({"bin": due[ok], "ms": requests["latency_ms"].to_numpy()[ok]})
    q = lat.groupby("bin")["ms"].quantile([0.5, 0.9, 0.99]).unstack()
    for p, col in ((0.5, "latency_p50_ms"), (0.9, "latency_p90_ms"), (0.99, "latency_p99_ms")):
        table[col] = q[p].reindex(range(n)).to_numpy() if p in q else np.nan
    widths = np.minimum(period_s, profile.duration_s - table["t_s"].to_numpy())
    table["profile_rps"] = expected / widths
    table["achieved_rps"] = table["sent"] / widths
    if "ttft_ms" in requests.columns and requests["ttft_ms"].notna().any():
        stream_period_columns(table, requests, due, ok, widths)
    return table


def summarize(
    requests: pd.DataFrame,
    periods: pd.DataFrame,
    config: LoadTestConfig,
    profile: Profile,
    start: float,
) -> dict[str, Any]:
    """Headline numbers of a run (summary.json)."""
    ok = (requests["status"] // 100 == 2) & (requests["error"] == "")
    lat = requests.loc[ok, "latency_ms"]
    sent = requests[requests["error"] != "inflight_cap"]
    lag = (sent["sent_epoch_s"] - start - sent["scheduled_s"] / config.speed) * 1000
    kinds = requests["error"][requests["error"] != ""].value_counts().to_dict()
    cfg = {
        f.name: str(v) if isinstance(v := getattr(config, f.name), Path) else v
        for f in fields(config)
        if f.name not in ("env", "profile")
    }
    return {
        "profile": profile.name,
        "duration_s": profile.duration_s,
        "profile_requests": profile.total_requests,
        "scheduled": int(len(requests)),
        "sent": int(len(sent)),
        "ok": int(ok.sum()),
        "failures": {k: int(v) for k, v in kinds.items()},
        "error_rate": float(1 - ok.mean()) if len(requests) else 0.0,
        "latency_ms": {
            f"p{int(q * 100)}": float(lat.quantile(q)) if len(lat) else None
            for q in (0.5, 0.9, 0.99)
        },
        "send_lag_ms": {
            "p50": float(lag.quantile(0.5)),
            "p99": float(lag.quantile(0.99)),
            "max": float(lag.max()),
        }
        if len(lag)
        else {},
        "start_epoch_s": start,
        "config": cfg,
        **stream_summary(requests, ok),
    }
