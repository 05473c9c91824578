"""One error hierarchy: every failure a user can cause or meet is a TunerError.

The CLI prints ``str(error)`` as one line and exits 2; messages state the field, the rule and the
value ("MinCapacity <= MaxCapacity must hold, got 5 > 2").
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


class TunerError(Exception):
    """Base of every error the tuner reports to a user."""


class ValidationError(TunerError):
    """Bad input: a file, a flag or a value breaks a stated rule."""


class PolicyError(ValidationError):
    """A scaling policy (file or values) is invalid."""


class ProfileError(ValidationError):
    """A traffic profile (TOML or replay CSV) is invalid."""


class CapacityError(ValidationError):
    """A capacity file is invalid."""


class AwsError(TunerError):
    """An AWS call failed; raised at the boto3 boundary from the ClientError."""


class EndpointNotFound(AwsError):
    """The SageMaker endpoint (or variant) does not exist."""


class TargetNotRegistered(AwsError):
    """The variant has no scalable target registered with Application Auto Scaling."""


class AccessDenied(AwsError):
    """The credentials are not allowed to make the call."""


class Throttled(AwsError):
    """AWS kept throttling the call after the retries."""


class LoadTestError(TunerError):
    """The load generator failed to start or run."""


class TrialError(TunerError):
    """A live trial could not complete."""


class Terminated(BaseException):  # noqa: N818 - a signal, like KeyboardInterrupt
    """SIGTERM, raised so that ``finally`` blocks restore what a command changed."""


def plain(value: Any) -> Any:
    """A numpy scalar as the Python number it holds, for messages ("got -10", not
    "got np.int64(-10)"); anything else unchanged."""
    item = getattr(value, "item", None)
    if callable(item) and getattr(value, "shape", None) == ():
        return item()
    return value


def read_json_file(path: str | Path, error: type[TunerError], what: str) -> Any:
    """Parse a JSON file; an unreadable or malformed one raises ``error`` naming the file."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise error(f"{path}: cannot read {what} ({e.strerror})") from e
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise error(f"{path}: malformed JSON at line {e.lineno} column {e.colno}: {e.msg}") from e
