"""Options shared by the commands that change a live endpoint (trial, calibrate, apply, tune).

Every value is checked when it is parsed (NaN and inf are refused), so a bad flag stops a
command before its first AWS call, in --dry-run too.
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

from tuner.errors import ValidationError

if TYPE_CHECKING:
    from tuner.live import Guardrails


def finite_float(text: str) -> float:
    """argparse type: a finite number (``nan`` and ``inf`` parse as floats; they are refused)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number, got {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a finite number, got {text!r}")
    return value


def add_confirm_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--yes",
        action="store_true",
        help="make the live change without asking (needed without a terminal; the local AWS "
        "of `tuner emulate` never asks)",
    )


GUARDRAIL_MAX_INSTANCES = 20


def add_guardrail_options(
    parser: argparse.ArgumentParser,
    *,
    dry_run: bool = True,
    max_instances_help: str | None = None,
) -> None:
    """The guardrail flags; ``max_instances_help`` (tune) leaves --max-instances unset by
    default, so it caps the search only when given, and guards live changes at 20 regardless."""
    g = parser.add_argument_group("guardrails")
    g.add_argument(
        "--allow-production",
        action="store_true",
        help="allow an endpoint tagged environment/env/stage = production, prod, prd or live "
        "(any case)",
    )
    g.add_argument(
        "--max-instances",
        type=int,
        metavar="N",
        default=None if max_instances_help else GUARDRAIL_MAX_INSTANCES,
        help=max_instances_help
        or f"refuse a policy with MaxCapacity above this (default: {GUARDRAIL_MAX_INSTANCES})",
    )
    g.add_argument(
        "--max-rps",
        type=finite_float,
        default=2000.0,
        help="refuse traffic above this many requests/s (default: 2000)",
    )
    if dry_run:
        g.add_argument(
            "--dry-run",
            action="store_true",
            help="check every input, list every AWS call the command would make, and make none",
        )
    add_confirm_option(parser)


def guardrails_from(args: argparse.Namespace) -> Guardrails:
    from tuner.live.trial import Guardrails

    return Guardrails(
        allow_production=args.allow_production,
        max_instances=GUARDRAIL_MAX_INSTANCES if args.max_instances is None else args.max_instances,
        max_rps=args.max_rps,
    )


def is_local_aws(endpoint_url: str | None) -> bool:
    """Whether AWS calls go to the local AWS of `tuner emulate` (it serves /_tuner/clock)."""
    if not endpoint_url:
        return False
    import json
    import urllib.error
    import urllib.request

    try:
        url = endpoint_url.rstrip("/") + "/_tuner/clock"
        with urllib.request.urlopen(url, timeout=2.0) as resp:  # noqa: S310 - the user's URL
            return isinstance(json.loads(resp.read()), dict)
    except (urllib.error.URLError, OSError, ValueError):
        return False


def check_can_confirm(*, yes: bool, endpoint_url: str | None) -> None:
    """Refuse early (before long work) a live change that could not be confirmed later."""
    if not (yes or sys.stdin.isatty() or is_local_aws(endpoint_url)):
        raise ValidationError(
            "a live change needs confirmation: pass --yes (no terminal to ask on)"
        )


def confirm(lines: Sequence[str], *, yes: bool, endpoint_url: str | None) -> None:
    """Show what will change and ask; ValidationError (exit 2) on no, or with no terminal."""
    for line in lines:
        print(line)
    if yes or is_local_aws(endpoint_url):
        return
    if not sys.stdin.isatty():
        raise ValidationError(
            "a live change needs confirmation: pass --yes (no terminal to ask on)"
        )
    answer = input("Make this change? [y/N] ").strip().lower()
    if answer not in ("y", "yes"):
        raise ValidationError("not confirmed: nothing was changed")
