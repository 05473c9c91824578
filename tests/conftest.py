"""Shared fixtures: fake AWS credentials, in-process moto, a moto server on 127.0.0.1."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parent.parent
SHARED = REPO.parent / "shared"
TRACES = SHARED / "data" / "traces"
REGION = "us-east-1"

FAKE_AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": REGION,
    "AWS_REGION": REGION,
}


@pytest.fixture(autouse=True)
def fake_aws_credentials(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: Any) -> None:
    """No test may reach a real account: fake keys, no profile, no endpoint override."""
    for key, value in FAKE_AWS_ENV.items():
        monkeypatch.setenv(key, value)
    for key in ("AWS_PROFILE", "AWS_ENDPOINT_URL"):
        monkeypatch.delenv(key, raising=False)
    empty = tmp_path_factory.mktemp("aws-config")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(empty / "config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(empty / "credentials"))


@pytest.fixture
def aws() -> Iterator[None]:
    """In-process moto for every AWS service (clients must be created inside the test)."""
    from moto import mock_aws

    with mock_aws():
        yield


def create_endpoint(
    sm: Any,
    name: str = "my-endpoint",
    variant: str = "AllTraffic",
    count: int = 1,
    tags: list[dict[str, str]] | None = None,
) -> None:
    """A model, endpoint config and endpoint in the (moto) control plane."""
    sm.create_model(
        ModelName=f"{name}-model",
        ExecutionRoleArn="arn:aws:iam::123456789012:role/sagemaker",
        PrimaryContainer={"Image": "123456789012.dkr.ecr.us-east-1.amazonaws.com/model:latest"},
    )
    sm.create_endpoint_config(
        EndpointConfigName=f"{name}-config",
        ProductionVariants=[
            {
                "VariantName": variant,
                "ModelName": f"{name}-model",
                "InitialInstanceCount": count,
                "InstanceType": "ml.m5.xlarge",
                "InitialVariantWeight": 1.0,
            }
        ],
    )
    sm.create_endpoint(EndpointName=name, EndpointConfigName=f"{name}-config", Tags=tags or [])


@pytest.fixture
def moto_server() -> Iterator[str]:
    """A real moto HTTP server on 127.0.0.1 (for the AWS CLI and other processes)."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


@pytest.fixture
def subprocess_env() -> dict[str, str]:
    """Environment for child processes: fake credentials, the venv's bin first on PATH."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(FAKE_AWS_ENV)
    env["PATH"] = f"{REPO / '.venv' / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    return env


def local_client(aws: Any, service: str, **config: Any) -> Any:
    """A boto3 client of the local AWS (a running :class:`tuner.emulator.LocalAws`), with the
    fake credentials; ``config``: botocore Config options (retries, timeouts)."""
    import boto3
    from botocore.config import Config

    return boto3.client(
        service,
        endpoint_url=aws.url,
        region_name=aws.config.region,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        config=Config(**config) if config else None,
    )


def local_aws_env(aws: Any, tmp: Path) -> dict[str, str]:
    """Environment for a child process of the local AWS: none of this shell's AWS_ variables,
    the local AWS's own, and no config or credentials file (``tmp``/none does not exist)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(aws.env)
    env["AWS_CONFIG_FILE"] = env["AWS_SHARED_CREDENTIALS_FILE"] = str(tmp / "none")
    return env
