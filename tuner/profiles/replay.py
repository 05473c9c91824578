"""Replay segments: a recorded ``timestamp,invocations`` trace played as profile pieces.

``read_replay_csv`` reads the trace; ``replay_pieces`` turns a ``replay`` segment (keys in
:mod:`tuner.profiles.profile`) into linear pieces: the interval inferred from the rows unless
given, gaps
filled, the ``start``/``limit`` window cut, rate and time scaled.

The value parsers every segment kind shares (durations, rates) live here too, so that
:mod:`tuner.profiles.profile` imports this module and never the other way round.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from tuner.errors import ProfileError, plain

# Piece kinds of a Profile: rate linear r0 -> r1, or diurnal sine (see profiles.build_profile).
LINEAR, SINE = 0, 1
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_DURATION_RE = re.compile(r"(\d+(?:\.\d*)?|\.\d+)\s*(ms|s|m|h|d)")
MAX_RPS = 1e6
"""Highest rate a profile may ask for: a million requests a second, far beyond any endpoint."""
MAX_PROFILE_S = 455 * 86400.0
"""Longest a profile (or one segment, or a replayed trace) may be: 455 days, as long as
CloudWatch keeps any metric history (15 months of 1-hour data), so longer traffic was never
observed; the simulator holds every period of it in memory."""


def parse_duration(value: Any, where: str, *, allow_zero: bool = False) -> float:
    """Seconds from ``"90s"``, ``"15m"``, ``"1h30m"`` or a number of seconds; must be > 0
    (or >= 0 with ``allow_zero``) and at most ``MAX_PROFILE_S``."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise ProfileError(f'{where}: must be a duration such as "90s" or "15m", got {value!r}')
    if isinstance(value, str):
        text = value.strip().lower()
        parts = _DURATION_RE.findall(text)
        if not parts or _DURATION_RE.sub("", text).strip():
            raise ProfileError(
                f'{where}: must be a duration such as "90s", "15m", "2h", got {value!r}'
            )
        seconds = sum(float(n) * _UNITS[u] for n, u in parts)
    else:
        seconds = float(value)
    if not (math.isfinite(seconds) and (seconds >= 0 if allow_zero else seconds > 0)):
        rule = ">= 0" if allow_zero else "> 0"
        raise ProfileError(f"{where}: duration must be {rule}, got {value!r}")
    if seconds > MAX_PROFILE_S:
        raise ProfileError(
            f"{where}: duration must be at most 455 days (CloudWatch's longest retention), "
            f"got {value!r}"
        )
    return seconds


Piece = tuple[int, float, tuple[float, float, float, float]]
"""(kind, duration s, parameters): one stretch of a profile's rate."""
Pieces = tuple[list[Piece], str, float]
"""A segment's pieces, its one-line description and the rate it ends at."""


def replay_pieces(seg: Mapping[str, Any], where: str, base_dir: Path) -> Pieces:
    path = seg["replay"]
    if not isinstance(path, str) or not path:
        raise ProfileError(f"{where}.replay: must be a CSV path, got {path!r}")
    csv = (base_dir / path).expanduser()
    times, counts, tokens = _read_cached(csv)
    step = _interval(times, seg, where, csv, per_request=tokens is not None)
    span_s = float(times[-1] - times[0])
    if span_s > MAX_PROFILE_S:
        raise ProfileError(
            f"{csv}: the trace spans {span_s / 86400:,.0f} days from its first to its last row; "
            "at most 455 days (CloudWatch's longest retention) can be replayed"
        )
    bins = np.rint((times - times[0]) / step).astype(np.int64)
    filled: np.ndarray = np.bincount(bins, weights=counts).astype(float)
    seen = np.bincount(bins) > 0
    # A request trace's empty intervals had no requests; a metric history's were not recorded.
    gaps = str(seg.get("gaps", "interpolate" if tokens is None else "zero"))
    if gaps not in ("interpolate", "zero"):
        raise ProfileError(f'{where}.gaps: must be "interpolate" or "zero", got {gaps!r}')
    if gaps == "interpolate" and not seen.all():
        idx = np.arange(len(filled))
        filled = np.interp(idx, idx[seen], filled[seen])
    edges = np.arange(len(filled) + 1) * step  # trace seconds from the first row
    lo, hi = _window(seg, where, times, float(edges[-1]))
    a, b = np.clip(edges[:-1], lo, hi), np.clip(edges[1:], lo, hi)
    keep = b > a
    rates = filled[keep] / step
    time_scale = _positive(seg.get("time_scale", 1.0), f"{where}.time_scale")
    if "rate_scale" in seg and "peak_rps" in seg:
        raise ProfileError(f"{where}: give rate_scale or peak_rps, not both")
    if "peak_rps" in seg:
        top = rates.max()
        scale = parse_rate(seg["peak_rps"], f"{where}.peak_rps") / top if top > 0 else 0.0
    else:
        scale = _positive(seg.get("rate_scale", 1.0), f"{where}.rate_scale")
    rates = rates * scale
    if rates.size and rates.max() > MAX_RPS:
        raise ProfileError(
            f"{where}: the replay peaks at {rates.max():g} rps after scaling; "
            f"at most {MAX_RPS:g} rps"
        )
    durs = (b[keep] - a[keep]) * time_scale
    new: list[Piece] = [
        (LINEAR, float(s), (float(r), float(r), 0.0, 0.0)) for s, r in zip(durs, rates, strict=True)
    ]
    total = format_duration(float(durs.sum()))
    line = f"replay {csv.name} {total} (x{scale:g} rate, x{time_scale:g} time)"
    return new, line, float(rates[-1])


