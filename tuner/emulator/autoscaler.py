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
  no cooldown), then the registered range again; it is not a scaling activity;
- step-scaling policies: each with the CloudWatch metric alarm whose AlarmActions name it (read
  from the control plane's CloudWatch), handed to the controller, which evaluates the alarm on
  the same datapoints this loop publishes; a step policy no alarm acts on never acts (as on AWS).
- scheduled actions (PutScheduledAction, stored by moto): each step the ones whose cron/at/rate
  expression runs in (boundary - 10 s, boundary] of virtual time, in their Timezone, set the
  registered MinCapacity/MaxCapacity (RegisterScalableTarget, as AWS changes the target) and the
  capacity moves into the new range at that boundary, as a scaling activity naming the action;
  ``SuspendedState.ScheduledScalingSuspended`` stops them.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from tuner.clock import VirtualClock
from tuner.emulator.activities import ActivityLog, activity_cause, alarm_changes
from tuner.emulator.control import MotoPlane
from tuner.emulator.endpoint import EmulatedEndpoint
from tuner.emulator.metrics import (
    BUCKET_S,
    MINUTE_S,
    NAMESPACE,
    PeriodSummary,
    concurrency_datum,
    minute_datums,
)
from tuner.errors import TunerError, ValidationError
from tuner.model.capacity import Capacity
from tuner.model.controller import TargetTracking
from tuner.model.scaling import ScalingCause, ScalingEvent
from tuner.model.settings import SimulationSettings
from tuner.model.stepping import stream_of
from tuner.policy import MetricType, Resource, ResourceKind, ScalingPolicy
from tuner.policy.alarm import policy_name_of
from tuner.policy.cron import fire_times
from tuner.policy.schedule import ScheduledScalingAction
from tuner.policy.step import StepScalingPolicy, step_from_aws
from tuner.policy.tracking import MAX_TARGET_VALUE

STEP_S = BUCKET_S
_PLACEHOLDER_TARGET = MAX_TARGET_VALUE  # never reached: the placeholder never scales
# Real seconds to wait past a boundary so requests stamped just before it are counted.
_GRACE_S = 0.01
# Steps kept in the timeline: 11.5 virtual days of 10-s steps.
_MAX_HISTORY = 100_000
_EMULATED_METRICS = {
    ResourceKind.VARIANT: (
        MetricType.INVOCATIONS_PER_INSTANCE,
        MetricType.CONCURRENT_REQUESTS_PER_MODEL,
    ),
    ResourceKind.INFERENCE_COMPONENT: (
        MetricType.INVOCATIONS_PER_COPY,
        MetricType.CONCURRENT_REQUESTS_PER_COPY,
    ),
}


class ScaledTarget(Protocol):
    """What the autoscaler drives: a count in service, set on the event loop thread."""

    @property
    def in_service(self) -> int: ...

    def set_in_service(self, n: int) -> None: ...


@dataclass(frozen=True)
class StepSample:
    """The controller's inputs for one 10-s step, and what was published from it."""

    invocations_per_instance: float
    concurrency: float
    invocations: int
    summary: PeriodSummary
    no_capacity_failures: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)


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
        resource: Resource | None = None,
        target: ScaledTarget | None = None,
    ) -> None:
        self.plane = plane
        self.endpoint = endpoint
        self.resource = resource or Resource.for_variant(endpoint.name, endpoint.variant)
        self.target: ScaledTarget = target if target is not None else endpoint
        """What the count in service is pushed to (the endpoint, or an inference component)."""
        self.clock = clock
        self.activities = ActivityLog(self.resource.resource_id, self.resource.scalable_dimension)
        self._loop = loop
        self._log = log
        self._lock = threading.RLock()
        self._epoch_v = clock.v0
        self._k = -1
        self._registered: tuple[int, int] | None = None
        self._suspended = (False, False)
        self._scheduled_suspended = False
        self._fired: list[str] = []
        """Names of the scheduled actions that set the range being applied (for the activity)."""
        self._base: list[ScalingPolicy] = []
        self._steps: tuple[StepScalingPolicy, ...] = ()
        self._alarm_states: dict[str, bool] = {}
        """Step alarms' last state as set in the control plane's CloudWatch (True: ALARM)."""
        self._skipped: set[str] = set()
        self._effective: list[ScalingPolicy] | None = None
        self.step_in_service = instances
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

    def sample(self, boundary_v: float) -> StepSample:
        """Close the 10-s step ending at ``boundary_v``: the controller's metric samples."""
        ep = self.endpoint
        bucket = ep.metrics.at(boundary_v - STEP_S)
        bucket.per_instance = bucket.invocations / max(1, self.step_in_service)
        step = ep.metrics.summary(boundary_v - STEP_S, STEP_S, self._inflight_per_instance())
        return StepSample(
            step.invocations_per_instance, step.concurrent_per_model, step.invocations, step
        )

    def _tick(self, boundary_v: float) -> None:
        step = self.sample(boundary_v)
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
            extra: dict[str, Any] = dict(step.extra)
            if step.no_capacity_failures is not None:
                extra["no_capacity_failures"] = step.no_capacity_failures
            result = self.tt.step(
                self._k,
                invocations_per_instance=step.invocations_per_instance,
                concurrency=step.concurrency,
                **extra,
            )
            self._record(result.events)
            if policies is not None and target is not None:
                self._run_scheduled(boundary_v, target, policies)
            self.step_in_service = int(self.tt.in_service[0])
            if len(self.history) < _MAX_HISTORY:
                self.history.append(
                    (boundary_v, self.step_in_service, int(self.tt.desired[0]), step.invocations)
                )
            self._push_in_service()
            self._schedule_completion()
            changed = alarm_changes(self._steps, self.tt.step_alarm_on[0], self._alarm_states)
        self.publish(boundary_v, step)
        for name, on, reason in changed:
            # CloudWatch shows the state the controller evaluated, as AWS's alarm would
            try:
                self.plane.call(
                    "monitoring",
                    "SetAlarmState",
                    {
                        "AlarmName": name,
                        "StateValue": "ALARM" if on else "OK",
                        "StateReason": reason,
                    },
                )
            except TunerError as e:
                self._log(f"autoscaler: cannot set alarm {name}: {e}")

    def _run_scheduled(
        self, boundary_v: float, target: dict[str, Any], policies: list[dict[str, Any]]
    ) -> None:
        """Run the scheduled actions due in (boundary - STEP_S, boundary] (lock held)."""
        if self._scheduled_suspended:
            return
        rid, dim = self.resource.resource_id, self.resource.scalable_dimension
        try:
            entries = self.plane.scheduled_actions(rid, dim)
        except TunerError as e:
            self._log(f"autoscaler: cannot read scheduled actions: {e}")
            return
        end = datetime.fromtimestamp(boundary_v, tz=UTC) + timedelta(microseconds=1)
        start = end - timedelta(seconds=STEP_S)
        due: list[tuple[datetime, ScheduledScalingAction]] = []
        for entry in entries:
            name = str(entry.get("ScheduledActionName", "?"))
            try:
                action = ScheduledScalingAction.from_aws(entry)
            except TunerError as e:
                self._skip(f"scheduled:{name}", f"scheduled action {name} ignored: {e}")
                continue
            origin = action.start_time
            if action.parsed.rate_s is not None and origin is None:
                # a rate counts from the action's creation (AAS runs it every N from then)
                origin = datetime.fromtimestamp(float(entry.get("CreationTime", 0)), tz=UTC)
            runs = fire_times(
                action.parsed,
                start,
                end,
                zone=action.zone,
                start_time=origin,
                end_time=action.end_time,
            )
            due += [(t, action) for t in runs]
        if not due:
            return
        lo, hi = int(target["MinCapacity"]), int(target["MaxCapacity"])
        names = []
        for _, action in sorted(due, key=lambda pair: (pair[0], pair[1].name)):
            new_lo = lo if action.min_capacity is None else action.min_capacity
            new_hi = hi if action.max_capacity is None else action.max_capacity
            if new_lo > new_hi:
                self._log(
                    f"autoscaler: scheduled action {action.name} skipped: MinCapacity <= "
                    f"MaxCapacity must hold, got {new_lo} > {new_hi}"
                )
                continue
            lo, hi = new_lo, new_hi
            names.append(action.name)
        if not names:
            return
        self.plane.set_range(rid, dim, lo, hi)
        self._log(f"scheduled action {', '.join(names)}: range set to {lo}..{hi}")
        self._read(dict(target, MinCapacity=lo, MaxCapacity=hi), policies)
        self._fired = names
        try:
            self._apply(self._effective_policies(), record=True, cause=ScalingCause.SCHEDULED)
        finally:
            self._fired = []

    def publish(self, boundary_v: float, sample: StepSample) -> None:
        """Put the step's AWS/SageMaker datums (and the minute's, on a minute boundary)."""
        ep = self.endpoint
        when = self.clock.datetime_at(boundary_v - STEP_S)
        datums = [concurrency_datum(sample.summary, when, ep.name, ep.variant)]
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
            self._steps = ()
            return
        lo, hi = int(target["MinCapacity"]), int(target["MaxCapacity"])
        self._registered = (lo, hi)
        sus = target.get("SuspendedState") or {}
        self._suspended = (
            bool(sus.get("DynamicScalingOutSuspended")),
            bool(sus.get("DynamicScalingInSuspended")),
        )
        self._scheduled_suspended = bool(sus.get("ScheduledScalingSuspended"))
        base = []
        self._steps = self._read_steps(
            [p for p in policies if p.get("PolicyType") == "StepScaling"]
        )
        for p in policies:
            name = p.get("PolicyName", "?")
            if p.get("PolicyType") == "StepScaling":
                continue
            if p.get("PolicyType") != "TargetTrackingScaling":
                self._skip(name, f"policy {name}: {p.get('PolicyType')} is not emulated; ignored")
                continue
            try:
                sp = ScalingPolicy.from_aws(target, p)
                if sp.metric_type not in _EMULATED_METRICS[self.resource.kind]:
                    raise ValidationError(f"metric {sp.metric_type} is not emulated")
            except TunerError as e:
                self._skip(name, f"policy {name} ignored: {e}")
                continue
            base.append(sp)
        self._base = base

    def _read_steps(self, entries: list[dict[str, Any]]) -> tuple[StepScalingPolicy, ...]:
        if not entries:
            return ()
        tail = f"resource/sagemaker/{self.resource.resource_id}:policyName/"
        by_policy: dict[str, dict[str, Any]] = {}
        for alarm in self.plane.metric_alarms():
            for action in alarm.get("AlarmActions", []):
                name = policy_name_of(action)
                if name is not None and action.endswith(tail + name):
                    by_policy.setdefault(name, alarm)
        steps = []
        for p in entries:
            name = p.get("PolicyName", "?")
            found = by_policy.get(name)
            if found is None:
                self._skip(name, f"step policy {name}: no CloudWatch alarm acts on it; idle")
                continue
            try:
                step = step_from_aws(p, found)
                stream_of(step)
            except TunerError as e:
                self._skip(name, f"step policy {name} ignored: {e}")
                continue
            self._skipped.discard(name)  # running now: say so again if it stops
            steps.append(step)
        return tuple(steps)

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
        policies = [p.replace(min_capacity=lo, max_capacity=hi) for p in self._base]
        if self._steps and not policies:  # step policies alone on the target
            return [
                ScalingPolicy(
                    min_capacity=lo,
                    max_capacity=hi,
                    step_policies=self._steps,
                    kind=self.resource.kind,
                )
            ]
        policies = policies or [self._placeholder(lo, hi)]
        if self._steps:  # step policies ride on the first policy: the same target
            policies[0] = policies[0].replace(step_policies=self._steps)
        return policies

    def _apply(
        self,
        policies: list[ScalingPolicy],
        *,
        record: bool,
        cause: ScalingCause = ScalingCause.REGISTERED,
    ) -> None:
        if policies == self._effective:
            return
        events = self.tt.set_policies([policies], cause=cause)
        self._effective = policies
        if record:
            self._record(events)

    def _record(self, events: tuple[ScalingEvent, ...] | list[ScalingEvent]) -> None:
        for ev in events:
            cause = activity_cause(
                ev, self.resource.resource_id, self._registered, self._fired, self._steps
            )
            start_v = self._epoch_v + ev.t_s
            end_v = self._epoch_v + ev.completes_at_s
            self.activities.add(ev.description, cause, start_v, end_v, ev.to_capacity)
            self._log(
                f"scaling activity: {ev.kind.value} {ev.from_capacity} -> {ev.to_capacity} "
                f"({cause})"
            )

    def decided(self, desired: int, in_service: int) -> None:
        """Called (lock held) after every decision; subclasses place what it asks for."""

    def _push_in_service(self) -> None:
        n = int(self.tt.in_service[0])
        self.decided(int(self.tt.desired[0]), n)
        if n != self.target.in_service:
            self._loop.call_soon_threadsafe(self.target.set_in_service, n)

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
            self.target.set_in_service(n)

    def _placeholder(self, lo: int, hi: int) -> ScalingPolicy:
        kind = self.resource.kind
        return ScalingPolicy(
            min_capacity=lo,
            max_capacity=hi,
            target_value=_PLACEHOLDER_TARGET,
            disable_scale_in=True,
            name="(no policy)",
            kind=kind,
            metric_type=_EMULATED_METRICS[kind][0],
        )
