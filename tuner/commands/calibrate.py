"""tuner calibrate: measure what one instance sustains and write capacity.json."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tuner.commands._common import add_aws_options, aws_session
from tuner.commands._live import add_guardrail_options, guardrails_from

if TYPE_CHECKING:
    from tuner.aws import AwsSession
    from tuner.live import CalibrationSpec
    from tuner.model import Capacity

EPILOG = """\
examples:
  tuner calibrate --endpoint my-endpoint --slo-p99-ms 500 --out capacity.json
  tuner calibrate --endpoint demo-endpoint --slo-p99-ms 300 --start-rps 5 --measure-boot

The variant is held at one instance with dynamic scaling suspended, an open-loop step test
raises the rate (x2 steps to bracket the limit, then 10 even steps inside it), and the highest
rate whose p99 and error rate meet the objective becomes max_rps_per_instance. A failing step
that does not fail as overload does (a burst, a left-over queue, a few slow requests) is run
again once single probe requests show the endpoint idle. The scaling configuration and the
instance count are restored afterwards. AWS's rule of thumb for the target (max rps x 60 x 0.5)
is printed beside it.
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
        type=float,
        required=True,
        help="latency objective: p99 of successful requests, in ms",
    )
    p.add_argument(
        "--max-error-rate",
        type=float,
        default=0.001,
        help="share of failed requests a step may have (default: 0.001)",
    )
    p.add_argument("--start-rps", type=float, default=1.0, help="first step's rate (default: 1)")
    p.add_argument(
        "--step-s",
        type=float,
        default=60.0,
        help="seconds each step lasts, virtual on the local AWS (default: 60)",
    )
    p.add_argument(
        "--measure-boot",
        action="store_true",
        help="also time one scale-out 1 -> 2 instances to measure boot_s",
    )
    p.add_argument(
        "--boot-s",
        type=float,
        default=300.0,
        help="boot time to record when not measured (default: 300)",
    )
    p.add_argument(
        "--hourly-usd",
        type=float,
        default=0.23,
        help="price of one instance-hour, for costs (default: 0.23)",
    )
    p.add_argument("--out", default="capacity.json", help="capacity file (default: capacity.json)")
    p.add_argument("--seed", type=int, default=0, help="seed for payload choice")
    add_guardrail_options(p)
    add_aws_options(p)
    return p


def run(args: argparse.Namespace) -> int:
    from tuner.live import CalibrationSpec

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
    run_calibration(spec, aws_session(args), Path(args.out))
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
    print(json.dumps(cap.to_dict(), indent=2))
    return cap
