"""Application Auto Scaling of one inference component's copies: the variant autoscaler's loop
(the same controller, policies, step alarms, scheduled actions and activities) on
``inference-component/<name>`` with ``sagemaker:inference-component:DesiredCopyCount``.

What differs from a variant:
- the samples: InvocationsPerCopy (per copy in service during the step), the 10-s peak of
  ConcurrentRequestsPerCopy, and the step's NoCapacityInvocationFailures (the controller's
  ``no_capacity_failures``, which a step alarm on that metric reads);
- zero copies in service (the rule of :class:`tuner.model.scaling.ModelChoices`, as the
  simulator has it): the per-copy metrics have no datapoint for a step without a copy, so the
  controller gets NaN and no ConcurrentRequestsPerCopy is published for it; a minute's
  InvocationsPerCopy sums its steps with copies and is not published when none had one;
- a copy's boot time is set before each step from the endpoint's instances: ``copy_load_s`` when
  a running instance has room, the rest of an instance's boot plus ``copy_load_s`` when a booting
  one has, ``instance_boot_s + copy_load_s`` when managed instance scaling must add an instance;
- copies in service are at most what running instances hold (copies of a scale-out of several
  that needed new instances serve once those are up); instances follow the desired copies.
"""

from __future__ import annotations

import asyncio
import dataclasses
import math
from collections.abc import Callable
from typing import Any

import numpy as np

from tuner.clock import VirtualClock
from tuner.emulator.autoscaler import STEP_S, Autoscaler, StepSample
from tuner.emulator.components import ComponentRuntime, InstancePool
from tuner.emulator.control import MotoPlane
from tuner.emulator.endpoint import EmulatedEndpoint
from tuner.emulator.metrics import MINUTE_S, NAMESPACE, component_datums
from tuner.model.capacity import Capacity
from tuner.model.settings import SimulationSettings
from tuner.policy import Resource


class PlacedCopies:
    """The scaler's target: copies asked to serve, capped by what running instances hold."""

    def __init__(self, runtime: ComponentRuntime, pool: InstancePool) -> None:
        self.runtime = runtime
        self.pool = pool
        self.requested = runtime.in_service

    @property
    def in_service(self) -> int:
        return self.requested

    def set_in_service(self, n: int) -> None:
        self.requested = n
        self.reapply()

    def reapply(self) -> None:
        """Serve what can be placed now (instances that finished booting add copies)."""
        n = min(self.requested, self.pool.placeable(self.runtime.name))
        if n != self.runtime.in_service:
            self.runtime.set_in_service(n)


class ComponentScaler(Autoscaler):
    """The autoscaler of one inference component (its own thread, like the variant's)."""

    def __init__(
        self,
        plane: MotoPlane,
        endpoint: EmulatedEndpoint,
        runtime: ComponentRuntime,
        pool: InstancePool,
        loop: asyncio.AbstractEventLoop,
        clock: VirtualClock,
        *,
        copies: int,
        settings: SimulationSettings,
        log: Callable[[str], None] = lambda line: None,
    ) -> None:
        self.runtime = runtime
        self.pool = pool
        pool.set_copies(runtime.name, copies)
        self.placed = PlacedCopies(runtime, pool)
        spec = runtime.spec
        capacity = dataclasses.replace(Capacity.default(), boot_s=spec.copy_load_s)
        super().__init__(
            plane,
            endpoint,
            loop,
            clock,
            instances=copies,
            capacity=capacity,
            settings=settings,
            log=log,
            resource=Resource.for_component(runtime.name),
            target=self.placed,
        )
        self._loop_ref = loop
        self._step_served = True
        """Whether a copy was in service in the step last sampled."""
        self._minute_served = False
        """Whether a copy was in service in some step of the minute being summed."""
        self.instances_at: dict[float, int] = {}
        """Instances running on the endpoint at each step boundary (for the timeline)."""

        self._next_boot()

    def _next_boot(self) -> None:
        """The controller's boot time for its next scale-out: when one more copy would serve."""
        self.tt.boot_s = np.full(1, self.pool.copy_ready_s(self.runtime.name))

    def decided(self, desired: int, in_service: int) -> None:
        self.pool.set_copies(self.runtime.name, desired)
        self._next_boot()

    def set_desired_by_hand(self, n: int) -> None:
        with self._lock:
            self._next_boot()
        super().set_desired_by_hand(n)

    def refresh(self) -> None:
        with self._lock:
            self._next_boot()
        super().refresh()

    def sample(self, boundary_v: float) -> StepSample:
        rt = self.runtime
        bucket = rt.metrics.at(boundary_v - STEP_S)
        n = self.step_in_service
        bucket.per_instance = bucket.invocations / n if n else 0.0
        now = rt.inflight / max(1, rt.in_service)
        step = rt.metrics.summary(boundary_v - STEP_S, STEP_S, now)
        with self._lock:
            self._next_boot()
        self._loop_ref.call_soon_threadsafe(self.placed.reapply)
        self._step_served = n > 0
        self._minute_served |= n > 0
        missing = math.nan  # no copy: no per-copy datapoint (ModelChoices)
        return StepSample(
            step.invocations_per_instance if n else missing,
            step.concurrent_per_model if n else missing,
            step.invocations,
            step,
            no_capacity_failures=float(step.no_capacity),
        )

    def publish(self, boundary_v: float, sample: StepSample) -> None:
        rt = self.runtime
        if len(self.instances_at) < len(self.history) + 1_000:  # after the step's decisions
            self.instances_at[boundary_v] = self.pool.instances(boundary_v)[0]
        when = self.clock.datetime_at(boundary_v - STEP_S)
        datums: list[dict[str, Any]] = []
        if self._step_served:
            datums += component_datums(sample.summary, when, rt.name, minute=False)
        if (boundary_v - self.clock.v0) % MINUTE_S == 0:
            minute = rt.metrics.summary(boundary_v - MINUTE_S, MINUTE_S)
            start = self.clock.datetime_at(boundary_v - MINUTE_S)
            datums += [
                d
                for d in component_datums(minute, start, rt.name, minute=True)
                if self._minute_served or d["MetricName"] != "InvocationsPerCopy"
            ]
            self._minute_served = False
            rt.metrics.forget_before(boundary_v)
        self.plane.put_metric_data(NAMESPACE, datums)
