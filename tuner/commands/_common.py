"""Options and helpers shared by subcommands."""

from __future__ import annotations

import argparse
import datetime as dt
import json
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tuner.aws import AwsSession
    from tuner.clock import VirtualClock
    from tuner.policy import Resource
    from tuner.profiles import Profile, TokenSpec


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


def resolve_profile(spec: str) -> tuple[Profile, Path]:
    """--profile: a TOML file, a replay CSV, or a ready profile's name -> (Profile, its file)."""
    from tuner.errors import ValidationError
    from tuner.profiles.profile_file import load_profile, parse_profile

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


# Beyond this the local clock is too far from AWS's for minute-aligned CloudWatch windows; SigV4
# itself refuses requests more than 5 minutes off (RequestTimeTooSkewed).
SKEW_WARN_S = 5.0


def endpoint_clock(session: AwsSession, endpoint: str, log: Callable[[str], None]) -> VirtualClock:
    """The clock of the AWS that ``session`` talks to: the local AWS's virtual clock (read at
    ``/_tuner/clock``), else real time corrected by the skew measured against AWS's ``Date``."""
    import email.utils
    import time

    from tuner.clock import VirtualClock
    from tuner.live.trial import discover_clock, session_endpoint_url

    url = session_endpoint_url(session)
    clock = discover_clock(url)
    if clock.speed != 1.0 or (url and _is_local_aws(url)):
        log(
            f"clock: the local AWS's virtual clock (x{clock.speed:g}), now "
            f"{clock.datetime_at(clock.now()):%Y-%m-%d %H:%M:%S} UTC (virtual)"
        )
        return clock
    before = time.time()
    resp = session.client("sagemaker").describe_endpoint(EndpointName=endpoint)
    after = time.time()
    stamp = resp.get("ResponseMetadata", {}).get("HTTPHeaders", {}).get("date")
    if not stamp:
        return clock
    # The Date header has whole seconds: the skew is known to about a second.
    skew_s = email.utils.parsedate_to_datetime(stamp).timestamp() - (before + after) / 2
    if abs(skew_s) > SKEW_WARN_S:
        log(f"clock: this machine is {skew_s:+.0f} s off AWS's clock; using AWS's time")
    now = time.time()
    return VirtualClock(speed=1.0, real_epoch_s=now, virtual_epoch_s=now + round(skew_s))


def _is_local_aws(url: str) -> bool:
    import json
    import urllib.request

    try:
        with urllib.request.urlopen(url.rstrip("/") + "/_tuner/clock", timeout=2) as resp:
            return "speed" in json.loads(resp.read())
    except (OSError, ValueError):
        return False


def parse_end(value: str) -> dt.datetime:
    """--end: an ISO-8601 time, UTC unless it names a zone."""
    from tuner.errors import ValidationError

    try:
        end = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as e:
        raise ValidationError(f"--end must be ISO-8601, got {value!r}") from e
    return end if end.tzinfo else end.replace(tzinfo=dt.UTC)


def add_stream_options(p: argparse.ArgumentParser) -> None:
    """--stream, --inference-component and the token-length options (loadtest, trial)."""
    g = p.add_argument_group("LLM endpoints (streaming)")
    g.add_argument(
        "--stream",
        action="store_true",
        help="InvokeEndpointWithResponseStream with LMI/TGI bodies; records TTFT, ITL, tokens",
    )
    g.add_argument(
        "--inference-component", help="target this inference component (header on each request)"
    )
    g.add_argument("--prompt-tokens", type=int, default=512, help="mean prompt words (default 512)")
    g.add_argument(
        "--output-tokens", type=int, default=256, help="mean max_new_tokens (default 256)"
    )
    g.add_argument(
        "--token-dist",
        choices=["fixed", "lognormal", "uniform"],
        default="fixed",
        help="how lengths vary around the means (default fixed); a profile replaying an LLM "
        "request trace (TIMESTAMP,ContextTokens,GeneratedTokens) gives each request its own",
    )
    g.add_argument(
        "--token-sigma", type=float, default=0.5, help="lognormal: sigma of log(length), mean kept"
    )
    g.add_argument(
        "--token-spread",
        type=float,
        default=0.5,
        help="uniform: lengths in mean x [1 - spread, 1 + spread] (default 0.5)",
    )
    g.add_argument("--token-seed", type=int, default=0, help="seed of the lengths (default 0)")


def token_spec_from(args: argparse.Namespace) -> TokenSpec:
    """The TokenSpec of the parsed stream options (ValidationError on a bad one)."""
    from tuner.profiles.tokens import TokenDistribution, TokenSpec

    return TokenSpec(
        prompt_tokens=args.prompt_tokens,
        output_tokens=args.output_tokens,
        distribution=TokenDistribution(args.token_dist),
        sigma=args.token_sigma,
        spread=args.token_spread,
        seed=args.token_seed,
    )


def write_simulation(out: Path, first: dict[str, Any], result: Any, *, many: bool) -> None:
    """``tuner simulate``'s files: summary.json (the first policy), and with several policies
    summary.csv and one timeline CSV each under timelines/ (else timeline.csv is the caller's)."""
    (out / "summary.json").write_text(json.dumps(first, indent=2) + "\n", encoding="utf-8")
    if many:
        result.summary.to_csv(out / "summary.csv", index_label="candidate")
        (out / "timelines").mkdir(exist_ok=True)
        for i, label in enumerate(result.summary["label"]):
            result.timeline(i).to_csv(out / "timelines" / f"{label}.csv", index=False)


def demo_folders(args: argparse.Namespace, prefix: str) -> tuple[dt.datetime, Path, Path]:
    """``tuner demo``'s checks of --speed/--seeds, then its report folder (new or empty) and the
    work folder beside it: (now, out, work)."""
    from tuner.errors import ValidationError

    if not 1 <= args.speed <= 120:
        raise ValidationError(f"--speed must be in 1..120, got {args.speed:g}")
    if not 1 <= args.seeds <= 100:
        raise ValidationError(f"--seeds must be in 1..100, got {args.seeds}")
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    out = Path(args.out or f"reports/{prefix}-{now:%Y%m%d-%H%M%S}")
    if out.exists() and any(out.iterdir()):
        raise ValidationError(f"--out must be a new or empty folder, got {out}")
    work = out.parent / f".{out.name}-work"
    work.mkdir(parents=True, exist_ok=True)
    return now, out, work
