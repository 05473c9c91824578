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

LLM mode (--inference-component NAME): the endpoint also hosts an inference component whose
copies stream tokens (InvokeEndpointWithResponseStream, the vnd.amazon.eventstream framing) paced
by a token service model (--llm-spec: prefill and decode tokens/s, concurrent sequences per copy,
copy load and instance boot times, managed instance scaling); its copies scale with Application
Auto Scaling on inference-component/NAME, to and from zero, and it publishes
ConcurrentRequestsPerCopy, InvocationsPerCopy and NoCapacityInvocationFailures.

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
  # LLM mode: an inference component with 1 copy serving an 8B model on ml.g6.2xlarge
  tuner emulate --speed 20 --inference-component llm --copies 1 --llm-spec llm.json
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
        "--virtual-start",
        metavar="ISO",
        help="virtual time at start, a whole minute such as 2024-01-01T07:58:00Z (default: now); "
        "scheduled actions run at their virtual time",
    )
    p.add_argument(
        "--inference-component",
        metavar="NAME",
        help="LLM mode: an inference component of this name on the endpoint, streaming tokens",
    )
    p.add_argument(
        "--copies",
        type=int,
        default=1,
        help="copies of --inference-component in service at start; 0: scaled to zero (default: 1)",
    )
    p.add_argument(
        "--llm-spec",
        metavar="llm.json",
        help="JSON of LlmServerSpec fields (prefill_tokens_per_s, decode_tokens_per_s, "
        "max_concurrent_sequences, copies_per_instance, copy_load_s, instance_boot_s, "
        "min_instances, max_instances, ...); default: an 8B model on ml.g6.2xlarge",
    )
    p.add_argument(
        "--progress-s",
        type=float,
        default=5.0,
        help="real seconds between progress lines on stderr; 0 for none (default: 5)",
    )
    return p


def run(args: argparse.Namespace) -> int:
    from tuner.emulator import EmulatorConfig, LlmServerSpec, LocalAws
    from tuner.model.capacity import Capacity

    capacity = Capacity.load(args.capacity) if args.capacity else Capacity.default()
    llm = LlmServerSpec.load(args.llm_spec) if args.llm_spec else LlmServerSpec()
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
        virtual_start_s=_virtual_start(args.virtual_start),
        llm=llm,
        inference_component=args.inference_component,
        copies=args.copies,
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


def _virtual_start(text: str | None) -> float | None:
    from tuner.errors import ValidationError

    if text is None:
        return None
    try:
        moment = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise ValidationError(
            f"--virtual-start must be an ISO-8601 time such as 2024-01-01T07:58:00Z, got {text!r}"
        ) from None
    moment = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    return moment.timestamp()


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
    if cfg.inference_component is not None:
        llm = cfg.llm
        print(
            f"# inference component: {cfg.inference_component}: {cfg.copies} copies, "
            f"{llm.max_concurrent_sequences} sequences each, prefill "
            f"{llm.prefill_tokens_per_s:g} and decode {llm.decode_tokens_per_s:g} tokens/s, "
            f"copy load {llm.copy_load_s:g} s, instances {llm.min_instances}..{llm.max_instances}"
            f" x {llm.instance_type} ({llm.copies_per_instance} copies each, boot "
            f"{llm.instance_boot_s:g} s)"
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
        for name, c in s["inference_components"].get("components", {}).items():
            _err(
                f"  {name}: {c['status']}, {c['copies_in_service']} copies / "
                f"{c['desired_copies']} desired, {c['active_sequences']} sequences, "
                f"{c['queued']} queued, {c['no_capacity_failures_total']} no-capacity failures"
            )
