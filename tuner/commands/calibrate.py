"""tuner calibrate: measure what one instance sustains and write capacity.json."""

from __future__ import annotations

import argparse
import contextlib
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tuner.commands._common import (
    add_aws_options,
    add_stream_options,
    aws_session,
    token_spec_from,
)
from tuner.commands._live import add_guardrail_options, confirm, finite_float, guardrails_from

if TYPE_CHECKING:
    from tuner.aws import AwsSession
    from tuner.live import CalibrationSpec
    from tuner.live.llm_calibration import StreamCalibrationSpec
    from tuner.model import Capacity

# Options whose default differs between the step test and --stream: (step test, --stream).
MODE_DEFAULTS: dict[str, tuple[float, float]] = {
    "step_s": (60.0, 30.0),
    "max_error_rate": (0.001, 0.01),
    "hourly_usd": (0.23, 0.9776),
}

EPILOG = """\
examples:
  tuner calibrate --endpoint my-endpoint --slo-p99-ms 500 --out capacity.json
  tuner calibrate --endpoint demo-endpoint --slo-p99-ms 300 --start-rps 5 --measure-boot
  tuner calibrate --stream --endpoint llm-ep --inference-component llama-ic \
      --prompt-tokens 512 --output-tokens 256 --out llm-capacity.json

--stream measures an LLM endpoint as it is (hold it at --copies copies): closed-loop streams at
concurrency 1, 2, 4, ... until TTFT p99 rises past max(--ttft-factor x its value at concurrency
1, that + --ttft-slack-ms) or errors pass --max-error-rate, then one by one inside; writes the
token-aware capacity file (kind "llm") with TTFT/ITL p50/p99 by concurrency per copy.

The variant is held at one instance with dynamic scaling suspended, an open-loop step test
raises the rate (x2 steps to bracket the limit, then 10 even steps inside it), and the highest
rate whose p99 and error rate meet the objective becomes max_rps_per_instance. A failing step
that does not fail as overload does (a burst, a left-over queue, a few slow requests) is run
again once single probe requests show the endpoint idle. The scaling configuration and the
instance count are restored afterwards, on every exit (error, Ctrl-C, SIGTERM, SIGHUP; after
kill -9 run `tuner restore` on the journal in the work folder). It asks before the change
(--yes skips; required without a terminal; the local AWS never asks). AWS's rule of thumb
for the target (max rps x 60 x 0.5) is printed beside it.
"""


def register(sub: Any) -> argparse.ArgumentParser:
    p: argparse.ArgumentParser = sub.add_parser(
        "calibrate",
        help="measure one instance's sustainable rate and latency curve (capacity.json)",
        description="Find the highest request rate one instance of the endpoint sustains within "
        "a latency objective, with an open-loop step-rate test, and write capacity.json.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--endpoint", required=True, help="SageMaker endpoint name")
    p.add_argument(
        "--variant", default="AllTraffic", help="production variant (default: AllTraffic)"
    )
    p.add_argument(
        "--slo-p99-ms",
        type=finite_float,
        help="latency objective: p99 of successful requests, in ms (required without --stream)",
    )
    p.add_argument(
        "--max-error-rate",
        type=finite_float,
        help="share of failed requests a step may have (default: 0.001; 0.01 with --stream)",
    )
    p.add_argument(
        "--start-rps", type=finite_float, default=1.0, help="first step's rate (default: 1)"
    )
    p.add_argument(
        "--step-s",
        type=finite_float,
        help="seconds each step lasts, virtual on the local AWS (default: 60; 30 with --stream, "
        "real seconds)",
    )
    p.add_argument(
        "--measure-boot",
        action="store_true",
        help="also time one scale-out 1 -> 2 instances to measure boot_s",
    )
    p.add_argument(
        "--boot-s",
        type=finite_float,
        default=300.0,
        help="boot time to record when not measured (default: 300)",
    )
    p.add_argument(
        "--hourly-usd",
        type=finite_float,
        help="price of one instance-hour, for costs (default: 0.23; 0.9776 with --stream, "
        "an ml.g6.2xlarge)",
    )
    p.add_argument("--out", default="capacity.json", help="capacity file (default: capacity.json)")
    p.add_argument("--seed", type=int, default=0, help="seed for payload choice")
    add_stream_options(p)
    g = p.add_argument_group("--stream calibration")
    g.add_argument("--max-concurrency", type=int, default=256, help="highest concurrency tried")
    g.add_argument("--ttft-factor", type=finite_float, default=2.0, help="limit rule (default 2)")
    g.add_argument("--ttft-slack-ms", type=finite_float, default=50.0, help="default 50 ms")
    g.add_argument(
        "--copies",
        type=int,
        default=1,
        help="copies serving during the test (with --inference-component: held there, then put "
        "back)",
    )
    g.add_argument(
        "--no-hold",
        action="store_true",
        help="measure the inference component as it is: change no scaling (hold its copies "
        "yourself)",
    )
    g.add_argument("--instance-type", default="ml.g6.2xlarge", help="recorded in the file")
    g.add_argument("--copies-per-instance", type=int, default=1, help="recorded in the file")
    g.add_argument("--copy-load-s", type=finite_float, default=258.0, help="copy load time")
    g.add_argument("--timeout-ms", type=finite_float, default=60000.0, help="request timeout")
    add_guardrail_options(p)
    add_aws_options(p)
    parser: argparse.ArgumentParser = p
    return parser


