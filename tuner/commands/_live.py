"""Options shared by the commands that drive live traffic (trial, calibrate, tune --live)."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tuner.live import Guardrails


def add_guardrail_options(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("guardrails")
    g.add_argument(
        "--allow-production",
        action="store_true",
        help="allow an endpoint tagged environment=production (or prod, live)",
    )
    g.add_argument(
        "--max-instances",
        type=int,
        default=20,
        help="refuse a policy with MaxCapacity above this (default: 20)",
    )
    g.add_argument(
        "--max-rps",
        type=float,
        default=2000.0,
        help="refuse traffic above this many requests/s (default: 2000)",
    )
    g.add_argument(
        "--dry-run",
        action="store_true",
        help="list every AWS call the command would make, and make none",
    )


def guardrails_from(args: argparse.Namespace) -> Guardrails:
    from tuner.live.trial import Guardrails

    return Guardrails(
        allow_production=args.allow_production,
        max_instances=args.max_instances,
        max_rps=args.max_rps,
    )
