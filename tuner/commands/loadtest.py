"""tuner loadtest: play a traffic profile against an endpoint, open loop, with Locust."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from tuner.commands._common import add_aws_options, resolve_profile

EPILOG = """\
examples:
  tuner loadtest --profile flash-spike --endpoint my-ep --out runs/spike
  tuner loadtest --profile launch-day --endpoint demo-endpoint \\
      --host http://127.0.0.1:8765 --speed 20 --workers 2 --out runs/launch
  # the master here, two workers on other hosts (each runs the command the master prints):
  tuner loadtest --profile launch-day --endpoint my-ep --workers 2 --master-only \\
      --master-bind-host 10.0.0.5 --master-port 5557 --out runs/launch
  locust -f locustfiles/sagemaker_endpoint.py --worker --master-host 10.0.0.5 --master-port 5557

Requests leave on the profile's schedule whatever the endpoint's latency (open loop), signed with
SigV4 from the standard credential chain. --speed S plays the profile S times faster (for the
local emulator's virtual clock): per-minute counts stay those of the profile.

Workers need only the locustfile and the tuner package: the master sends them the profile's
content and their share of the schedule, agrees the start time with each worker's clock offset
measured, and receives every request record back (summary.json lists each worker's offset).

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
    p.add_argument(
        "--profile", required=True, help="traffic profile TOML, replay CSV or ready profile name"
    )
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
    g = p.add_argument_group("workers on other hosts")
    g.add_argument(
        "--master-only",
        action="store_true",
        help="start only the master and wait for --workers workers started elsewhere",
    )
    g.add_argument(
        "--master-bind-host",
        default="127.0.0.1",
        help="address the master listens on for workers (default: 127.0.0.1, loopback only)",
    )
    g.add_argument("--master-port", type=int, help="the master's port (default: a free one)")
    g.add_argument(
        "--workers-wait",
        type=float,
        default=60.0,
        metavar="S",
        help="seconds the master waits for its workers to connect (default: 60)",
    )
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
    from tuner.live.trial import discover_clock

    profile, _ = resolve_profile(args.profile)  # a TOML or a replay CSV, read once
    config = LoadTestConfig(
        profile=profile,
        endpoint=args.endpoint,
        out_dir=Path(args.out),
        host=args.host or args.endpoint_url,
        variant=args.variant,
        region=args.region,
        aws_profile=args.aws_profile,
        workers=args.workers,
        external_workers=args.master_only,
        master_bind_host=args.master_bind_host,
        master_port=args.master_port,
        workers_wait_s=args.workers_wait,
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
    # One time base: against the local AWS (its clock answers at the host) latencies are virtual
    # milliseconds, as calibrate, trial and the report give them; Locust measured real ones.
    clock = discover_clock(config.host or os.environ.get("AWS_ENDPOINT_URL"))
    scale, unit = (clock.speed, "virtual ms") if clock.speed != 1.0 else (1.0, "ms")
    p99 = (s["latency_ms"]["p99"] or float("nan")) * scale
    fails = ", ".join(f"{k} {v}" for k, v in s["failures"].items()) or "none"
    print(
        f"{s['profile']}: {s['sent']}/{s['scheduled']} sent, {s['ok']} ok, failures: {fails}; "
        f"p99 {p99:.0f} {unit}"
    )
    for w in s.get("workers", []):
        late_ms = w["late_s"] * 1000
        start = f"{late_ms:.0f} ms late" if late_ms > 0 else f"ready {-late_ms:.0f} ms early"
        print(
            f"  worker {w['index']}: clock offset {w['offset_s'] * 1000:+.1f} ms from the master "
            f"(round trip {w['rtt_s'] * 1000:.1f} ms), {start}"
        )
    print(f"per-period table: {result.out_dir / 'periods.csv'}; details: summary.json")
    return 0
