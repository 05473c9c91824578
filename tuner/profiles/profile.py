"""Traffic profiles: the demand an endpoint must survive, as a rate over profile time.

A profile file (``*.toml``, its format and parser: :mod:`tuner.profiles.profile_file`) is a name
and segments played in order. Each replayed count is spread evenly over its interval; off-grid
rows go to the nearest interval (:mod:`tuner.profiles.replay` reads the CSV). Everything here is
pure numpy: the simulator, the emulator and the load generator share it.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from tuner.errors import ProfileError
from tuner.profiles.replay import (
    LINEAR,
    MAX_PROFILE_S,
    SINE,
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
