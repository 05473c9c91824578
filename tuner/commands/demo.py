"""tuner demo: the whole job on the embedded local AWS, no account needed."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import Any

from tuner.commands._common import PROFILES_DIR, demo_folders

EPILOG = """\
example:
  tuner demo                 # about 3-4 minutes; prints where the report is
  tuner demo --speed 30 --out reports/my-demo

What it does, all on 127.0.0.1 with dummy credentials:
  1. starts the local AWS (as `tuner emulate`) with an emulated endpoint whose true nature
     (about 2 rps per instance, 4-minute boot) the tuner does not know;
  2. applies today's hand-picked policy (`tuner apply`), the one to beat;
  3. measures one instance (`tuner calibrate --measure-boot`);
  4. simulates a grid of candidates on two ready profiles (demo-spike, demo-ramp) and trials the
     top two live on the emulated endpoint (`tuner tune --live --top 2`);
  5. writes the report and shows what `tuner apply` would change.
The clock runs --speed times faster than real time: a 25-minute profile plays in 25 s at x60.

tuner demo --llm (about 3-4 minutes at x30): the same for an LLM on an inference component:
  1. the local AWS with an inference component (an 8B-class model on ml.g6.2xlarge, copy load
     time scaled to 60 s) whose true nature the tuner does not know;
  2. today's guess (target tracking on ConcurrentRequestsPerCopyHighResolution) applied to it;
  3. `tuner calibrate --stream` holds it at 1 copy and measures TTFT/ITL by concurrency;
  4. `tuner tune` with TTFT/ITL objectives on the ready profile demo-llm (idle spells, so
     MinCopyCount 0 is a candidate), the top candidate trialled live (`--live --top 1`);
  5. the report, and what `tuner apply` would change.