def _window(
    seg: Mapping[str, Any], where: str, times: np.ndarray, end_s: float
) -> tuple[float, float]:
    """The [lo, hi) trace seconds (from the first row) a replay segment plays."""
    lo = _replay_start(seg.get("start"), times[0], f"{where}.start")
    hi = end_s if "limit" not in seg else lo + parse_duration(seg["limit"], f"{where}.limit")
    hi = min(hi, end_s)
    if hi <= lo:
        raise ProfileError(
            f"{where}.start: must fall inside the trace ({format_duration(end_s)} long)"
        )
    return lo, hi


def replay_tokens(
    seg: Mapping[str, Any], where: str, base_dir: Path
) -> tuple[np.ndarray, np.ndarray] | None:
    """(prompt, output) tokens of each request a replay segment plays, in time order; None when
    its CSV is a ``timestamp,invocations`` history rather than a request trace."""
    times, _, tokens = _read_cached((base_dir / str(seg["replay"])).expanduser())
    if tokens is None:
        return None
    step = _interval(times, seg, where, Path(str(seg["replay"])), per_request=True)
    bins = np.rint((times - times[0]) / step)
    lo, hi = _window(seg, where, times, float((bins[-1] + 1) * step))
    # A row plays where its interval starts; the window keeps the intervals it overlaps.
    keep = (bins * step + step > lo) & (bins * step < hi)
    return tokens[0][keep], tokens[1][keep]


def replay_start_epoch(seg: Mapping[str, Any], where: str, base_dir: Path) -> float | None:
    """Epoch seconds of the first instant a replay segment plays; None unless time_scale is 1
    (a compressed replay's profile seconds are not wall-clock seconds)."""
    if float(seg.get("time_scale", 1.0)) != 1.0:
        return None
    times, _, _ = _read_cached((base_dir / str(seg["replay"])).expanduser())
    return float(times[0]) + _replay_start(seg.get("start"), times[0], f"{where}.start")


TOKEN_TRACE_COLUMNS = ("TIMESTAMP", "ContextTokens", "GeneratedTokens")
"""An LLM request trace (the Azure LLM inference traces' columns): one row per request."""

Tokens = tuple[np.ndarray, np.ndarray]
_CACHE: dict[tuple[str, float], tuple[np.ndarray, np.ndarray, Tokens | None]] = {}


def _read_cached(path: Path) -> tuple[np.ndarray, np.ndarray, Tokens | None]:
    """read_trace, once per file version (a profile reads its replay for pieces and tokens)."""
    try:
        key = (str(path.resolve()), path.stat().st_mtime)
    except OSError:
        return read_trace(path)
    if key not in _CACHE:
        if len(_CACHE) >= 4:
            _CACHE.pop(next(iter(_CACHE)))
        _CACHE[key] = read_trace(path)
    return _CACHE[key]


