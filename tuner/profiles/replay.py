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

from tuner.errors import ProfileError

# Piece kinds of a Profile: rate linear r0 -> r1, or diurnal sine (see profiles.build_profile).
LINEAR, SINE = 0, 1
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_DURATION_RE = re.compile(r"(\d+(?:\.\d*)?|\.\d+)\s*(ms|s|m|h|d)")


def parse_duration(value: Any, where: str) -> float:
    """Seconds from ``"90s"``, ``"15m"``, ``"1h30m"`` or a number of seconds; must be > 0."""
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
    if not (math.isfinite(seconds) and seconds > 0):
        raise ProfileError(f"{where}: duration must be > 0, got {value!r}")
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
    times, counts = read_replay_csv(csv)
    step = _interval(times, seg, where, csv)
    bins = np.rint((times - times[0]) / step).astype(np.int64)
    filled: np.ndarray = np.bincount(bins, weights=counts).astype(float)
    seen = np.bincount(bins) > 0
    gaps = str(seg.get("gaps", "interpolate"))
    if gaps not in ("interpolate", "zero"):
        raise ProfileError(f'{where}.gaps: must be "interpolate" or "zero", got {gaps!r}')
    if gaps == "interpolate" and not seen.all():
        idx = np.arange(len(filled))
        filled = np.interp(idx, idx[seen], filled[seen])
    edges = np.arange(len(filled) + 1) * step  # trace seconds from the first row
    lo = _replay_start(seg.get("start"), times[0], f"{where}.start")
    hi = edges[-1] if "limit" not in seg else lo + parse_duration(seg["limit"], f"{where}.limit")
    hi = min(hi, edges[-1])
    if hi <= lo:
        raise ProfileError(
            f"{where}.start: must fall inside the trace ({format_duration(edges[-1])} long)"
        )
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
    durs = (b[keep] - a[keep]) * time_scale
    new: list[Piece] = [
        (LINEAR, float(s), (float(r), float(r), 0.0, 0.0)) for s, r in zip(durs, rates, strict=True)
    ]
    total = format_duration(float(durs.sum()))
    line = f"replay {csv.name} {total} (x{scale:g} rate, x{time_scale:g} time)"
    return new, line, float(rates[-1])


def read_replay_csv(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """(epoch seconds, invocations) from a ``timestamp,invocations`` CSV, sorted by time."""
    import pandas as pd  # noqa: PLC0415 - only replays need pandas

    try:
        df = pd.read_csv(path)
    except FileNotFoundError:
        raise ProfileError(f"{path}: replay CSV not found") from None
    except (OSError, UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError) as e:
        raise ProfileError(f"{path}: cannot read the replay CSV: {e}") from e
    missing = {"timestamp", "invocations"} - set(df.columns)
    if missing:
        raise ProfileError(
            f"{path}: replay CSV needs columns timestamp,invocations, missing {sorted(missing)}"
        )
    if df.empty:
        raise ProfileError(f"{path}: replay CSV has no rows")
    ts = df["timestamp"]
    numeric = pd.to_numeric(ts, errors="coerce")
    if numeric.notna().all():
        secs = numeric.to_numpy(dtype=float)
    else:
        parsed = pd.to_datetime(ts, errors="coerce", utc=True, format="ISO8601")
        if parsed.isna().any():
            row = int(parsed.isna().to_numpy().argmax())
            raise ProfileError(
                f"{path}: line {row + 2}: timestamp must be ISO-8601 or epoch seconds, "
                f"got {ts.iloc[row]!r}"
            )
        secs = (parsed - pd.Timestamp(0, tz="UTC")).dt.total_seconds().to_numpy()
    inv = pd.to_numeric(df["invocations"], errors="coerce").to_numpy(dtype=float)
    bad = ~np.isfinite(inv) | (inv < 0)
    if bad.any():
        row = int(bad.argmax())
        raise ProfileError(
            f"{path}: line {row + 2}: invocations must be a number >= 0, "
            f"got {df['invocations'].iloc[row]!r}"
        )
    order = np.argsort(secs, kind="stable")
    return secs[order], inv[order]


def _interval(times: np.ndarray, seg: Mapping[str, Any], where: str, csv: Path) -> float:
    if "interval" in seg:
        return parse_duration(seg["interval"], f"{where}.interval")
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
    if value in (0, "0", "0s"):
        return 0.0
    return parse_duration(value, where)


def parse_rate(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ProfileError(f"{where}: must be a number of requests per second, got {value!r}")
    if value < 0:
        raise ProfileError(f"{where}: rate must be >= 0, got {value!r}")
    return float(value)


def _positive(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise ProfileError(f"{where}: must be a number > 0, got {value!r}")
    return float(value)


def format_duration(seconds: float) -> str:
    for unit, size in (("h", 3600), ("m", 60)):
        if seconds >= size and abs(seconds / size - round(seconds / size)) < 1e-9:
            return f"{round(seconds / size)}{unit}"
    return f"{seconds:g}s"
