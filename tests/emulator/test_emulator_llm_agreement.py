"""The simulator and the local AWS agree on an inference component's copies.

The real path: Locust's streaming client (``tuner.live.loadgen``, ``--stream`` with an inference
component) plays a bounded spike, open loop, against an IC on the local AWS at a high clock
speed; the policy is put through real boto3 calls (RegisterScalableTarget, PutScalingPolicy on
``inference-component/<ic>``, and for scale to zero the step policy and its CloudWatch alarm).
:func:`tuner.model.copies.simulate_copies` replays the same profile against the same policy with
the capacity a perfect calibration of the emulated copy would write
(:meth:`LlmServerSpec.capacity_doc`), the same metric lag and no boot jitter. Copies in service
and desired copies are compared per 10-s step: at least 90% of the steps must agree.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import local_aws_env, local_client
from tests.emulator.helpers import load_from_next_minute
from tuner.emulator import EmulatorConfig, LocalAws
from tuner.emulator.tokens import LlmServerSpec
from tuner.live.periods import start_epoch
from tuner.model.copies import simulate_copies
from tuner.model.llm_capacity import LlmCapacity
from tuner.model.settings import SimulationSettings
from tuner.policy import MetricType, Resource, ResourceKind, ScalingPolicy
from tuner.profiles.profile_file import load_profile
from tuner.profiles.tokens import TokenSpec
from tuner.tune.llm import from_zero_step

SPEED = 80.0
ENDPOINT = "agree-endpoint"
IC = "agree-ic"
LAG_S = 60.0
TOKENS = TokenSpec(prompt_tokens=64, output_tokens=16)
# A small, slow copy so a few requests per virtual second fill it: 16 tokens at 4 tokens/s
# (slower with more sequences), 8 sequences; a copy loads in 60 s, an instance boots in 60 s.
SPEC = LlmServerSpec(
    prefill_tokens_per_s=2000.0,
    decode_tokens_per_s=4.0,
    max_concurrent_sequences=8,
    copy_load_s=60.0,
    instance_boot_s=60.0,
    min_instances=1,
    max_instances=4,
)
TRACKING = ScalingPolicy(
    min_capacity=1,
    max_capacity=2,
    target_value=4.0,
    metric_type=MetricType.CONCURRENT_REQUESTS_PER_COPY,
    kind=ResourceKind.INFERENCE_COMPONENT,
    scale_out_cooldown_s=60,
    scale_in_cooldown_s=120,
    name="agree-copies",
)
SPIKE = """\
name = "llm-spike"
[[segment]]
hold = "5m"
rps = 0.3
[[segment]]
spike = "40m"
baseline_rps = 0.3
peak_rps = 1.6
rise = "1m"
hold = "12m"
fall = "1m"
"""

# Scale to zero: no instance kept; copies between 0 and 1 with AWS's step policy for scaling
# out of zero (+1 copy on a NoCapacityInvocationFailures alarm, as ``tuner tune`` proposes it);
# target tracking takes the copy back to zero once idle. The burst keeps its copy above the
# target (about 6 in flight), so the scale-in is timed by the burst's end on both sides.
ZERO_SPEC = dataclasses.replace(SPEC, min_instances=0)
TO_ZERO = TRACKING.replace(
    min_capacity=0, max_capacity=1, step_policies=(from_zero_step(),), name="agree-zero"
)
IDLE_BURST = """\
name = "llm-idle-burst"
[[segment]]
hold = "4m"
rps = 0
[[segment]]
hold = "12m"
rps = 0.8
[[segment]]
hold = "20m"
rps = 0
"""


def _apply(aws: LocalAws, policy: ScalingPolicy) -> None:
    """The policy through boto3, as a user would put it (the step policies with their alarms)."""
    aas, cw = local_client(aws, "application-autoscaling"), local_client(aws, "cloudwatch")
    resource = Resource.for_component(IC)
    aas.register_scalable_target(**policy.register_scalable_target_args(resource))
    if policy.tracks_target:
        aas.put_scaling_policy(**policy.put_scaling_policy_args(resource))
    for step in policy.step_policies:
        arn = aas.put_scaling_policy(**step.put_scaling_policy_args(resource))["PolicyARN"]
        cw.put_metric_alarm(**step.put_metric_alarm_args(resource, arn))


@dataclass(frozen=True)
class Agreement:
    share: float
    """Steps where copies in service and desired copies both agree."""
    in_service_share: float
    desired_share: float
    rows: list[tuple[int, int, int, int, int]]
    """(t_s, simulated in service, emulated in service, simulated desired, emulated desired)."""
    concurrency: list[tuple[int, float, float | None]]
    """(t_s, simulated ConcurrentRequestsPerCopy, the emulator's datapoint (Maximum) or None)."""


def _agreement(
    tmp_path: Path, policy: ScalingPolicy, profile_text: str, spec: LlmServerSpec, copies: int
) -> Agreement:
    profile_path = tmp_path / "profile.toml"
    profile_path.write_text(profile_text)
    profile = load_profile(profile_path)
    cfg = EmulatorConfig(
        port=0,
        speed=SPEED,
        endpoint=ENDPOINT,
        llm=spec,
        inference_component=IC,
        copies=copies,
        metric_lag_s=LAG_S,
    )
    with LocalAws(cfg) as aws:
        _apply(aws, policy)
        env = local_aws_env(aws, tmp_path)
        # 8 real seconds for Locust to start
        clock = aws.clock
        start_v, result = load_from_next_minute(
            aws,
            profile,
            env,
            tmp_path / "load",
            8,
            stream=True,
            inference_component=IC,
            tokens=TOKENS,
            request_timeout_s=90.0,
        )
        # Locust keeps to the planned start (no request leaves before it is due)
        started_v = clock.to_virtual(start_epoch(result.requests, SPEED))
        assert abs(started_v - start_v) < 0.5 * SPEED, (started_v, start_v)
        time.sleep(max(0.0, clock.to_real(start_v + profile.duration_s + 20) - time.time()))
        rows = np.array(aws.component_timeline(IC)["rows"], dtype=float)
        points = local_client(aws, "cloudwatch").get_metric_statistics(
            Namespace="AWS/SageMaker",
            MetricName="ConcurrentRequestsPerCopy",
            Dimensions=[{"Name": "InferenceComponentName", "Value": IC}],
            StartTime=clock.datetime_at(start_v),
            EndTime=clock.datetime_at(start_v + profile.duration_s),
            Period=10,
            Statistics=["Maximum"],
        )["Datapoints"]
    published = {p["Timestamp"].timestamp() - start_v: p["Maximum"] for p in points}
    assert len(result.requests) > 100, "the load test sent too few requests"
    capacity = LlmCapacity.from_dict(
        spec.capacity_doc(prompt_tokens=TOKENS.prompt_tokens, output_tokens=TOKENS.output_tokens)
    )
    settings = SimulationSettings(metric_lag_s=LAG_S, boot_jitter_s=0.0, seeds=(0,))
    sim = simulate_copies(profile, [policy], capacity, settings, initial_capacity=copies)
    timeline = sim.timeline(0)
    t = timeline["t_s"].to_numpy()
    # the emulator's row for the step [start_v + t, start_v + t + 10): the newest row at or
    # before its middle
    at = np.searchsorted(rows[:, 0], start_v + t + 5, side="right") - 1
    assert (at >= 0).all()
    em_n, em_d = rows[at, 1].astype(int), rows[at, 2].astype(int)
    sim_n = timeline["instances_in_service"].to_numpy()
    sim_d = timeline["desired_capacity"].to_numpy()
    both = (em_n == sim_n) & (em_d == sim_d)
    table = [
        (int(a), int(b), int(c), int(d), int(e))
        for a, b, c, d, e in zip(t, sim_n, em_n, sim_d, em_d, strict=True)
    ]
    conc = [
        (int(a), round(float(b), 2), published.get(float(a)))
        for a, b in zip(t, timeline["concurrency_per_copy"], strict=True)
    ]
    return Agreement(
        float(both.mean()),
        float((em_n == sim_n).mean()),
        float((em_d == sim_d).mean()),
        table,
        conc,
    )


def _report(name: str, a: Agreement) -> str:
    bad = [r for r in a.rows if r[1] != r[2] or r[3] != r[4]]
    line = (
        f"{name}: {a.share:.1%} of {len(a.rows)} 10-s steps agree "
        f"(in service {a.in_service_share:.1%}, desired {a.desired_share:.1%}); "
        f"first disagreements (t, sim n, emu n, sim d, emu d): "
        f"{bad[:12]}"
    )
    changes = [r for i, r in enumerate(a.rows) if i == 0 or r[1:] != a.rows[i - 1][1:]]
    print(line)
    print(f"{name}: concurrency per copy (t, sim, emu): {a.concurrency}")
    print(f"{name}: every change (t, sim n, emu n, sim d, emu d): {changes}")
    return line


def test_target_tracking_on_the_high_resolution_metric_agrees(tmp_path: Path) -> None:
    a = _agreement(tmp_path, TRACKING, SPIKE, SPEC, copies=1)
    line = _report("target tracking", a)
    # the spike scales out and back: both sides leave Min 1 and return to it
    sims = [r[1] for r in a.rows]
    assert max(sims) >= 2 and sims[-1] == 1, line
    assert a.share >= 0.9, line


@pytest.mark.slow  # ~40 s; `make bench` runs it (agreement 100% of 216 steps when added)
def test_scale_to_zero_and_back_agrees(tmp_path: Path) -> None:
    a = _agreement(tmp_path, TO_ZERO, IDLE_BURST, ZERO_SPEC, copies=0)
    line = _report("scale to zero", a)
    # both start at zero, the burst's refused requests bring one copy, idle takes it away
    sims = [r[1] for r in a.rows]
    assert sims[0] == 0 and max(sims) == 1 and sims[-1] == 0, line
    # no copy, no per-copy datapoint: the local AWS publishes ConcurrentRequestsPerCopy only for
    # the steps with a copy in service (the model's NaN)
    pairs = [(r[0], r[2], c[2]) for r, c in zip(a.rows, a.concurrency, strict=True)]
    assert all((value is None) == (n == 0) for _, n, value in pairs), pairs
    assert a.share >= 0.9, line
