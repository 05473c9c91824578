"""``tuner emulate``: a local AWS on 127.0.0.1 (SageMaker runtime, autoscaling, CloudWatch)."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from datetime import UTC, datetime
from typing import Any

DESCRIPTION = """\
Start a local AWS on 127.0.0.1 for this toolkit, with no account: one HTTP endpoint that serves
SageMaker InvokeEndpoint from an emulated endpoint (instances with concurrent slots and the
latency curve of --capacity; overload queues, then fails as SageMaker does), answers
application-autoscaling, cloudwatch and sagemaker calls with moto, and runs an autoscaler that
enforces the registered target-tracking policy with the simulator's controller (new instances
serve after boot_s; the endpoint shows Updating meanwhile). AWS/SageMaker metrics are published
every 60 s (ConcurrentRequestsPerModel every 10 s) with virtual timestamps.

A virtual clock runs --speed times real time: profile times, metric periods, cooldowns and boot
delays are virtual. Clients read it at GET <url>/_tuner/clock. Stop with Ctrl-C or SIGTERM.
"""

EPILOG = """\
example:
  tuner emulate --port 8765 --speed 20 --endpoint demo-endpoint --capacity capacity.json
  # in another shell, with the lines it prints exported:
  export AWS_ENDPOINT_URL=http://127.0.0.1:8765 AWS_ACCESS_KEY_ID=testing \\
         AWS_SECRET_ACCESS_KEY=testing AWS_DEFAULT_REGION=us-east-1
  aws sagemaker describe-endpoint --endpoint-name demo-endpoint
  tuner apply my.policy.json --endpoint demo-endpoint
"""


def register(subparsers: Any) -> argparse.ArgumentParser:
    p: argparse.ArgumentParser = subparsers.add_parser(
        "emulate",
        help="run a local AWS (endpoint, autoscaling, CloudWatch) on 127.0.0.1",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--port",
        type=int,
        default=8765,
        help="TCP port on 127.0.0.1; 0 picks a free one (default: 8765)",
    )
    p.add_argument(
        "--speed", type=float, default=1.0, help="virtual seconds per real second (default: 1)"
    )
    p.add_argument(
        "--endpoint", default="demo-endpoint", help="endpoint name (default: demo-endpoint)"
    )
    p.add_argument(
        "--variant", default="AllTraffic", help="production variant (default: AllTraffic)"
    )
    p.add_argument(
        "--capacity",
        metavar="capacity.json",
        help="what one instance sustains (tuner calibrate writes it; default: 20 rps, 5-min boot)",
    )
    p.add_argument(
        "--instances", type=int, default=1, help="instances in service at start (default: 1)"
    )
    p.add_argument(
        "--region", default="us-east-1", help="region of the local AWS (default: us-east-1)"
    )
    p.add_argument(
        "--metric-lag-s",
        type=float,
        default=60.0,
        help="delay before a datapoint reaches the alarms, virtual s "
        "(default: 60, as tuner simulate)",
    )
    p.add_argument(
        "--seed", type=int, default=0, help="seed of the service-time draws (default: 0)"
    )
    p.add_argument(
        "--progress-s",
        type=float,
        default=5.0,
        help="real seconds between progress lines on stderr; 0 for none (default: 5)",
    )
    return p


def run(args: argparse.Namespace) -> int:
    from tuner.emulator import EmulatorConfig, LocalAws
    from tuner.model.capacity import Capacity

    capacity = Capacity.load(args.capacity) if args.capacity else Capacity.default()
    config = EmulatorConfig(
        port=args.port,
        speed=args.speed,
        endpoint=args.endpoint,
        variant=args.variant,
        capacity=capacity,
        instances=args.instances,
        region=args.region,
        metric_lag_s=args.metric_lag_s,
        seed=args.seed,
    )
    stop = threading.Event()

    def on_signal(signum: int, frame: Any) -> None:
        stop.set()

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        with LocalAws(config, log=_err) as aws:
            _banner(aws)
            _progress_loop(aws, stop, args.progress_s)
            _err("stopping")
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
    _err("stopped")
    return 0


def _err(line: str) -> None:
    print(f"tuner emulate: {line}", file=sys.stderr, flush=True)


def _iso(epoch_s: float) -> str:
    return datetime.fromtimestamp(epoch_s, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _banner(aws: Any) -> None:
    for key, value in aws.env.items():
        print(f"{key}={value}")
    clock = aws.clock
    model = aws.endpoint.model
    cfg = aws.config
    print(
        f"# clock: speed={clock.speed:g} virtual_epoch={_iso(clock.v0)} ({clock.v0:.0f}) "
        f"real_epoch={clock.real_epoch_s:.3f}; GET {aws.url}/_tuner/clock"
    )
    print(
        f"# endpoint: {cfg.endpoint} variant {cfg.variant}: {cfg.instances} x "
        f"{cfg.capacity.instance_type}, {model.slots} slots and "
        f"{model.max_rps:g} rps each, boot {model.boot_s:g} s, timeout {model.timeout_ms:g} ms"
    )
    print("# stop with Ctrl-C or SIGTERM", flush=True)


def _progress_loop(aws: Any, stop: threading.Event, every_s: float) -> None:
    last_v, last_n = aws.clock.now(), 0
    while not stop.wait(every_s if every_s > 0 else 3600):
        s = aws.status()
        now_v = s["virtual_now_s"]
        rate = (s["invocations_total"] - last_n) / max(1e-9, now_v - last_v)
        last_v, last_n = now_v, s["invocations_total"]
        _err(
            f"virtual {_iso(now_v)} (+{s['virtual_elapsed_s']:.0f} s): {s['endpoint_status']}, "
            f"{s['instances_in_service']} in service / {s['desired_instances']} desired, "
            f"{rate:.1f} rps, {s['queued']} queued, {s['scaling_activities']} activities"
        )
