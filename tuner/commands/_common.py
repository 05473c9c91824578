"""Options and helpers shared by subcommands."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tuner.aws import AwsSession
    from tuner.policy import Resource


def add_aws_options(parser: argparse.ArgumentParser) -> None:
    """--region, --aws-profile, --endpoint-url (AWS_ENDPOINT_URL is honoured too)."""
    g = parser.add_argument_group("AWS connection (standard credential chain)")
    g.add_argument(
        "--region", help="AWS region (default: AWS_REGION / AWS_DEFAULT_REGION / config)"
    )
    g.add_argument("--aws-profile", help="named profile from ~/.aws/config (default: AWS_PROFILE)")
    g.add_argument(
        "--endpoint-url",
        help="send every AWS call here, e.g. the local AWS of `tuner emulate` "
        "(default: AWS_ENDPOINT_URL)",
    )


def add_endpoint_options(parser: argparse.ArgumentParser, *, required: bool = True) -> None:
    parser.add_argument("--endpoint", required=required, help="SageMaker endpoint name")
    parser.add_argument(
        "--variant", default="AllTraffic", help="production variant (default: AllTraffic)"
    )


def aws_session(args: argparse.Namespace) -> AwsSession:
    from tuner.aws import AwsSession

    return AwsSession(
        region=getattr(args, "region", None),
        profile=getattr(args, "aws_profile", None),
        endpoint_url=getattr(args, "endpoint_url", None),
    )


def add_resource_options(parser: argparse.ArgumentParser) -> None:
    """--endpoint/--variant, or --inference-component: what the policy scales."""
    g = parser.add_argument_group("what to scale")
    g.add_argument("--endpoint", help="SageMaker endpoint name")
    g.add_argument(
        "--variant", default="AllTraffic", help="production variant (default: AllTraffic)"
    )
    g.add_argument(
        "--inference-component",
        metavar="NAME",
        help="scale an inference component's copies instead of an endpoint variant",
    )


def resource_from(args: argparse.Namespace) -> Resource:
    from tuner.errors import ValidationError
    from tuner.policy.resource import Resource

    if getattr(args, "inference_component", None):
        if getattr(args, "endpoint", None):
            raise ValidationError("give --endpoint or --inference-component, not both")
        return Resource.for_component(args.inference_component)
    if not getattr(args, "endpoint", None):
        raise ValidationError("--endpoint is required (or --inference-component)")
    return Resource.for_variant(args.endpoint, args.variant)


PROFILES_DIR = Path(__file__).resolve().parents[2] / "locustfiles" / "profiles"


def resolve_profile(spec: str) -> tuple[Any, Path]:
    """--profile: a TOML file, a replay CSV, or a ready profile's name -> (Profile, its file)."""
    from tuner.errors import ValidationError
    from tuner.profiles.profile import load_profile, parse_profile

    path = Path(spec)
    if not path.exists() and (PROFILES_DIR / f"{spec}.toml").is_file():
        path = PROFILES_DIR / f"{spec}.toml"
    if not path.is_file():
        ready = sorted(f.stem for f in PROFILES_DIR.glob("*.toml"))
        raise ValidationError(
            f"--profile must be a TOML file, a replay CSV or one of {', '.join(ready) or 'none'}, "
            f"got {spec!r}"
        )
    if path.suffix.lower() == ".csv":
        data = {"name": path.stem, "segment": [{"replay": path.name}]}
        return parse_profile(data, base_dir=path.parent, source=str(path)), path
    return load_profile(path), path
