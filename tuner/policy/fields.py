"""Checks of policy-file fields that every part of a policy file shares (target tracking, step
policies, scheduled actions): one message per rule, naming the field."""

from __future__ import annotations

import enum
import math
import numbers
from collections.abc import Mapping
from typing import Any, TypeVar

from tuner.errors import PolicyError, plain

E = TypeVar("E", bound=enum.StrEnum)


def integer(value: Any, where: str) -> int:
    """``value`` as an int; a bool, a float or a string is refused."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise PolicyError(f"{where} must be an integer, got {plain(value)!r}")
    return int(value)


def check_keys(obj: Any, where: str, allowed: set[str], required: set[str]) -> Mapping[str, Any]:
    """``obj`` as a JSON object with only ``allowed`` keys and every ``required`` one."""
    if not isinstance(obj, Mapping):
        raise PolicyError(f"{where} must be a JSON object, got {type(obj).__name__}")
    unknown = sorted(set(obj) - allowed)
    if unknown:
        raise PolicyError(
            f"{where}: unknown key {unknown[0]!r} (allowed: {', '.join(sorted(allowed))})"
        )
    missing = sorted(required - set(obj))
    if missing:
        raise PolicyError(f"{where}.{missing[0]} is required")
    return obj


def number(value: Any, where: str) -> float:
    """``value`` as a finite float; a bool or a string is refused."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise PolicyError(f"{where} must be a number, got {plain(value)!r}")
    if not math.isfinite(value):
        raise PolicyError(f"{where} must be finite, got {value!r}")
    return float(value)


def choice(cls: type[E], value: Any, where: str) -> E:
    """``value`` as a member of the string enum ``cls``; the message lists the allowed ones."""
    try:
        return cls(value)
    except ValueError:
        allowed = ", ".join(m.value for m in cls)
        raise PolicyError(f"{where} must be one of {allowed}, got {value!r}") from None
