"""Profile files: the TOML format of a traffic profile, parsed into a
:class:`~tuner.profiles.profile.Profile`.

A profile file (``*.toml``) is a name and segments played in order; rates are requests per second
of the whole endpoint, durations are ``"90s"``, ``"15m"``, ``"2h"``, ``"1d"``, ``"1h30m"`` (a bare
number is seconds)::

    name = "launch-spike"
    noise = "poisson"        # optional: "none" (default) or "poisson"
    seed = 7                 # optional: seeds the noise (default 0)
    [[segment]]
    hold = "20m"             # constant rate
    rps = 10
    [[segment]]
    ramp = "2m"              # linear from from_rps (default: the rate before) to to_rps
    to_rps = 100
    [[segment]]
    spike = "10m"            # baseline_rps, then at `at` rise to peak_rps, hold, fall back
    baseline_rps = 100
    peak_rps = 400
    at = "1m"
    rise = "30s"
    hold = "2m"
    fall = "1m"
    [[segment]]
    sine = "24h"             # diurnal: min_rps at phase 0, max_rps half a period later
    period = "24h"
    min_rps = 5
    max_rps = 50
    [[segment]]
    replay = "history.csv"   # timestamp,invocations at any regular interval (path relative to file)
    time_scale = 0.1         # a 30-minute interval plays in 3 minutes, at the same rate
    rate_scale = 0.5         # or peak_rps = 80: scale so the busiest interval runs at 80 rps
    start = "2d"             # optional window: offset from the first row, or an ISO timestamp
    limit = "1d"             # optional: how much trace time to play (before time_scale)
    gaps = "interpolate"     # missing intervals: "interpolate" (default) or "zero"
"""

from __future__ import annotations

import math
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from tuner.errors import ProfileError
from tuner.profiles.profile import Noise, Profile, build_profile
from tuner.profiles.replay import (
    LINEAR,
    SINE,
    Piece,
    Pieces,
    format_duration,
    parse_duration,
    parse_rate,
    replay_pieces,
    replay_start_epoch,
    replay_tokens,
)


def _toml_problem(path: Path, error: Exception) -> str:
    """Why a profile file failed to parse; a replay CSV given in its place says what to do."""
    first = path.read_text(encoding="utf-8").lstrip().partition("\n")[0].lower()
    if "," in first and "timestamp" in first:
        return (
            "this is a replay CSV (timestamp,invocations), not a profile TOML: name the file "
            "*.csv and pass it to --profile directly, or write a TOML with "
            f'[[segment]] replay = "{path.name}"'
        )
    return f"not valid TOML: {error}"


def load_profile(path: str | Path) -> Profile:
    """Read a profile TOML file; replay CSV paths are relative to the file."""
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as e:
        raise ProfileError(f"{path}: cannot read the profile: {e.strerror or e}") from e
    except UnicodeDecodeError as e:
        raise ProfileError(f"{path}: not a text file (UTF-8): cannot be a profile TOML") from e
    except tomllib.TOMLDecodeError as e:
        raise ProfileError(f"{path}: {_toml_problem(path, e)}") from e
    data.setdefault("name", path.name.removesuffix(".toml"))
    return parse_profile(data, base_dir=path.parent, source=str(path))


def parse_profile(
    data: Mapping[str, Any], *, base_dir: Path | None = None, source: str = "profile"
) -> Profile:
    """A Profile from the parsed TOML mapping (see the module docstring for the keys)."""
    if not isinstance(data, Mapping):
        raise ProfileError(f"{source}: a profile must be a table, got {type(data).__name__}")
    _no_unknown(data, {"name", "description", "noise", "seed", "segment", "start"}, source, "")
    name = data.get("name", "profile")
    if not isinstance(name, str) or not name.strip():
        raise ProfileError(f"{source}: name must be a non-empty string, got {name!r}")
    try:
        noise = Noise(str(data.get("noise", "none")).lower())
    except ValueError:
        raise ProfileError(
            f'{source}: noise must be "none" or "poisson", got {data.get("noise")!r}'
        ) from None
    seed = data.get("seed", 0)
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ProfileError(f"{source}: seed must be an integer >= 0, got {seed!r}")
    segs = data.get("segment")
    if not isinstance(segs, list) or not segs:
        raise ProfileError(f"{source}: needs at least one [[segment]] table")
    pieces: list[tuple[int, float, tuple[float, float, float, float]]] = []
    lines: list[str] = []
    prompts: list[np.ndarray] = []
    outputs: list[np.ndarray] = []
    prev_rps = 0.0
    for k, seg in enumerate(segs):
        where = f"{source}: segment[{k + 1}]"
        if not isinstance(seg, Mapping):
            raise ProfileError(f"{where}: must be a table, got {seg!r}")
        new, line, prev_rps = _segment(seg, where, prev_rps, base_dir or Path("."))
        pieces += new
        lines.append(line)
        if "replay" in seg and (found := replay_tokens(seg, where, base_dir or Path("."))):
            prompts.append(found[0])
            outputs.append(found[1])
    start_epoch: float | None = None
    if "start" in data:
        start_epoch = _absolute(data["start"], f"{source}: start")
    elif isinstance(segs[0], Mapping) and "replay" in segs[0]:
        start_epoch = replay_start_epoch(segs[0], f"{source}: segment[1]", base_dir or Path("."))
    return build_profile(
        name,
        pieces,
        noise=noise,
        seed=seed,
        segments=tuple(lines),
        start_epoch_s=start_epoch,
        tokens=(np.concatenate(prompts), np.concatenate(outputs)) if prompts else None,
    )