"""

ENDPOINT = "demo-endpoint"

DEMO_PROFILES = ("demo-spike", "demo-ramp")
SLO_P99_MS = 2500.0
MAX_ERROR_RATE = 0.01
# The emulated endpoint's true nature: an LLM-sized model on a GPU instance. The price is
# illustrative, not a quote.
TRUE_CAPACITY = {
    "instance_type": "ml.g4dn.xlarge",
    "hourly_usd": 0.74,
    "boot_s": 240,
    "max_rps_per_instance": 2.0,
    "timeout_ms": 60000,
    "latency_ms": [{"rps": 0.5, "p50": 350, "p99": 800}, {"rps": 2.0, "p50": 450, "p99": 1200}],
}
# Today's guess, the policy the demo endpoint starts with.
CURRENT_POLICY = {
    "ScalableTarget": {"MinCapacity": 1, "MaxCapacity": 4},
    "TargetTrackingScalingPolicyConfiguration": {
        "TargetValue": 100.0,
        "PredefinedMetricSpecification": {
            "PredefinedMetricType": "SageMakerVariantInvocationsPerInstance"
        },
        "ScaleOutCooldown": 300,
        "ScaleInCooldown": 300,
        "DisableScaleIn": False,
    },
    "PolicyName": "todays-guess",
}


def register(sub: Any) -> argparse.ArgumentParser:
    p: argparse.ArgumentParser = sub.add_parser(
        "demo",
        help="run the whole workflow on the embedded local AWS (no account needed)",
        description="Start the local AWS, calibrate, tune on two ready profiles, trial the top "
        "two live at an accelerated clock, and write the report.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--speed",
        type=float,
        default=None,
        help="virtual seconds per real second (default: 60; 30 with --llm)",
    )
    p.add_argument(
        "--llm",
        action="store_true",
        help="the LLM demo: an inference component, streaming calibration, TTFT/ITL tuning "
        "with scale to zero, a live trial on the component",
    )
    p.add_argument(
        "--short",
        action="store_true",
        help="with --llm: play only the profile's first 16 minutes, calibrate briefly (tests)",
    )
    p.add_argument("--out", help="run directory (default: reports/demo-<UTC time>)")
    p.add_argument("--seeds", type=int, default=3, help="simulation seeds (default: 3)")
    return p


def _step(title: str) -> None:
    print(f"\n== {title}", file=sys.stderr, flush=True)


def _show(argv: list[str]) -> None:
    """The command line that does what the next step does: the demo doubles as a tutorial."""
    print("$ tuner " + " ".join(argv), file=sys.stderr, flush=True)


def run(args: argparse.Namespace) -> int:
    from tuner.aws import AwsSession
    from tuner.commands.apply import apply_policy
    from tuner.commands.calibrate import run_calibration
    from tuner.commands.tune import run_tuning
    from tuner.emulator import EmulatorConfig, LocalAws
    from tuner.errors import ValidationError
    from tuner.live import CalibrationSpec, Guardrails
    from tuner.model import Capacity, SimulationSettings
    from tuner.policy import Resource, ScalingPolicy
    from tuner.profiles import load_profile
    from tuner.tune import Grid, Objective

    if args.llm:
        from tuner.commands._demo_llm import run_llm_demo

        args.speed = 30.0 if args.speed is None else args.speed
        return run_llm_demo(args)
    if args.short:
        raise ValidationError("--short is for --llm")
    args.speed = 60.0 if args.speed is None else args.speed
    began = time.monotonic()
    now, out, work = demo_folders(args, "demo")
    config = EmulatorConfig(
        speed=args.speed, endpoint=ENDPOINT, capacity=Capacity.from_dict(TRUE_CAPACITY), instances=1
    )
    resource = Resource.for_variant(ENDPOINT, "AllTraffic")
    _step(f"1. local AWS on 127.0.0.1 at x{args.speed:g} (endpoint {ENDPOINT})")
    with LocalAws(config) as aws:
        # boto3 clients and the Locust subprocesses all find the local AWS through these.
        os.environ.update(aws.env)
        print(f"AWS_ENDPOINT_URL={aws.url}", file=sys.stderr)
        session = AwsSession()
        _step("2. today's hand-picked policy, the one to beat")
        current = work / "current.policy.json"
        current.write_text(json.dumps(CURRENT_POLICY, indent=2) + "\n")
        _show(["apply", str(current), "--endpoint", ENDPOINT])
        apply_policy(ScalingPolicy.load(current), resource, session, dry_run=False)
        _step("3. calibrate one instance")
        capacity_path = work / "capacity.json"
        _show(
            [
                "calibrate",
                "--endpoint",
                ENDPOINT,
                "--slo-p99-ms",
                f"{SLO_P99_MS:g}",
                "--start-rps",
                "0.5",
                "--step-s",
                "120",
                "--measure-boot",
                "--hourly-usd",
                f"{TRUE_CAPACITY['hourly_usd']}",
                "--out",
                str(capacity_path),
            ]
        )
        spec = CalibrationSpec(
            endpoint=ENDPOINT,
            slo_p99_ms=SLO_P99_MS,
            start_rps=0.5,
            step_s=120.0,
            measure_boot=True,
            hourly_usd=float(TRUE_CAPACITY["hourly_usd"]),  # type: ignore[arg-type]
            guardrails=Guardrails(),
        )
        capacity = run_calibration(spec, session, capacity_path)
        _step("4. simulate candidates on two profiles, trial the top two live")
        argv = ["tune", "--capacity", str(capacity_path), "--slo-p99-ms", f"{SLO_P99_MS:g}"]
        argv += ["--max-error-rate", f"{MAX_ERROR_RATE:g}", "--seeds", str(args.seeds)]
        argv += ["--endpoint", ENDPOINT, "--live", "--top", "2", "--out", str(out)]
        paths = [PROFILES_DIR / f"{name}.toml" for name in DEMO_PROFILES]
        for path in paths:
            argv += ["--profile", str(path)]
        _show(argv)
        run_tuning(
            [(load_profile(path), path) for path in paths],
            Objective(slo_p99_ms=SLO_P99_MS, max_error_rate=MAX_ERROR_RATE),
            out=out,
            capacity=capacity,
            capacity_path=capacity_path,
            settings=SimulationSettings(seeds=tuple(range(args.seeds))),
            grid=Grid(),
            grid_path=None,
            endpoint=ENDPOINT,
            variant="AllTraffic",
            live_top=2,
            session=session,
            command=" ".join(["tuner", *argv]),
            created=now,
        )
        _step("5. what applying the recommendation would change")
        recommended = out / "recommended.policy.json"
        _show(["apply", str(recommended), "--endpoint", ENDPOINT, "--dry-run"])
        apply_policy(ScalingPolicy.load(recommended), resource, session, dry_run=True)
    for name in ("capacity.json", "capacity-steps.csv"):
        if (work / name).exists():
            (work / name).replace(out / name)
    minutes = (time.monotonic() - began) / 60
    print(f"\ndemo finished in {minutes:.1f} min. Report: {out / 'report.html'}")
    print(f"Also: {out / 'report.md'}, {out / 'candidates.csv'}, {out / 'recommended.policy.json'}")
    return 0
