"""Derived profiles: a window of a profile, a profile scaled in rate, and either as a TOML file.

``tuner tune --live`` plays a bounded window of a long history live, and ``--scale-to-capacity``
sizes a ready profile to the endpoint measured; both are written as ordinary profile TOML (ramp
and sine segments), so the trial, the load generator and a reader see one plain file.
"""

from __future__ import annotations

import json
import math
from typing import Any

from tuner.errors import ValidationError
from tuner.profiles.profile import Profile, build_profile, profile_from_content
from tuner.profiles.replay import LINEAR, format_duration


def window(profile: Profile, start_s: float, length_s: float) -> Profile:
    """``profile`` from ``start_s`` for ``length_s`` profile seconds, as a profile of its own.

    >>> window(load_profile("history.toml"), 6 * 3600, 1800).duration_s
    1800.0
    """
    if not 0 <= start_s < profile.duration_s:
        raise ValidationError(
            f"window start must be in [0, {format_duration(profile.duration_s)}) of "
            f"{profile.name}, got {format_duration(start_s)}"
        )
    if not length_s > 0:
        raise ValidationError(f"window length must be > 0, got {length_s:g} s")
    end_s = min(profile.duration_s, start_s + length_s)
    content = profile.to_content()
    pieces: list[tuple[int, float, tuple[float, float, float, float]]] = []
    t = 0.0
    for kind, dur, p in zip(content["kind"], content["duration_s"], content["params"], strict=True):
        a, b = max(t, start_s), min(t + dur, end_s)
        if b > a:
            if kind == LINEAR:
                r = [p[0] + (p[1] - p[0]) * (x - t) / dur for x in (a, b)]
                pieces.append((kind, b - a, (r[0], r[1], 0.0, 0.0)))
            else:  # sine: the same wave, entered later in its cycle
                pieces.append((kind, b - a, (p[0], p[1], p[2], p[3] + (a - t))))
        t += dur
    name = f"{profile.name}-{format_duration(start_s)}-{format_duration(end_s - start_s)}"
    return build_profile(name, pieces, noise=profile.noise, seed=profile.seed)


def scaled(profile: Profile, factor: float, *, name: str | None = None) -> Profile:
    """Every rate of ``profile`` times ``factor`` (the shape and length unchanged)."""
    if not (math.isfinite(factor) and factor > 0):
        raise ValidationError(f"rate factor > 0 must hold, got {factor:g}")
    content = profile.to_content()
    content["params"] = [[p[0] * factor, p[1] * factor, p[2], p[3]] for p in content["params"]]
    content["name"] = name or profile.name
    content["segments"] = []
    return profile_from_content(content)


def to_toml(profile: Profile, *, description: str = "") -> str:
    """The profile as TOML that :func:`load_profile` reads back to the same rates."""
    content: dict[str, Any] = profile.to_content()
    lines = [f"name = {json.dumps(profile.name)}"]
    if description:
        lines.append(f"description = {json.dumps(description)}")
    lines += [f'noise = "{profile.noise.value}"', f"seed = {profile.seed}"]
    for kind, dur, p in zip(content["kind"], content["duration_s"], content["params"], strict=True):
        lines.append("\n[[segment]]")
        if kind == LINEAR:
            lines += [f"ramp = {dur!r}", f"from_rps = {p[0]!r}", f"to_rps = {p[1]!r}"]
        else:
            lines += [
                f"sine = {dur!r}",
                f"min_rps = {p[0]!r}",
                f"max_rps = {p[1]!r}",
                f"period = {p[2]!r}",
                f"phase = {p[3]!r}",
            ]
    return "\n".join(lines) + "\n"