def _absolute(value: Any, where: str) -> float:
    """Epoch seconds of an ISO-8601 instant (UTC unless it names an offset)."""
    from datetime import UTC, datetime

    if isinstance(value, datetime):
        moment = value
    elif isinstance(value, str):
        try:
            moment = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        except ValueError:
            raise ProfileError(
                f'{where}: must be an ISO-8601 instant such as "2024-06-03T08:00:00Z", '
                f"got {value!r}"
            ) from None
    else:
        raise ProfileError(f'{where}: must be an ISO-8601 instant such as "2024-06-03T08:00:00Z"')
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()


_KINDS = {
    # kind key checked first wins: spike and sine tables also carry a `hold`/`period` key.
    "spike": {"spike", "baseline_rps", "peak_rps", "at", "rise", "hold", "fall"},
    "sine": {"sine", "period", "min_rps", "max_rps", "phase"},
    "replay": {
        "replay",
        "rate_scale",
        "peak_rps",
        "time_scale",
        "start",
        "limit",
        "gaps",
        "interval",
    },
    "ramp": {"ramp", "from_rps", "to_rps"},
    "hold": {"hold", "rps"},
}


def _segment(seg: Mapping[str, Any], where: str, prev_rps: float, base_dir: Path) -> Pieces:
    kind = next((k for k in _KINDS if k in seg), None)
    if kind is None:
        raise ProfileError(f"{where}: needs one of the keys {', '.join(sorted(_KINDS))}")
    _no_unknown(seg, _KINDS[kind], where, f" for a {kind} segment")

    def rate(key: str, default: float | None = None) -> float:
        if key not in seg and default is not None:
            return default
        return parse_rate(seg.get(key), f"{where}.{key}")

    def dur(key: str, default: float | None = None) -> float:
        if key not in seg and default is not None:
            return default
        return parse_duration(seg.get(key), f"{where}.{key}")

    if kind == "hold":
        d, r = dur("hold"), rate("rps")
        return [(LINEAR, d, (r, r, 0, 0))], f"hold {format_duration(d)} at {r:g} rps", r
    if kind == "ramp":
        d, r0, r1 = dur("ramp"), rate("from_rps", prev_rps), rate("to_rps")
        return [(LINEAR, d, (r0, r1, 0, 0))], f"ramp {format_duration(d)} {r0:g} -> {r1:g} rps", r1
    if kind == "spike":
        d, base, peak = dur("spike"), rate("baseline_rps", prev_rps), rate("peak_rps")
        at = 0.0 if seg.get("at") in (None, 0, "0s", "0") else dur("at")
        rise, hold, fall = dur("rise"), dur("hold"), dur("fall")
        used = at + rise + hold + fall
        if used > d + 1e-9:
            raise ProfileError(
                f"{where}: at + rise + hold + fall <= spike must hold, "
                f"got {format_duration(used)} > {format_duration(d)}"
            )
        shape = [(at, base, base), (rise, base, peak), (hold, peak, peak), (fall, peak, base)]
        new: list[Piece] = [(LINEAR, s, (a, b, 0.0, 0.0)) for s, a, b in shape]
        new.append((LINEAR, d - used, (base, base, 0, 0)))
        return (
            new,
            f"spike {format_duration(d)} {base:g} -> {peak:g} rps at {format_duration(at)}",
            base,
        )
    if kind == "sine":
        d, lo, hi = dur("sine"), rate("min_rps"), rate("max_rps")
        if lo > hi:
            raise ProfileError(f"{where}: min_rps <= max_rps must hold, got {lo:g} > {hi:g}")
        period = dur("period", d)
        phase = 0.0 if seg.get("phase") in (None, 0, "0s", "0") else dur("phase")
        end_rps = lo + (hi - lo) * (1 - math.cos(2 * math.pi * (d + phase) / period)) / 2
        line = f"sine {format_duration(d)} {lo:g}..{hi:g} rps, period {format_duration(period)}"
        return [(SINE, d, (lo, hi, period, phase))], line, end_rps
    return replay_pieces(seg, where, base_dir)


def _no_unknown(data: Mapping[str, Any], allowed: set[str], where: str, what: str) -> None:
    unknown = sorted(set(data) - allowed)
    if unknown:
        prefix = f"{where}: " if where else ""
        raise ProfileError(
            f"{prefix}unknown key {unknown[0]!r}{what} (allowed: {', '.join(sorted(allowed))})"
        )