def resolve_mode_defaults(args: argparse.Namespace) -> None:
    """Fill the options left out (None) with the default of the mode (--stream or not)."""
    for name, (step_test, stream) in MODE_DEFAULTS.items():
        if getattr(args, name) is None:
            setattr(args, name, stream if args.stream else step_test)


def stream_spec_from(args: argparse.Namespace) -> StreamCalibrationSpec:
    """The --stream calibration's spec from the parsed options."""
    from tuner.live.llm_calibration import StreamCalibrationSpec

    resolve_mode_defaults(args)
    return StreamCalibrationSpec(
        endpoint=args.endpoint,
        inference_component=args.inference_component,
        tokens=token_spec_from(args),
        step_s=args.step_s,
        max_concurrency=args.max_concurrency,
        ttft_factor=args.ttft_factor,
        ttft_slack_ms=args.ttft_slack_ms,
        max_error_rate=args.max_error_rate,
        copies=args.copies,
        instance_type=args.instance_type,
        hourly_usd=args.hourly_usd,
        copies_per_instance=args.copies_per_instance,
        instance_boot_s=args.boot_s,
        copy_load_s=args.copy_load_s,
        timeout_ms=args.timeout_ms,
    )


def run_stream(args: argparse.Namespace) -> int:
    """tuner calibrate --stream: the concurrency limit and TTFT/ITL curve of an LLM endpoint."""
    import os

    import botocore.session

    from tuner.errors import ValidationError
    from tuner.live.llm_calibration import calibrate_stream, save_capacity

    spec = stream_spec_from(args)
    if args.dry_run:
        print("dry run: tuner calibrate --stream would make these AWS calls:")
        if args.inference_component and not args.no_hold:
            print(
                "  application-autoscaling Describe* (snapshot), RegisterScalableTarget "
                "(SuspendedState: dynamic scaling suspended)"
            )
            print(
                f"  sagemaker UpdateInferenceComponentRuntimeConfig (to {args.copies} copies), "
                "DescribeInferenceComponent (polled)"
            )
        print("  sagemaker-runtime InvokeEndpointWithResponseStream (closed-loop steps)")
        if args.inference_component and not args.no_hold:
            print("  then the snapshot and the copy count put back")
        return 0
    session = botocore.session.Session(profile=args.aws_profile)
    region = args.region or session.get_config_variable("region") or os.environ.get("AWS_REGION")
    creds = session.get_credentials()
    if not region or creds is None:
        raise ValidationError("no AWS region or credentials: pass --region and set credentials")
    host = (
        args.endpoint_url
        or os.environ.get("AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME")
        or os.environ.get("AWS_ENDPOINT_URL")
        or f"https://runtime.sagemaker.{region}.amazonaws.com"
    )
    from dataclasses import replace

    from tuner.live.trial import discover_clock

    # On the local AWS the clock is accelerated: measured real ms stand for speed x virtual ms.
    spec = replace(spec, time_scale=discover_clock(host).speed)
    out = Path(args.out)

    def log(message: str) -> None:
        print(message, flush=True)

    hold: Any = contextlib.nullcontext()
    if args.inference_component and not args.no_hold:
        from tuner.commands._common import aws_session
        from tuner.live.llm_calibration import holding_copies

        journal = out.with_name(out.stem + ".restore-journal.json")
        hold = holding_copies(
            aws_session(args), args.inference_component, args.copies, journal, log
        )
    with hold:
        result = calibrate_stream(spec, host=host, region=region, credentials=creds, log=log)
    save_capacity(result.capacity, out)
    steps_path = out.with_name(out.stem + "-steps.csv")
    result.steps.to_csv(steps_path, index=False)
    cap = result.capacity
    print(
        f"one copy serves {cap['max_concurrency_per_copy']} concurrent sequences within the "
        f"TTFT rule; wrote {out} and {steps_path}"
    )
    return 0


