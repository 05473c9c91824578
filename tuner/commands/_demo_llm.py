"""tuner demo --llm: the LLM workflow on the embedded local AWS, no account needed.

The local AWS hosts an inference component whose true nature (an 8B-class model on
ml.g6.2xlarge: prefill, decode and contention figures, 8 sequences per copy, a copy load time
scaled from the published 258 s down to 60 s so the demo fits) the tuner does not know. Each
step runs the very command line it prints, through the same parser and code as the CLI.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from tuner.commands._common import PROFILES_DIR, demo_folders

ENDPOINT = "demo-llm-endpoint"
COMPONENT = "demo-llm"
PROFILE = "demo-llm"
PROMPT_TOKENS = 512
OUTPUT_TOKENS = 32
# The objective: TTFT and ITL p99; an internal assistant whose client retries a refused request
# may accept a few percent of requests refused while a copy starts from zero. At an accelerated
# clock a real millisecond of client or timer jitter reads as --speed virtual ones, which
# inflates measured ITL p99s (a 40-ms gap is 1.3 real ms at x30): hence the loose ITL objective,
# a property of the demo, not advice.
SLO_TTFT_P99_MS = 2000.0
SLO_ITL_P99_MS = 1000.0
MAX_ERROR_RATE = 0.06
MAX_SLO_VIOLATION = 0.08
HOURLY_USD = 0.9776
COPY_LOAD_S = 60.0
INSTANCE_BOOT_S = 60.0
SHORT_MINUTES = 16.0
"""--short plays only the profile's first minutes (tests)."""


def true_spec() -> Any:
    """What a copy really does (the tuner learns it only by calibrating)."""
    from tuner.emulator import LlmServerSpec

    return LlmServerSpec(
        prefill_tokens_per_s=2500.0,
        prefill_contention=0.15,
        decode_tokens_per_s=25.0,
        decode_contention=0.15,
        max_concurrent_sequences=8,
        copies_per_instance=1,
        copy_load_s=COPY_LOAD_S,
        instance_boot_s=INSTANCE_BOOT_S,
        min_instances=0,
        max_instances=4,
        hourly_usd=HOURLY_USD,
    )


def guess_policy() -> Any:
    """Today's guess on the component: 4 sequences per copy, 1 to 3 copies."""
    from tuner.tune.llm import copy_policy

    return copy_policy(4.0, 1, 3, name="todays-guess")


def _step(title: str) -> None:
    print(f"\n== {title}", file=sys.stderr, flush=True)


def _run_cli(argv: list[str]) -> None:
    """Print ``tuner ARGV`` and run it as the CLI would (errors propagate as TunerError)."""
    from tuner.cli import build_parser
    from tuner.commands._checks import check_args

    print("$ tuner " + " ".join(argv), file=sys.stderr, flush=True)
    args = build_parser().parse_args(argv)
    args.debug = False
    check_args(args.command, args)
    status = int(args._run(args) or 0)
    if status:
        from tuner.errors import TunerError

        raise TunerError(f"`tuner {argv[0]}` ended with status {status}")


