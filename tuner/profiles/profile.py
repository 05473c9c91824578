"""Traffic profiles: the demand an endpoint must survive, as a rate over profile time.

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

Each replayed count is spread evenly over its interval; off-grid rows go to the nearest interval
(:mod:`tuner.profiles.replay` reads the CSV). Everything here is pure numpy: the simulator, the
emulator
and the load generator share it.
"""

from __future__ import annotations

import enum
import math
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from tuner.errors import ProfileError
from tuner.profiles.replay import (
    LINEAR,
    MAX_PROFILE_S,
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

# Poisson noise is drawn per block of this many profile seconds, so arrivals() in any window and
# counts() for any period that is a multiple of it come from one realisation (10 s is the
# shortest CloudWatch metric period target tracking uses).
NOISE_BLOCK_S = 10.0


class TrafficProfile(Protocol):
    """What the simulator and the search need of a profile: a name, a length, counts per period.

    :class:`Profile` is the one the package builds; anything with these members can be simulated
    (a test's hand-made demand, a window of a replay).
    """

    @property
    def name(self) -> str: ...

    @property
    def duration_s(self) -> float: ...

    def counts(self, period_s: float, *, seed: int | None = None) -> np.ndarray:
        """Requests per period of ``period_s`` from t = 0 (seeded where the profile is noisy)."""
        ...

    def opening_rps(self, window_s: float = 300.0) -> float:
        """Mean rate over the first ``window_s``: what the endpoint served before t = 0."""
        ...


class Noise(enum.StrEnum):
    """How arrivals scatter around the profile's rate."""

    NONE = "none"
    POISSON = "poisson"


@dataclass(frozen=True)
class Profile:
    """A traffic profile: expected rate of the whole endpoint over profile seconds [0, duration)."""

    name: str
    duration_s: float
    noise: Noise = Noise.NONE
    seed: int = 0
    segments: tuple[str, ...] = ()
    """One human-readable line per segment, for listings and reports."""
    start_epoch_s: float | None = None
    """Absolute time of t = 0 (epoch s): the top-level ``start``, else a replay's first played
    instant when the profile opens with one at time_scale 1; None: no absolute start."""
    prompt_tokens: np.ndarray = field(
        default_factory=lambda: np.zeros(0, np.int64), repr=False, compare=False
    )
    """Prompt tokens of each request of a replayed LLM request trace, in order (empty if none)."""
    output_tokens: np.ndarray = field(
        default_factory=lambda: np.zeros(0, np.int64), repr=False, compare=False
    )
    """Generated tokens of each request of a replayed LLM request trace (empty if none)."""
    # Pieces, sorted by start: rate is linear (r0 -> r1) or diurnal sine (lo, hi, period, phase).
    _start: np.ndarray = field(default_factory=lambda: np.zeros(0), repr=False, compare=False)
    _dur: np.ndarray = field(default_factory=lambda: np.zeros(0), repr=False, compare=False)
    _kind: np.ndarray = field(default_factory=lambda: np.zeros(0, int), repr=False, compare=False)
    _p: np.ndarray = field(default_factory=lambda: np.zeros((0, 4)), repr=False, compare=False)
    _cum: np.ndarray = field(default_factory=lambda: np.zeros(1), repr=False, compare=False)
    _cache: dict[int, np.ndarray] = field(default_factory=dict, repr=False, compare=False)

    @property
    def total_requests(self) -> float:
        """Expected number of requests over the whole profile."""
        return float(self._cum[-1])

    @property
    def peak_rps(self) -> float:
        """Highest rate of the profile."""
        lin = self._kind == LINEAR
        top = float(self._p[lin, :2].max()) if lin.any() else 0.0
        for k in np.flatnonzero(~lin):  # a sine piece may stop short of its crest: sample it
            top = max(
                top,
                float(self.rate_at(self._start[k] + np.linspace(0, self._dur[k], 2001)[:-1]).max()),
            )
        return top

    @property
    def has_tokens(self) -> bool:
        """Whether the profile replays a request trace with per-request token counts."""
        return bool(self.prompt_tokens.size)

    @property
    def mean_prompt_tokens(self) -> float | None:
        """Mean prompt tokens per request of the replayed trace; None without one."""
        return float(self.prompt_tokens.mean()) if self.has_tokens else None

    @property
    def mean_output_tokens(self) -> float | None:
        """Mean generated tokens per request of the replayed trace; None without one."""
        return float(self.output_tokens.mean()) if self.has_tokens else None

    def tokens_for(self, seqs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(prompt, output) tokens of requests ``seqs``: request k takes the trace's row k (rows
        cycle when the profile asks for more requests than the trace has)."""
        if not self.has_tokens:
            raise ProfileError(f"{self.name}: the profile carries no per-request token counts")
        k = np.asarray(seqs, dtype=np.int64) % self.prompt_tokens.size
        return self.prompt_tokens[k], self.output_tokens[k]

    def to_content(self) -> dict[str, Any]:
        """The profile as plain data (lists, no files): what a Locust master ships to workers.

        Replay segments are already read into pieces, so the content needs no CSV beside it;
        :func:`profile_from_content` rebuilds an identical profile.
        """
        return {
            "name": self.name,
            "noise": self.noise.value,
            "seed": self.seed,
            "segments": list(self.segments),
            "kind": self._kind.tolist(),
            "duration_s": self._dur.tolist(),
            "params": self._p.tolist(),
            "prompt_tokens": self.prompt_tokens.tolist(),
            "output_tokens": self.output_tokens.tolist(),
        }

    def _piece(self, t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        i = np.clip(np.searchsorted(self._start, t, side="right") - 1, 0, len(self._start) - 1)
        return i, np.clip(t - self._start[i], 0.0, self._dur[i])

    def rate_at(self, t_s: float | np.ndarray) -> np.ndarray:
        """Expected requests per second at profile time ``t_s``; 0 outside [0, duration)."""
        t = np.asarray(t_s, dtype=float)
        i, x = self._piece(t)
        p, d = self._p[i], self._dur[i]
        lin = p[..., 0] + (p[..., 1] - p[..., 0]) * x / d
        ang = 2 * np.pi * (x + p[..., 3]) / np.where(p[..., 2] > 0, p[..., 2], 1.0)
        sine = p[..., 0] + (p[..., 1] - p[..., 0]) * (1 - np.cos(ang)) / 2
        r = np.where(self._kind[i] == LINEAR, lin, sine)
        return np.where((t >= 0) & (t < self.duration_s), r, 0.0)

    def opening_rps(self, window_s: float = 300.0) -> float:
        """Mean rate over the first ``window_s``: what the endpoint served before t = 0."""
        window = min(window_s, self.duration_s)
        return float(self.cumulative(window)) / window if window > 0 else 0.0

    def cumulative(self, t_s: float | np.ndarray) -> np.ndarray:
        """Expected requests in [0, t_s): the exact integral of rate_at."""
        t = np.clip(np.asarray(t_s, dtype=float), 0.0, self.duration_s)
        i, x = self._piece(t)
        return np.asarray(
            self._cum[i] + _piece_integral(self._kind[i], self._p[i], self._dur[i], x)
        )

    def counts(self, period_s: float, *, seed: int | None = None) -> np.ndarray:
        """Requests per period [k*period_s, (k+1)*period_s), k = 0..ceil(duration/period)-1.

        Without noise: the exact integral (float). With Poisson noise: integers, deterministic per
        seed; for a period that is a multiple of NOISE_BLOCK_S they equal arrivals() binned.
        """
        if not period_s > 0:
            raise ProfileError(f"period_s > 0 must hold, got {period_s}")
        n = math.ceil(self.duration_s / period_s - 1e-9)
        exact = np.diff(self.cumulative(np.arange(n + 1) * period_s))
        if self.noise is Noise.NONE:
            return exact
        seed = self.seed if seed is None else seed
        per = period_s / NOISE_BLOCK_S
        if abs(per - round(per)) > 1e-9 or round(per) < 1:
            return np.random.default_rng(seed).poisson(exact).astype(float)
        blocks = self._block_counts(seed)
        k = int(round(per))
        padded = np.concatenate([blocks, np.zeros(n * k - len(blocks), dtype=blocks.dtype)])
        return np.asarray(padded.reshape(n, k).sum(axis=1), dtype=float)

    def arrivals(self, start_s: float, end_s: float, *, seed: int | None = None) -> np.ndarray:
        """Sorted arrival times in [start_s, end_s), deterministic per seed.

        Without noise request k arrives where cumulative() reaches k + 0.5, so every window's
        count is its integral to within 1.
        """
        start_s, end_s = max(float(start_s), 0.0), min(float(end_s), self.duration_s)
        if end_s <= start_s:
            return np.zeros(0)
        if self.noise is Noise.NONE:
            lo, hi = self.cumulative(np.array([start_s, end_s]))
            k = np.arange(math.ceil(lo - 0.5), math.ceil(hi - 0.5)) + 0.5
            t = self._inverse(k)
        else:
            t = self._noisy_arrivals(start_s, end_s, self.seed if seed is None else seed)
        return t[(t >= start_s) & (t < end_s)]

    def _block_counts(self, seed: int) -> np.ndarray:
        if seed not in self._cache:
            n = math.ceil(self.duration_s / NOISE_BLOCK_S - 1e-9)
            exact = np.diff(self.cumulative(np.arange(n + 1) * NOISE_BLOCK_S))
            if len(self._cache) >= 4:  # a sweep over many seeds must not hoard memory
                self._cache.pop(next(iter(self._cache)))
            self._cache[seed] = np.random.default_rng(seed).poisson(exact)
        return np.asarray(self._cache[seed])

    def _noisy_arrivals(self, start_s: float, end_s: float, seed: int) -> np.ndarray:
        counts = self._block_counts(seed)
        b0 = int(start_s // NOISE_BLOCK_S)
        b1 = min(math.ceil(end_s / NOISE_BLOCK_S), len(counts))
        blocks = np.arange(b0, b1)
        n = counts[b0:b1]
        if not n.sum():
            return np.zeros(0)
        # One generator per block keeps a block's arrivals the same whatever window asks.
        u = np.concatenate(
            [
                np.random.Generator(np.random.Philox(key=[seed, b])).random(k)
                for b, k in zip(blocks.tolist(), n.tolist(), strict=True)
                if k
            ]
        )
        edges = self.cumulative(np.append(blocks, b1) * NOISE_BLOCK_S)
        lo, hi = np.repeat(edges[:-1], n), np.repeat(edges[1:], n)
        return np.sort(self._inverse(lo + u * (hi - lo)))

    def _inverse(self, y: np.ndarray) -> np.ndarray:
        """Profile time where cumulative() reaches y (y within [0, total])."""
        y = np.clip(np.asarray(y, dtype=float), 0.0, self.total_requests)
        i = np.clip(np.searchsorted(self._cum[:-1], y, side="right") - 1, 0, len(self._dur) - 1)
        p, d, need = self._p[i], self._dur[i], y - self._cum[i]
        r0, slope = p[:, 0], (p[:, 1] - p[:, 0]) / d
        # r0*x + slope*x^2/2 = need, in the cancellation-free form of the quadratic root.
        root = np.sqrt(np.maximum(r0 * r0 + 2 * slope * need, 0.0))
        den = r0 + root
        x = np.divide(2 * need, den, out=np.zeros_like(need), where=den > 0)
        sine = self._kind[i] == SINE
        if sine.any():
            lo, hi = np.zeros(int(sine.sum())), d[sine].copy()
            ps, goal = p[sine], need[sine]
            for _ in range(44):  # bisection: piece length / 2**44, under 1e-8 s for a day
                mid = (lo + hi) / 2
                below = _sine_integral(ps, mid) < goal
                lo, hi = np.where(below, mid, lo), np.where(below, hi, mid)
            x[sine] = (lo + hi) / 2
        return np.asarray(self._start[i] + np.clip(x, 0.0, d))


def _piece_integral(kind: np.ndarray, p: np.ndarray, d: np.ndarray, x: np.ndarray) -> np.ndarray:
    lin = p[..., 0] * x + (p[..., 1] - p[..., 0]) * x * x / (2 * d)
    return np.where(kind == LINEAR, lin, _sine_integral(p, x))


def _sine_integral(p: np.ndarray, x: np.ndarray) -> np.ndarray:
    w = 2 * np.pi / np.where(p[..., 2] > 0, p[..., 2], 1.0)
    swing = x - (np.sin(w * (x + p[..., 3])) - np.sin(w * p[..., 3])) / w
    return np.asarray(p[..., 0] * x + (p[..., 1] - p[..., 0]) * swing / 2)


def build_profile(
    name: str,
    pieces: list[tuple[int, float, tuple[float, float, float, float]]],
    *,
    noise: Noise = Noise.NONE,
    seed: int = 0,
    segments: tuple[str, ...] = (),
    start_epoch_s: float | None = None,
    tokens: tuple[np.ndarray, np.ndarray] | None = None,
) -> Profile:
    """A Profile from pieces ``(kind, duration_s, params)`` (kind 0 linear r0,r1; 1 sine);
    ``tokens``: (prompt, output) token counts per request of a replayed request trace."""
    pieces = [pc for pc in pieces if pc[1] > 0]
    if not pieces:
        raise ProfileError(f"{name}: a profile needs at least one segment longer than 0 s")
    kind = np.array([pc[0] for pc in pieces], dtype=int)
    dur = np.array([pc[1] for pc in pieces], dtype=float)
    params = np.array([pc[2] for pc in pieces], dtype=float)
    if not dur.sum() <= MAX_PROFILE_S:
        raise ProfileError(
            f"{name}: a profile lasts at most 455 days (CloudWatch's longest retention), "
            f"got {dur.sum() / 86400:,.0f} days"
        )
    start = np.concatenate([[0.0], np.cumsum(dur)[:-1]])
    cum = np.concatenate([[0.0], np.cumsum(_piece_integral(kind, params, dur, dur))])
    return Profile(
        name=name,
        duration_s=float(dur.sum()),
        noise=noise,
        seed=seed,
        segments=segments,
        start_epoch_s=start_epoch_s,
        prompt_tokens=np.asarray(tokens[0] if tokens else [], dtype=np.int64),
        output_tokens=np.asarray(tokens[1] if tokens else [], dtype=np.int64),
        _start=start,
        _dur=dur,
        _kind=kind,
        _p=params,
        _cum=cum,
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


def profile_from_content(data: Mapping[str, Any]) -> Profile:
    """The Profile that :meth:`Profile.to_content` described."""
    try:
        pieces = [
            (int(k), float(d), (float(p[0]), float(p[1]), float(p[2]), float(p[3])))
            for k, d, p in zip(data["kind"], data["duration_s"], data["params"], strict=True)
        ]
        return build_profile(
            str(data["name"]),
            pieces,
            noise=Noise(str(data["noise"])),
            seed=int(data["seed"]),
            segments=tuple(str(s) for s in data.get("segments", ())),
            tokens=(
                np.asarray(data.get("prompt_tokens", []), dtype=np.int64),
                np.asarray(data.get("output_tokens", []), dtype=np.int64),
            ),
        )
    except (KeyError, TypeError, ValueError, IndexError) as e:
        raise ProfileError(f"profile content is malformed: {type(e).__name__}: {e}") from e


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