def run(args: argparse.Namespace) -> int:
    from tuner.errors import ValidationError
    from tuner.live import CalibrationSpec

    if args.stream:
        return run_stream(args)
    if args.slo_p99_ms is None:
        raise ValidationError("--slo-p99-ms is required (or --stream for an LLM endpoint)")
    resolve_mode_defaults(args)

    spec = CalibrationSpec(
        endpoint=args.endpoint,
        variant=args.variant,
        slo_p99_ms=args.slo_p99_ms,
        max_error_rate=args.max_error_rate,
        start_rps=args.start_rps,
        max_rps=args.max_rps,
        step_s=args.step_s,
        measure_boot=args.measure_boot,
        boot_s=args.boot_s,
        hourly_usd=args.hourly_usd,
        seed=args.seed,
        guardrails=guardrails_from(args),
    )
    if args.dry_run:
        print("dry run: tuner calibrate would make these AWS calls:")
        for line in (
            "sagemaker DescribeEndpoint, DescribeEndpointConfig, ListTags",
            "application-autoscaling Describe* (snapshot), RegisterScalableTarget "
            "(SuspendedState: dynamic scaling suspended)",
            "sagemaker UpdateEndpointWeightsAndCapacities (to 1 instance), DescribeEndpoint "
            "(polled until InService)",
            "sagemaker-runtime InvokeEndpoint (the step test, via Locust; single probes "
            "before it and after a failing step, until the endpoint is idle)",
            "sagemaker UpdateEndpointWeightsAndCapacities (back to the original count)",
            "application-autoscaling RegisterScalableTarget, PutScalingPolicy, ... (restore)",
        ):
            print(f"  {line}")
        return 0
    from tuner.aws import Endpoints
    from tuner.live.trial import session_endpoint_url

    session = aws_session(args)
    endpoints = Endpoints(session=session)
    endpoints.describe(args.endpoint).variant(args.variant)
    spec.guardrails.check(endpoints, args.endpoint, None, spec.max_rps)  # refusals before asking
    confirm(
        [
            f"calibrate {args.endpoint}/{args.variant}: dynamic scaling suspended, held at 1 "
            f"instance, step test up to {args.max_rps:g} rps; all restored afterwards"
        ],
        yes=args.yes,
        endpoint_url=session_endpoint_url(session),
    )
    run_calibration(spec, session, Path(args.out))
    return 0


def run_calibration(spec: CalibrationSpec, session: AwsSession, out: Path) -> Capacity:
    """Calibrate, save ``out`` and its step table beside it, print what was found."""
    from tuner.live import calibrate

    result = calibrate(spec, session, workdir=out.parent / f".{out.stem}-work")
    result.capacity.save(out)
    steps_path = out.with_name(out.stem + "-steps.csv")
    result.steps.to_csv(steps_path, index=False)
    cap = result.capacity
    print(
        f"one {cap.instance_type} instance sustains {cap.max_rps_per_instance:g} rps within "
        f"p99 <= {spec.slo_p99_ms:g} ms; wrote {out} and {steps_path}"
    )
    print(
        f"AWS rule of thumb: TargetValue = {cap.max_rps_per_instance:g} x 60 x 0.5 = "
        f"{result.rule_of_thumb.target_value:g} invocations per instance per minute"
    )
    # Concise: the curve and the boot time in one line; capacity.json has them in full.
    curve = ", ".join(
        f"{p.rps:g} rps p50 {p.p50_ms:.0f} / p99 {p.p99_ms:.0f} ms" for p in cap.latency
    )
    print(f"latency: {curve}; boot {cap.boot_s:g} s (virtual on the local AWS)")
    return cap