def run_llm_demo(args: argparse.Namespace) -> int:
    from tuner.emulator import EmulatorConfig, LocalAws

    began = time.monotonic()
    now, out, work = demo_folders(args, "demo-llm")
    config = EmulatorConfig(
        port=0,
        speed=args.speed,
        endpoint=ENDPOINT,
        inference_component=COMPONENT,
        copies=1,
        llm=true_spec(),
        metric_lag_s=60.0,
    )
    _step(
        f"1. local AWS on 127.0.0.1 at x{args.speed:g}: endpoint {ENDPOINT}, inference "
        f"component {COMPONENT} (1 copy)"
    )
    with LocalAws(config) as aws:
        os.environ.update(aws.env)  # boto3, the calibration and Locust find the local AWS
        print(f"AWS_ENDPOINT_URL={aws.url}", file=sys.stderr)
        _step("2. today's guess on the component, the policy to beat")
        current = work / "current.policy.json"
        current.write_text(guess_policy().to_json())
        _run_cli(["apply", str(current), "--inference-component", COMPONENT])
        _step("3. calibrate one copy with streams (held at 1 copy, then restored)")
        capacity = work / "llm-capacity.json"
        step_s = "1.5" if args.short else "3"
        _run_cli(
            [
                "calibrate", "--stream", "--endpoint", ENDPOINT,
                "--inference-component", COMPONENT, "--copies", "1",
                "--prompt-tokens", str(PROMPT_TOKENS), "--output-tokens", str(OUTPUT_TOKENS),
                "--step-s", step_s, "--max-concurrency", "16", "--ttft-factor", "3",
                "--instance-type", "ml.g6.2xlarge", "--hourly-usd", f"{HOURLY_USD}",
                "--copy-load-s", f"{COPY_LOAD_S:g}", "--boot-s", f"{INSTANCE_BOOT_S:g}",
                "--out", str(capacity),
            ]
        )  # fmt: skip
        profile = _profile(work, args.short)
        _step(
            "4. simulate copy policies (MinCopyCount 0 included) on the profile, trial the top "
            "one live on the component"
        )
        _run_cli(
            [
                "tune", "--profile", str(profile), "--capacity", str(capacity),
                "--slo-ttft-p99-ms", f"{SLO_TTFT_P99_MS:g}",
                "--slo-itl-p99-ms", f"{SLO_ITL_P99_MS:g}",
                "--max-error-rate", f"{MAX_ERROR_RATE:g}",
                "--max-slo-violation", f"{MAX_SLO_VIOLATION:g}",
                "--seeds", str(args.seeds), "--endpoint", ENDPOINT,
                "--inference-component", COMPONENT, "--live", "--top", "1", "--out", str(out),
            ]
        )  # fmt: skip
        _step("5. what applying the recommendation would change")
        recommended = out / "recommended.policy.json"
        _run_cli(["apply", str(recommended), "--inference-component", COMPONENT, "--dry-run"])
    for path in work.glob("llm-capacity*"):
        path.replace(out / path.name)
    seconds = time.monotonic() - began
    _summary(out, seconds)
    return 0


def _profile(work: Path, short: bool) -> Path:
    """The ready profile, or (``short``) its first SHORT_MINUTES written into the work folder."""
    path = PROFILES_DIR / f"{PROFILE}.toml"
    if not short:
        return path
    from tuner.profiles import load_profile
    from tuner.profiles.window import to_toml, window

    cut = window(load_profile(path), 0.0, SHORT_MINUTES * 60)
    target = work / f"{PROFILE}-short.toml"
    target.write_text(to_toml(cut, description=f"{PROFILE}, first {SHORT_MINUTES:g} min"))
    return target


def _summary(out: Path, seconds: float) -> None:
    """The recommendation and the trial in a few lines, and where the files are."""
    import pandas as pd

    table = pd.read_csv(out / "candidates.csv").sort_values("rank")
    best = table.iloc[0]
    zero = table[table["min_capacity"] == 0]
    print(
        f"\nrecommended: {best['candidate']} ({'meets' if best['meets_objective'] else 'misses'}"
        f" the objective), ${best['monthly_cost_usd']:,.0f}/month, MinCopyCount "
        f"{int(best['min_capacity'])}, TTFT p99 {best['ttft_p99_ms']:.0f} ms (a failed request "
        f"counts as the timeout), ITL p99 {best['itl_p99_ms']:.0f} ms (simulated)"
    )
    if len(zero):
        z = zero.iloc[0]
        print(
            f"best scale-to-zero candidate: {z['candidate']} (rank {int(z['rank'])}), "
            f"${z['monthly_cost_usd']:,.0f}/month, {z['zero_copy_hours']:.2f} h at zero copies, "
            f"{z['error_rate']:.1%} of requests refused or failed"
        )
    for summary_path in sorted((out / "trials").glob("*/summary.json")):
        s = json.loads(summary_path.read_text())
        ttft = s.get("ttft_p99_ms")
        print(
            f"live trial {s['candidate']}: {s['requests']} streams, {s['error_rate']:.1%} failed "
            f"({s.get('refused_no_capacity', 0)} at zero copies), TTFT p99 of the answered "
            f"{ttft if ttft is None else round(ttft)} ms, copies up to {s.get('max_instances')}"
        )
    print(
        f"demo finished in {seconds / 60:.1f} min ({seconds:.0f} s). Report: {out / 'report.html'}"
    )
    print(f"Also: {out / 'report.md'}, {out / 'candidates.csv'}, {out / 'recommended.policy.json'}")
