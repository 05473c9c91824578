"""Client construction and the ClientError -> TunerError boundary."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError, NoRegionError

from tuner.errors import (
    AccessDenied,
    AwsError,
    EndpointNotFound,
    TargetNotRegistered,
    Throttled,
)

# Standard retry mode backs off exponentially with jitter on throttling and transient errors
# (botocore retries guide); 8 attempts ride out a burst of Describe* throttling.
_RETRIES = {"mode": "standard", "max_attempts": 8}
_THROTTLE_CODES = {
    "Throttling",
    "ThrottlingException",
    "ThrottledException",
    "RequestLimitExceeded",
    "TooManyRequestsException",
    "LimitExceededException",
}
_DENIED_CODES = {"AccessDenied", "AccessDeniedException", "UnauthorizedOperation"}


@dataclass(frozen=True, kw_only=True)
class AwsSession:
    """Where AWS calls go: region, named profile, endpoint URL (None: the standard chain)."""

    region: str | None = None
    profile: str | None = None
    endpoint_url: str | None = None
    """Every service's URL, e.g. the local AWS; None honours AWS_ENDPOINT_URL."""

    def client(self, service: str, *, max_attempts: int | None = None) -> Any:
        """A new boto3 client for ``service``, with standard retries (``max_attempts`` in all)."""
        # botocore's "max_attempts" counts retries only; "total_max_attempts" includes the first.
        retries = (
            _RETRIES
            if max_attempts is None
            else {"mode": "standard", "total_max_attempts": max_attempts}
        )
        try:
            session = boto3.session.Session(profile_name=self.profile, region_name=self.region)
            kwargs: dict[str, Any] = {"config": Config(retries=retries)}
            if self.endpoint_url:
                kwargs["endpoint_url"] = self.endpoint_url
            return session.client(service, **kwargs)
        except NoRegionError as e:
            raise AwsError("no AWS region: pass --region or set AWS_REGION (e.g. us-east-1)") from e
        except BotoCoreError as e:
            raise AwsError(f"cannot create the {service} client: {e}") from e


def translate_client_error(e: Exception, what: str) -> AwsError:
    """Turn a boto3 error into the TunerError a user can act on (raise it ``from e``)."""
    if isinstance(e, NoCredentialsError):
        return AccessDenied(
            f"{what}: no AWS credentials found (set AWS_PROFILE or AWS_ACCESS_KEY_ID, "
            "or use --endpoint-url for the local AWS)"
        )
    if isinstance(e, BotoCoreError):
        return AwsError(f"{what}: {e}")
    if not isinstance(e, ClientError):
        return AwsError(f"{what}: {e}")
    err = e.response.get("Error", {})
    code = str(err.get("Code", ""))
    message = str(err.get("Message", "")).strip() or code
    if code in _THROTTLE_CODES:
        return Throttled(f"{what}: AWS throttled the call after retries ({code}): {message}")
    if code in _DENIED_CODES:
        return AccessDenied(f"{what}: access denied: {message}")
    lowered = message.lower()
    if "could not find endpoint" in lowered or code == "EndpointNotFound":
        return EndpointNotFound(f"{what}: {message}")
    if code == "ObjectNotFoundException":
        return TargetNotRegistered(f"{what}: {message}")
    return AwsError(f"{what}: {code}: {message}")


class ClientAdapter:
    """Base of the adapters: one boto3 client, injected or created on first use."""

    service: ClassVar[str]
    """The boto3 service name the adapter speaks to."""
    max_attempts: ClassVar[int | None] = None
    """Attempts per call of the client it creates (None: the session's standard retries)."""

    def __init__(self, client: Any | None = None, *, session: AwsSession | None = None) -> None:
        self._client = client
        self._session = session or AwsSession()

    @property
    def client(self) -> Any:
        if self._client is None:
            self._client = self._session.client(self.service, max_attempts=self.max_attempts)
        return self._client
