"""The autoscaler: every 10 virtual seconds it reads the scalable target and the policies from the
control plane and steps the same :class:`tuner.model.controller.TargetTracking` the simulator uses.

The controller runs with 10-s steps (it sums 60-s datapoints itself), so boots and decisions land
on a 10-s grid of virtual time. Things the controller has no notion of are expressed through its
public ``set_policies`` (the effective range), never by a second model:
- no policy yet: a placeholder policy that can never fire (huge target, scale-in disabled), so the
  registered range still applies and capacity holds otherwise;
- SuspendedState: DynamicScalingOutSuspended caps MaxCapacity at the current desired count,
  DynamicScalingInSuspended raises MinCapacity to it;
- UpdateEndpointWeightsAndCapacities: a momentary range [n, n] (instances boot like a range change,
  no cooldown), then the registered range again; it is not a scaling activity.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from tuner.clock import VirtualClock
from tuner.emulator.activities import ActivityLog
from tuner.emulator.control import MotoPlane
from tuner.emulator.endpoint import EmulatedEndpoint
from tuner.emulator.metrics import (
    BUCKET_S,
    MINUTE_S,
    NAMESPACE,
    concurrency_datum,
    minute_datums,
)
from tuner.errors import TunerError, ValidationError
from tuner.model.capacity import Capacity
from tuner.model.controller import ScalingCause, ScalingEvent, TargetTracking
from tuner.model.settings import SimulationSettings
from tuner.policy import MetricType, Resource, ScalingPolicy

STEP_S = BUCKET_S
_PLACEHOLDER_TARGET = 1e300
# Real seconds to wait past a boundary so requests stamped just before it are counted.
_GRACE_S = 0.01
# Steps kept in the timeline: 11.5 virtual days of 10-s steps.
_MAX_HISTORY = 100_000


@dataclass(frozen=True)
class EndpointView:
    """What DescribeEndpoint shows: status and instance counts, as the emulator has them."""

    status: str
    current: int
    desired: int


class Autoscaler:
    """Reads the control plane, steps the controller, drives the endpoint, publishes metrics."""

    def __init__(
        self,
        plane: MotoPlane,
        endpoint: EmulatedEndpoint,
        loop: asyncio.AbstractEventLoop,
        clock: VirtualClock,
        *,
        instances: int,
        capacity: Capacity,
        settings: SimulationSettings,
        log: Callable[[str], None] = lambda line: None,
    ) -> None:
        self.plane = plane
        self.endpoint = endpoint
        self.resource = Resource.for_variant(endpoint.name, endpoint.variant)
        self.clock = clock
        self.activities = ActivityLog(self.resource.resource_id, self.resource.scalable_dimension)
        self._loop = loop
        self._log = log
        self._lock = threading.RLock()
        self._epoch_v = clock.v0
        self._k = -1
        self._registered: tuple[int, int] | None = None
        self._suspended = (False, False)
        self._base: list[ScalingPolicy] = []
        self._skipped: set[str] = set()
        self._effective: list[ScalingPolicy] | None = None
        self._step_in_service = instances
        """Instances in service during the step being measured (N of InvocationsPerInstance)."""
        self._completion_at_v = -1.0
        self.history: list[tuple[float, int, int, int]] = []
        """Per step: (start virtual s, instances in service, desired, invocations of the step
        before it); a row's counts hold for the step that starts at its time."""
        self.tt = TargetTracking(
            [self._placeholder(instances, instances)],
            choices=settings.model_choices(capacity),
            initial_capacity=instances,
            step_s=STEP_S,
        )
        self._effective = [self._placeholder(instances, instances)]

    # -- state for the API ---------------------------------------------------------------------

    def view(self) -> EndpointView:
        with self._lock:
            tt = self.tt
            status = "Updating" if bool(tt.updating[0]) else "InService"
            return EndpointView(status, int(tt.in_service[0]), int(tt.desired[0]))

    def set_desired_by_hand(self, n: int) -> None:
        """UpdateEndpointWeightsAndCapacities: boot to n (or remove at once), Updating meanwhile."""
        with self._lock:
            if bool(self.tt.updating[0]):
                raise ValidationError(
                    f"Cannot update in-progress endpoint "
                    f'"arn:aws:sagemaker:{self.plane.region}:123456789012:endpoint/'
                    f'{self.endpoint.name}".'
                )
            # The same policies (alarm history kept) with a momentary range [n, n].
            pinned = [p.replace(min_capacity=n, max_capacity=n) for p in self._effective or []]
            self.tt.set_policies([pinned or [self._placeholder(n, n)]])
            self._effective = None
            self._apply(self._effective_policies(), record=False)
            self._push_in_service()
            self._schedule_completion()

    def refresh(self) -> None:
        """Re-read target and policies now (after RegisterScalableTarget, PutScalingPolicy...)."""
        target = self.plane.scalable_target(
            self.resource.resource_id, self.resource.scalable_dimension
        )
        policies = self.plane.scaling_policies(
            self.resource.resource_id, self.resource.scalable_dimension
        )
        with self._lock:
            self._read(target, policies)
            self._apply(self._effective_policies(), record=True)
            self._push_in_service()
            self._schedule_completion()

    # -- the loop ------------------------------------------------------------------------------

    def run(self, stop: threading.Event) -> None:
        """Thread body: one step per 10 virtual seconds until ``stop`` is set."""
        boundary = self._epoch_v + STEP_S
        while not stop.is_set():
            if not self.clock.wait_until(boundary + _GRACE_S * self.clock.speed, stop):
                return
            try:
                self._tick(boundary)
            except TunerError as e:  # keep serving; say what went wrong
                self._log(f"autoscaler: {e}")
            except Exception as e:  # a bug must not silently stop all scaling
                self._log(f"autoscaler: step at {boundary:.0f} failed: {e!r}")
            boundary += STEP_S

    def _tick(self, boundary_v: float) -> None:
        ep = self.endpoint
        bucket = ep.metrics.at(boundary_v - STEP_S)
        bucket.per_instance = bucket.invocations / max(1, self._step_in_service)
        step = ep.metrics.summary(boundary_v - STEP_S, STEP_S, self._inflight_per_instance())
        try:
            target = self.plane.scalable_target(
                self.resource.resource_id, self.resource.scalable_dimension
            )
            policies = self.plane.scaling_policies(
                self.resource.resource_id, self.resource.scalable_dimension
            )
        except TunerError as e:
            self._log(f"autoscaler: cannot read the control plane: {e}")
            target, policies = None, None
        with self._lock:
            if policies is not None:
                self._read(target, policies)
                self._apply(self._effective_policies(), record=True)
            self._k += 1
            result = self.tt.step(
                self._k,
                invocations_per_instance=step.invocations_per_instance,
                concurrency=step.concurrent_per_model,
            )
            self._record(result.events)
            self._step_in_service = int(self.tt.in_service[0])
            if len(self.history) < _MAX_HISTORY:
                self.history.append(
                    (boundary_v, self._step_in_service, int(self.tt.desired[0]), step.invocations)
                )
            self._push_in_service()
            self._schedule_completion()
        self._publish(boundary_v, step)

    def _publish(self, boundary_v: float, step: Any) -> None:
        ep = self.endpoint
        when = self.clock.datetime_at(boundary_v - STEP_S)
        datums = [concurrency_datum(step, when, ep.name, ep.variant)]
        if (boundary_v - self.clock.v0) % MINUTE_S == 0:
            minute = ep.metrics.summary(boundary_v - MINUTE_S, MINUTE_S)
            datums += minute_datums(
                minute, self.clock.datetime_at(boundary_v - MINUTE_S), ep.name, ep.variant
            )
            ep.metrics.forget_before(boundary_v)
        self.plane.put_metric_data(NAMESPACE, datums)

    def _inflight_per_instance(self) -> float:
        ep = self.endpoint
        return ep.inflight / max(1, ep.in_service)

    # -- control plane -> effective policies ---------------------------------------------------

    def _read(self, target: dict[str, Any] | None, policies: list[dict[str, Any]]) -> None:
        if target is None:
            self._registered = None
            self._suspended = (False, False)
            self._base = []
            return
        lo, hi = int(target["MinCapacity"]), int(target["MaxCapacity"])
        self._registered = (lo, hi)
        sus = target.get("SuspendedState") or {}
        self._suspended = (
            bool(sus.get("DynamicScalingOutSuspended")),
            bool(sus.get("DynamicScalingInSuspended")),
        )
        base = []
        for p in policies:
            name = p.get("PolicyName", "?")
            if p.get("PolicyType") != "TargetTrackingScaling":
                self._skip(name, f"policy {name}: {p.get('PolicyType')} is not emulated; ignored")
                continue
            try:
                sp = ScalingPolicy.from_aws(target, p)
                if sp.metric_type not in (
                    MetricType.INVOCATIONS_PER_INSTANCE,
                    MetricType.CONCURRENT_REQUESTS_PER_MODEL,
                ):
                    raise ValidationError(f"metric {sp.metric_type} is not emulated")
            except TunerError as e:
                self._skip(name, f"policy {name} ignored: {e}")
                continue
            base.append(sp)
        self._base = base

    def _skip(self, name: str, message: str) -> None:
        if name not in self._skipped:
            self._skipped.add(name)
            self._log(f"autoscaler: {message}")

    def _effective_policies(self) -> list[ScalingPolicy]:
        d = int(self.tt.desired[0])
        lo, hi = self._registered if self._registered is not None else (d, d)
        out_suspended, in_suspended = self._suspended
        if out_suspended:
            hi = max(lo, min(hi, d))
        if in_suspended:
            lo = min(hi, max(lo, d))
        if not self._base:
            return [self._placeholder(lo, hi)]
        return [p.replace(min_capacity=lo, max_capacity=hi) for p in self._base]

    def _apply(self, policies: list[ScalingPolicy], *, record: bool) -> None:
        if policies == self._effective:
            return
        events = self.tt.set_policies([policies])
        self._effective = policies
        if record:
            self._record(events)

    def _record(self, events: tuple[ScalingEvent, ...] | list[ScalingEvent]) -> None:
        for ev in events:
            start_v = self._epoch_v + ev.t_s
            end_v = self._epoch_v + ev.completes_at_s
            if ev.cause is ScalingCause.REGISTERED:
                lo, hi = self._registered or (ev.to_capacity, ev.to_capacity)
                cause = f"scalable target range set to {lo}..{hi}"
            else:
                alarm = (
                    f"TargetTracking-{self.resource.resource_id}-{ev.cause.value}"
                    if ev.cause in (ScalingCause.ALARM_HIGH, ScalingCause.ALARM_LOW)
                    else ev.cause.value
                )
                cause = f"monitor alarm {alarm} in state ALARM triggered policy {ev.policy}"
            self.activities.add(ev.description, cause, start_v, end_v, ev.to_capacity)
            self._log(
                f"scaling activity: {ev.kind.value} {ev.from_capacity} -> {ev.to_capacity} "
                f"({cause})"
            )

    def _push_in_service(self) -> None:
        n = int(self.tt.in_service[0])
        if n != self.endpoint.in_service:
            self._loop.call_soon_threadsafe(self.endpoint.set_in_service, n)

    def _schedule_completion(self) -> None:
        """Bring booted instances into service at their exact virtual time, not a tick later."""
        if not bool(self.tt.updating[0]):
            return
        at_v = self._epoch_v + float(self.tt.complete_at[0])
        if at_v == self._completion_at_v:
            return
        self._completion_at_v = at_v
        delay_s = max(0.0, self.clock.to_real(at_v) - self.clock.real_time())
        self._loop.call_soon_threadsafe(
            self._loop.call_later, delay_s, self._complete_on_loop, at_v
        )

    def _complete_on_loop(self, at_v: float) -> None:
        with self._lock:
            tt = self.tt
            due = bool(tt.updating[0]) and self._epoch_v + float(tt.complete_at[0]) == at_v
            n = int(tt.desired[0])
        if due:
            self.endpoint.set_in_service(n)

    @staticmethod
    def _placeholder(lo: int, hi: int) -> ScalingPolicy:
        return ScalingPolicy(
            min_capacity=lo,
            max_capacity=hi,
            target_value=_PLACEHOLDER_TARGET,
            disable_scale_in=True,
            name="(no policy)",
        )
