"""Checks of policy-file fields that every part of a policy file shares (target tracking, step
policies, scheduled actions): one message per rule, naming the field."""

from __future__ import annotations

import numbers
from collections.abc import Mapping
from typing import Any

from tuner.errors import PolicyError, plain


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
