"""Checks every parsed command line passes before its command does any work (``--dry-run`` too).

One table of bounds by option name: an option means the same thing, within the same limits, in
every subcommand that has it. Every float option must be finite. Output paths must be of the kind
the command writes (a directory or a file) and creatable. URLs and regions must be well formed.
Checks that need a file's content or AWS stay with the command; these need only the flags.
"""

from __future__ import annotations

import argparse
import math
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from tuner.errors import ValidationError

MAX_INSTANCES = 1_000
"""Most instances the simulator and the emulator model: their tables grow with the count."""


@dataclass(frozen=True, kw_only=True)
class Bound:
    """``lo <= value <= hi`` (``lo < value`` when ``lo_open``); ``why`` names the limit."""

    lo: float | None = None
    hi: float | None = None
    lo_open: bool = False
    why: str = ""

    def check(self, flag: str, value: float) -> None:
        why = f" ({self.why})" if self.why else ""
        if self.lo is not None and not (value > self.lo if self.lo_open else value >= self.lo):
            rule = f"{'>' if self.lo_open else '>='} {_num(self.lo)} must hold"
        elif self.hi is not None and value > self.hi:
            low = "" if self.lo is None else _num(self.lo)
            rule = (
                f"must be in ({low}, {_num(self.hi)}]"
                if self.lo_open
                else f"must be in {low}..{_num(self.hi)}"
            )
        else:
            return
        raise ValidationError(f"{flag} {rule}, got {_num(value)}{why}")


def _num(value: float) -> str:
    return str(value) if isinstance(value, int) else f"{value:g}"


_DAY_S = 86_400.0
BOUNDS: dict[str, Bound] = {
    "speed": Bound(lo=0, lo_open=True, hi=3600, why="virtual seconds per real second"),
    "seed": Bound(lo=0, hi=2**32 - 1, why="a numpy seed"),
    "seeds": Bound(lo=1, hi=100),
    "port": Bound(lo=0, hi=65535, why="a TCP port; 0 picks a free one"),
    "instances": Bound(lo=1, hi=MAX_INSTANCES, why="instances the emulator models"),
    "initial_capacity": Bound(lo=0, hi=MAX_INSTANCES, why="instances the simulator models"),
    "max_instances": Bound(lo=1, hi=MAX_INSTANCES),
    "metric_lag_s": Bound(lo=0, hi=3600, why="CloudWatch delay, at most an hour"),
    "progress_s": Bound(lo=0, lo_open=True, hi=_DAY_S),
    "slo_p99_ms": Bound(lo=0, lo_open=True, hi=3_600_000, why="at most an hour"),
    "max_error_rate": Bound(lo=0, hi=1, why="a share of requests"),
    "max_slo_violation": Bound(lo=0, hi=1, why="a share of requests"),
    "margin": Bound(lo=0, lo_open=True, hi=1, why="a factor on the objective's bounds"),
    "start_rps": Bound(lo=0, lo_open=True, hi=1e6),
    "max_rps": Bound(lo=0, lo_open=True, hi=1e6),
    "step_s": Bound(lo=0, lo_open=True, hi=_DAY_S),
    "boot_s": Bound(lo=0, hi=_DAY_S, why="at most a day"),
    "boot_jitter_s": Bound(lo=0, hi=_DAY_S, why="at most a day"),
    "hourly_usd": Bound(lo=0, hi=1e6),
    "workers": Bound(lo=0, hi=256, why="Locust worker processes on this machine"),
    "max_inflight": Bound(lo=1, hi=1_000_000),
    "request_timeout": Bound(lo=0, lo_open=True, hi=3600, why="seconds per request"),
    "period": Bound(lo=0, lo_open=True, hi=_DAY_S),
    "top": Bound(lo=1, hi=100),
}

OutKind = Literal["dir", "file"]
OUTPUTS: dict[str, dict[str, OutKind]] = {
    "simulate": {"out": "dir"},
    "tune": {"out": "dir"},
    "trial": {"out": "dir"},
    "loadtest": {"out": "dir"},
    "demo": {"out": "dir"},
    "calibrate": {"out": "file"},
    "collect": {"out": "file", "profile_out": "file"},
    "snapshot": {"out": "file"},
}
"""Per command, the options that name something it writes, and what kind of thing."""

_REGION = re.compile(r"^[a-z]{2}(-[a-z]+)+-\d{1,2}$")


def _flag(dest: str) -> str:
    return "--" + dest.replace("_", "-")


def check_args(command: str, args: argparse.Namespace) -> None:
    """Raise ValidationError naming the first option that breaks its rule."""
    for dest, value in sorted(vars(args).items()):
        if dest.startswith("_"):
            continue
        for item in value if isinstance(value, list) else [value]:
            if isinstance(item, float) and not math.isfinite(item):
                raise ValidationError(f"{_flag(dest)} must be a finite number, got {item}")
        bound = BOUNDS.get(dest)
        if bound is not None and isinstance(value, int | float) and not isinstance(value, bool):
            bound.check(_flag(dest), value)
    for dest, kind in OUTPUTS.get(command, {}).items():
        value = getattr(args, dest, None)
        if value:
            check_output(_flag(dest), Path(value), kind)
    for dest in ("endpoint_url", "host"):
        value = getattr(args, dest, None)
        if value is not None:
            check_url(_flag(dest), value)
    region = getattr(args, "region", None)
    if region is not None:
        check_region("--region", region)


def check_output(flag: str, path: Path, kind: OutKind) -> None:
    """``path`` can be written as a ``kind``: not the other kind, under a writable directory."""
    if path.exists() or path.is_symlink():
        if kind == "dir" and not path.is_dir():
            raise ValidationError(f"{flag} {path}: exists and is not a directory")
        if kind == "file" and path.is_dir():
            raise ValidationError(f"{flag} {path}: is a directory; give a file name")
        if not os.access(path, os.W_OK):
            raise ValidationError(f"{flag} {path}: not writable")
        if kind == "dir" or path.is_file():
            return
    parent = path.parent
    while not parent.exists():
        if parent.is_symlink():
            raise ValidationError(f"{flag} {path}: {parent} is a dangling link")
        parent = parent.parent
    if not parent.is_dir():
        raise ValidationError(f"{flag} {path}: {parent} is not a directory")
    if not os.access(parent, os.W_OK | os.X_OK) or _is_pseudo_fs(parent):
        raise ValidationError(f"{flag} {path}: cannot create it in {parent} (not writable)")


def _is_pseudo_fs(path: Path) -> bool:
    """/proc and /sys take no new files even from root (whom os.access always allows)."""
    resolved = path.resolve()
    return any(resolved == Path(p) or Path(p) in resolved.parents for p in ("/proc", "/sys"))


def check_url(flag: str, value: str) -> None:
    """An http(s) URL with a host (and a valid port if given)."""
    try:
        parts = urlsplit(value)
        port = parts.port
    except ValueError as e:
        raise ValidationError(f"{flag} must be an http(s) URL, got {value!r} ({e})") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValidationError(
            f"{flag} must be an http(s) URL such as http://127.0.0.1:8765, got {value!r}"
        )
    if port == 0:
        raise ValidationError(f"{flag}: port must be 1..65535, got {value!r}")


def check_region(flag: str, value: str) -> None:
    """An AWS region name such as us-east-1 or ap-southeast-2."""
    if not _REGION.match(value):
        raise ValidationError(f"{flag} must be an AWS region such as us-east-1, got {value!r}")
