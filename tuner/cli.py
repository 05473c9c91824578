"""The ``tuner`` command: one subcommand per module in ``tuner.commands``.

A command module exposes ``register(subparsers)`` (adds its parser, with ``--help`` text) and
``run(args) -> int``. Heavy imports live inside ``run`` so ``tuner --help`` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys
from collections.abc import Sequence
from typing import NoReturn

from tuner import __version__
from tuner.commands._checks import check_args
from tuner.errors import Terminated, TunerError

# Order in --help: the workflow first, then the tools around it. Modules not named here follow.
_ORDER = (
    "demo",
    "emulate",
    "calibrate",
    "loadtest",
    "simulate",
    "tune",
    "trial",
    "collect",
    "report",
    "apply",
    "snapshot",
    "restore",
    "export",
)

EXIT_USAGE = 2


def _command_modules() -> list[str]:
    import tuner.commands

    found = {
        m.name for m in pkgutil.iter_modules(tuner.commands.__path__) if not m.name.startswith("_")
    }
    return [n for n in _ORDER if n in found] + sorted(found - set(_ORDER))


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (and exit 2), as for every other bad input."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="tuner",
        description=(
            "Size a SageMaker endpoint with evidence: load-test it, simulate target-tracking "
            "policies against traffic profiles, trial the best live, report and apply one."
        ),
        epilog="Add --debug anywhere to see a traceback on error. Docs: README.md.",
    )
    parser.add_argument("--version", action="version", version=f"tuner {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in _command_modules():
        module = importlib.import_module(f"tuner.commands.{name}")
        p = module.register(sub)
        p.set_defaults(_run=module.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args_in = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args_in
    args_in = [a for a in args_in if a != "--debug"]
    parser = build_parser()
    args = parser.parse_args(args_in)
    args.debug = debug
    try:
        check_args(args.command, args)
        return int(args._run(args) or 0)
    except TunerError as e:
        if debug:
            raise
        # A failed restore has its own status: the endpoint may not be as it was found.
        return _fail(args.command, str(e), int(getattr(e, "exit_status", EXIT_USAGE)))
    except KeyboardInterrupt:
        if debug:
            raise
        print(f"tuner {args.command}: interrupted", file=sys.stderr)
        return 130
    except Terminated as e:
        if debug:
            raise
        signum = int(e.args[0]) if e.args else 15
        print(f"tuner {args.command}: terminated by signal {signum}", file=sys.stderr)
        return 128 + signum
    except (OSError, MemoryError) as e:
        # The edge of last resort: commands name the path where they can; this still keeps a
        # full disk or a vanished directory to one line.
        if debug:
            raise
        return _fail(args.command, _describe_os_error(e))
    except Exception as e:
        if _is_botocore_error(e):
            if debug:
                raise
            from tuner.aws.clients import translate_client_error

            return _fail(args.command, str(translate_client_error(e, "AWS call")))
        if debug:
            raise
        print(
            f"tuner {args.command}: internal error (a bug, please report it): "
            f"{type(e).__name__}: {_one_line(str(e))}; rerun with --debug for the traceback",
            file=sys.stderr,
        )
        return EXIT_INTERNAL


EXIT_INTERNAL = 1


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _fail(command: str, message: str, status: int = EXIT_USAGE) -> int:
    print(f"tuner {command}: error: {_one_line(message)}", file=sys.stderr)
    return status


def _describe_os_error(e: BaseException) -> str:
    if isinstance(e, MemoryError):
        return "out of memory: the input is too large for this machine"
    assert isinstance(e, OSError)
    names = " -> ".join(str(f) for f in (e.filename, e.filename2) if f is not None)
    reason = e.strerror or str(e)
    return f"{names}: {reason}" if names else reason


def _is_botocore_error(e: BaseException) -> bool:
    """Without importing botocore (heavy) unless it was already imported."""
    exceptions = sys.modules.get("botocore.exceptions")
    if exceptions is None:
        return False
    return isinstance(e, (exceptions.BotoCoreError, exceptions.ClientError))