def read_replay_csv(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """(epoch seconds, invocations) from a ``timestamp,invocations`` CSV, sorted by time; a
    request trace (``TIMESTAMP,ContextTokens,GeneratedTokens``) counts 1 per row."""
    times, counts, _ = read_trace(path)
    return times, counts


def read_trace(path: Path) -> tuple[np.ndarray, np.ndarray, Tokens | None]:
    """(epoch seconds, invocations, (prompt, output) tokens or None), sorted by time."""
    import pandas as pd  # noqa: PLC0415 - only replays need pandas

    try:
        df = pd.read_csv(path)
    except FileNotFoundError:
        raise ProfileError(f"{path}: replay CSV not found") from None
    except (OSError, UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError) as e:
        raise ProfileError(f"{path}: cannot read the replay CSV: {e}") from e
    if set(TOKEN_TRACE_COLUMNS) & set(df.columns):
        return _token_trace(path, df)
    missing = {"timestamp", "invocations"} - set(df.columns)
    if missing:
        raise ProfileError(
            f"{path}: replay CSV needs columns timestamp,invocations, missing {sorted(missing)}"
        )
    if df.empty:
        raise ProfileError(f"{path}: replay CSV has no rows")
    secs = _epoch_seconds(path, df["timestamp"])
    inv = pd.to_numeric(df["invocations"], errors="coerce").to_numpy(dtype=float)
    bad = ~np.isfinite(inv) | (inv < 0)
    if bad.any():
        row = int(bad.argmax())
        raise ProfileError(
            f"{path}: line {row + 2}: invocations must be a number >= 0, "
            f"got {plain(df['invocations'].iloc[row])!r}"
        )
    order = np.argsort(secs, kind="stable")
    return secs[order], inv[order], None


def _token_trace(path: Path, df: Any) -> tuple[np.ndarray, np.ndarray, Tokens]:
    import pandas as pd  # noqa: PLC0415

    missing = [c for c in TOKEN_TRACE_COLUMNS if c not in df.columns]
    if missing:
        raise ProfileError(
            f"{path}: a request trace needs columns {','.join(TOKEN_TRACE_COLUMNS)}, "
            f"missing {','.join(missing)}"
        )
    if df.empty:
        raise ProfileError(f"{path}: request trace has no rows")
    secs = _epoch_seconds(path, df["TIMESTAMP"])
    counts = []
    for col in TOKEN_TRACE_COLUMNS[1:]:
        raw = pd.to_numeric(df[col], errors="coerce").to_numpy(dtype=float)
        bad = ~np.isfinite(raw) | (raw != np.rint(raw)) | (raw < 0)
        if bad.any():
            row = int(bad.argmax())
            raise ProfileError(
                f"{path}: line {row + 2}: {col} must be an integer >= 0, "
                f"got {plain(df[col].iloc[row])!r}"
            )
        counts.append(raw.astype(np.int64))
    order = np.argsort(secs, kind="stable")
    return secs[order], np.ones(len(secs)), (counts[0][order], counts[1][order])


def _epoch_seconds(path: Path, ts: Any) -> np.ndarray:
    """Epoch seconds of a timestamp column: numbers, or ISO-8601 (UTC unless it names a zone)."""
    import pandas as pd  # noqa: PLC0415

    numeric = pd.to_numeric(ts, errors="coerce")
    if numeric.notna().all():
        secs = numeric.to_numpy(dtype=float)
        bad_ts = ~np.isfinite(secs)
        if bad_ts.any():
            row = int(bad_ts.argmax())
            raise ProfileError(
                f"{path}: line {row + 2}: timestamp must be a finite epoch second or ISO-8601, "
                f"got {plain(ts.iloc[row])!r}"
            )
    else:
        parsed = pd.to_datetime(ts, errors="coerce", utc=True, format="ISO8601")
        if parsed.isna().any():
            row = int(parsed.isna().to_numpy().argmax())
            raise ProfileError(
                f"{path}: line {row + 2}: timestamp must be ISO-8601 or epoch seconds, "
                f"got {plain(ts.iloc[row])!r}"
            )
        secs = (parsed - pd.Timestamp(0, tz="UTC")).dt.total_seconds().to_numpy()
    return np.asarray(secs, dtype=float)


def _interval(
    times: np.ndarray, seg: Mapping[str, Any], where: str, csv: Path, *, per_request: bool = False
) -> float:
    if "interval" in seg:
        return parse_duration(seg["interval"], f"{where}.interval")
    if per_request:
        return 1.0  # one row per request: spread each second's requests over that second
    diffs = np.diff(times)
    diffs = diffs[diffs > 0]
    if not diffs.size:
        raise ProfileError(f"{csv}: needs 2 rows at distinct times to infer the interval")
    # The commonest step (smallest on ties) shrugs off gaps and the odd off-grid row.
    steps, seen = np.unique(np.maximum(np.rint(diffs), 1), return_counts=True)
    return float(steps[seen.argmax()])


def _replay_start(value: Any, first_epoch_s: float, where: str) -> float:
    if value is None:
        return 0.0
    if isinstance(value, str) and re.match(r"^\d{4}-\d\d-\d\d", value.strip()):
        import pandas as pd  # noqa: PLC0415

        try:
            epoch = pd.Timestamp(value.strip())
        except ValueError:
            raise ProfileError(f"{where}: must be an ISO timestamp, got {value!r}") from None
        epoch = epoch.tz_localize("UTC") if epoch.tzinfo is None else epoch
        seconds = float((epoch - pd.Timestamp(0, tz="UTC")).total_seconds())
        return max(seconds - first_epoch_s, 0.0)
    return parse_duration(value, where, allow_zero=True)


def parse_rate(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ProfileError(f"{where}: must be a number of requests per second, got {value!r}")
    if value < 0:
        raise ProfileError(f"{where}: rate must be >= 0, got {value!r}")
    if value > MAX_RPS:
        raise ProfileError(f"{where}: rate must be at most {MAX_RPS:g} rps, got {value!r}")
    return float(value)


def _positive(value: Any, where: str) -> float:
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not (math.isfinite(value) and value > 0)
    ):
        raise ProfileError(f"{where}: must be a number > 0, got {value!r}")
    return float(value)


def format_duration(seconds: float) -> str:
    for unit, size in (("h", 3600), ("m", 60)):
        if seconds >= size and abs(seconds / size - round(seconds / size)) < 1e-9:
            return f"{round(seconds / size)}{unit}"
    return f"{seconds:g}s"
