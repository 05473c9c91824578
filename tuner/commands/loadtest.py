"""tuner loadtest: play a traffic profile against an endpoint, open loop, with Locust."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from tuner.commands._common import add_aws_options

EPILOG = """\
examples:
  tuner loadtest --profile locustfiles/profiles/flash-spike.toml --endpoint my-ep --out runs/spike
  tuner loadtest --profile locustfiles/profiles/launch-day.toml --endpoint demo \\
      --host http://127.0.0.1:4566 --speed 20 --workers 2 --out runs/launch

Requests leave on the profile's schedule whatever the endpoint's latency (open loop), signed with
SigV4 from the standard credential chain. --speed S plays the profile S times faster (for the
local emulator's virtual clock): per-minute counts stay those of the profile.

Writes in --out: requests.csv (one row per request: seq, scheduled_s, sent_epoch_s, latency_ms,
status, error, worker), periods.csv (per period: due, sent, completed, failures by kind, latency
p50/p90/p99, profile vs achieved rate), summary.json, and Locust's own locust*.csv / locust.html.
"""


def register(sub: Any) -> argparse.ArgumentParser:
    p: argparse.ArgumentParser = sub.add_parser(
        "loadtest",
        help="drive a traffic profile against an endpoint (open-loop Locust)",
        description="Send SigV4-signed InvokeEndpoint requests on a traffic profile's schedule "
        "with Locust (one process, or a master and N workers on 127.0.0.1), and record every "
        "request.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--profile", required=True, help="traffic profile TOML")
    p.add_argument("--endpoint", required=True, help="SageMaker endpoint name")
    p.add_argument(
        "--variant", help="target this production variant (default: let SageMaker route)"
    )
    p.add_argument(
        "--host",
        help="runtime base URL (default: --endpoint-url / AWS_ENDPOINT_URL, else the region's "
        "https://runtime.sagemaker.REGION.amazonaws.com)",
    )
    p.add_argument("--out", required=True, help="folder for the results")
    p.add_argument("--workers", type=int, default=0, help="Locust workers (default 0: one process)")
    p.add_argument(
        "--speed", type=float, default=1.0, help="profile seconds per real second (default 1)"
    )
    p.add_argument("--seed", type=int, help="noise seed (default: the profile's)")
    p.add_argument("--payload", help="JSON-lines file or folder of request bodies")
    p.add_argument("--content-type", default="application/json", help="default: application/json")
    p.add_argument("--payload-order", choices=["cycle", "random"], default="cycle")
    p.add_argument(
        "--max-inflight", type=int, default=1000, help="in-flight request cap (default 1000)"
    )
    p.add_argument(
        "--request-timeout", type=float, default=70.0, help="seconds per request (default 70)"
    )
    p.add_argument(
        "--period", type=float, default=60.0, help="period of periods.csv, profile seconds"
    )
    add_aws_options(p)
    return p


def run(args: argparse.Namespace) -> int:
    from tuner.live.loadgen import LoadTestConfig, run_loadtest

    config = LoadTestConfig(
        profile_path=Path(args.profile),
        endpoint=args.endpoint,
        out_dir=Path(args.out),
        host=args.host or args.endpoint_url,
        variant=args.variant,
        region=args.region,
        aws_profile=args.aws_profile,
        workers=args.workers,
        speed=args.speed,
        seed=args.seed,
        payload=Path(args.payload) if args.payload else None,
        content_type=args.content_type,
        payload_order=args.payload_order,
        max_inflight=args.max_inflight,
        request_timeout_s=args.request_timeout,
        period_s=args.period,
    )
    result = run_loadtest(config, progress=sys.stderr)
    s = result.summary
    cols = ["t_s", "profile_requests", "sent", "ok", "latency_p50_ms", "latency_p99_ms"]
    print(result.periods[cols].round(1).to_string(index=False))
    fails = ", ".join(f"{k} {v}" for k, v in s["failures"].items()) or "none"
    print(
        f"{s['profile']}: {s['sent']}/{s['scheduled']} sent, {s['ok']} ok, failures: {fails}; "
        f"p99 {s['latency_ms']['p99'] or float('nan'):.0f} ms; results in {result.out_dir}"
    )
    return 0
