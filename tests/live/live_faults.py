"""Helpers of the live-safety tests: the original configuration, its exact state, fault injection.

Also a driver (``python -m tests.live.live_faults URL RUN_ROOT PROFILE POLICY``) for the kill -9
cases: it imports everything once, then for each number K read on stdin forks a child that runs
a trial and SIGKILLs itself just before its K-th mutating AWS call; it prints one JSON line per
child. The forking process runs no threads, so the fork is safe; each child is a real process
killed by a real kill -9.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import boto3
import pandas as pd
from botocore.exceptions import ClientError

from tuner.aws import AutoScaling, AwsSession
from tuner.policy.policy import ScalingPolicy
from tuner.policy.resource import Resource
from tuner.policy.tracking import MetricType
from tuner.profiles import Profile, load_profile
from tuner.records import REQUEST_COLUMNS

ENDPOINT = "safety-endpoint"
RESOURCE = Resource.for_variant(ENDPOINT)
MUTATING = frozenset(
    {
        "AddTags",
        "DeleteTags",
        "UpdateEndpointWeightsAndCapacities",
        "RegisterScalableTarget",
        "DeregisterScalableTarget",
        "PutScalingPolicy",
        "DeleteScalingPolicy",
        "PutScheduledAction",
        "DeleteScheduledAction",
    }
)
ORIGINAL = ScalingPolicy(min_capacity=1, max_capacity=3, target_value=500.0, name="original")
CONCURRENCY = ScalingPolicy(
    min_capacity=1,
    max_capacity=3,
    target_value=4.0,
    metric_type=MetricType.CONCURRENT_REQUESTS_PER_MODEL,
    name="concurrency",
)
# Scale-in disabled: the trial's starting count (2) stays, so the count must be put back.
# On the high-resolution metric: its 10-s periods keep a trial on the local AWS short.
CANDIDATE = ScalingPolicy(
    min_capacity=1,
    max_capacity=6,
    target_value=3.0,
    metric_type=MetricType.CONCURRENT_REQUESTS_PER_MODEL,
    scale_out_cooldown_s=60,
    disable_scale_in=True,
)


def set_up_original(url: str, endpoint: str = ENDPOINT) -> None:
    """Min 1 / Max 3, two policies (one high-resolution), a scheduled action, scale-in suspended."""
    resource = Resource.for_variant(endpoint)
    aas = boto3.client("application-autoscaling", endpoint_url=url)
    scaling = AutoScaling(aas)
    scaling.apply(ORIGINAL, resource)
    scaling.apply(CONCURRENCY, resource)
    base = {
        "ServiceNamespace": "sagemaker",
        "ResourceId": resource.resource_id,
        "ScalableDimension": resource.scalable_dimension,
    }
    aas.put_scheduled_action(
        **base,
        ScheduledActionName="nightly",
        Schedule="cron(0 22 * * ? *)",
        ScalableTargetAction={"MinCapacity": 1, "MaxCapacity": 2},
    )
    aas.register_scalable_target(
        **base,
        SuspendedState={
            "DynamicScalingInSuspended": True,
            "DynamicScalingOutSuspended": False,
            "ScheduledScalingSuspended": False,
        },
    )


def exact_state(url: str, endpoint: str = ENDPOINT) -> dict[str, Any]:
    """What must come back exactly: target, suspension, policies, actions, instances, tags."""
    resource = Resource.for_variant(endpoint)
    scaling = AutoScaling(boto3.client("application-autoscaling", endpoint_url=url))
    sm = boto3.client("sagemaker", endpoint_url=url)
    target = scaling.describe_target(resource) or {}
    suspended = target.get("SuspendedState") or {}
    described = sm.describe_endpoint(EndpointName=endpoint)
    variant = described["ProductionVariants"][0]
    tags = sm.list_tags(ResourceArn=described["EndpointArn"])["Tags"]
    return {
        "range": (target.get("MinCapacity"), target.get("MaxCapacity")),
        "suspended": {
            k: bool(suspended.get(k, False))
            for k in (
                "DynamicScalingInSuspended",
                "DynamicScalingOutSuspended",
                "ScheduledScalingSuspended",
            )
        },
        "policies": sorted(
            json.dumps(
                {
                    k: p.get(k)
                    for k in (
                        "PolicyName",
                        "PolicyType",
                        "TargetTrackingScalingPolicyConfiguration",
                    )
                },
                sort_keys=True,
            )
            for p in scaling.describe_policies(resource)
        ),
        "actions": sorted(
            json.dumps(
                {k: a.get(k) for k in ("ScheduledActionName", "Schedule", "ScalableTargetAction")},
                sort_keys=True,
            )
            for a in scaling.describe_scheduled_actions(resource)
        ),
        "desired": variant["DesiredInstanceCount"],
        "current": variant["CurrentInstanceCount"],
        "tags": sorted((t["Key"], t["Value"]) for t in tags),
    }


class FaultInjector:
    """Counts mutating AWS calls of the clients AwsSession makes; acts on the K-th (when armed).

    The action runs just before the call would be sent (raise to fail it, or kill the process).
    Clients are made once per service and URL while installed: making a boto3 client costs a
    few hundred milliseconds, and these tests run dozens of trials.
    """

    def __init__(self) -> None:
        self.at: int | None = None
        self.action: Callable[[str], None] = throttle
        self.calls: list[str] = []
        self.from_then_on = False
        self._clients: dict[tuple[str | None, str], Any] = {}

    def arm(
        self,
        at: int | None,
        action: Callable[[str], None] | None = None,
        *,
        from_then_on: bool = False,
    ) -> None:
        """Act on the ``at``-th mutating call from now, or on every one from it (None: count)."""
        self.at, self.calls, self.from_then_on = at, [], from_then_on
        self.action = action or throttle

    def _before_call(self, model: Any, **kwargs: Any) -> None:
        if model.name in MUTATING:
            self.calls.append(model.name)
            n = len(self.calls)
            if self.at is not None and (n == self.at or (self.from_then_on and n > self.at)):
                self.action(model.name)

    @contextmanager
    def installed(self) -> Iterator[FaultInjector]:
        original = AwsSession.client
        if getattr(original, "injector", None) is not None:
            raise RuntimeError("a FaultInjector is installed already")

        def client(session: AwsSession, service: str, **kwargs: Any) -> Any:
            key = (session.endpoint_url, service)
            if kwargs or key not in self._clients:
                made = original(session, service, **kwargs)
                made.meta.events.register("before-call", self._before_call)
                if kwargs:
                    return made
                self._clients[key] = made
            return self._clients[key]

        client.injector = self  # type: ignore[attr-defined]
        AwsSession.client = client  # type: ignore[method-assign,assignment]
        try:
            yield self
        finally:
            AwsSession.client = original  # type: ignore[method-assign]


def settled_state(url: str, endpoint: str = ENDPOINT, timeout_s: float = 30.0) -> dict[str, Any]:
    """The exact state once the endpoint is InService (a restored count may still be booting)."""
    sm = boto3.client("sagemaker", endpoint_url=url)
    deadline = time.monotonic() + timeout_s
    while sm.describe_endpoint(EndpointName=endpoint)["EndpointStatus"] != "InService":
        assert time.monotonic() < deadline, "endpoint stuck Updating"
        time.sleep(0.05)
    return exact_state(url, endpoint)


def children_of(pid: int) -> list[int]:
    """Live processes whose parent is ``pid`` (Linux /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            fields = stat.rsplit(")", 1)[1].split()
            if int(fields[1]) == pid and fields[0] != "Z":
                found.append(int(entry.name))
    return found


def alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def throttle(operation: str) -> None:
    raise ClientError(
        {"Error": {"Code": "ThrottlingException", "Message": "Rate exceeded (injected)"}},
        operation,
    )


def kill_self(operation: str) -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def no_load(profile: Profile, **kwargs: Any) -> pd.DataFrame:
    """A load driver that sends nothing (the fault tests are about what is changed and put back)."""
    return pd.DataFrame({c: [] for c in REQUEST_COLUMNS})


def _serve() -> None:
    from tuner.live import safety
    from tuner.live.trial import TrialSpec

    url, root, profile, policy = sys.argv[1:5]
    safety.LOCK_SETTLE_S = 0.05
    spec = TrialSpec(
        endpoint=ENDPOINT,
        policy=ScalingPolicy.load(policy),
        profile=load_profile(profile),
        start_capacity=2,
        settle_s=0.0,
        lead_real_s=0.05,
    )
    injector = FaultInjector()
    with injector.installed():
        session = AwsSession(endpoint_url=url)
        for service in ("sagemaker", "application-autoscaling", "cloudwatch"):
            session.client(service)  # made once here, inherited by every child
        print("ready", flush=True)
        for line in sys.stdin:
            _child(int(line), injector, spec, url, root)


def _child(k: int, injector: FaultInjector, spec: Any, url: str, root: str) -> None:
    from tuner.live.trial import run_trial

    pid = os.fork()
    if pid == 0:
        code = 0
        try:
            injector.arm(k, kill_self)
            run_trial(
                spec,
                Path(root) / f"kill-{k}",
                AwsSession(endpoint_url=url),
                driver=no_load,
                log=lambda m: None,
            )
        except BaseException:
            code = 1
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    killed = os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL
    doc = {"k": k, "killed": killed, "at": dt.datetime.now(dt.UTC).isoformat()}
    print(json.dumps(doc), flush=True)


if __name__ == "__main__":
    _serve()
