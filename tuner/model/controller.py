"""Application Auto Scaling target tracking (``reference/target-tracking.md``), one step at a time.

One implementation of the model serves the simulator (C candidates at CPU speed) and the local
emulator's autoscaler (C = 1 in virtual real time). Usage::

    tt = TargetTracking(policies, choices=ModelChoices(metric_lag_s=60))
    for k in range(n_steps):                  # step k covers [k*step_s, (k+1)*step_s)
        n = tt.in_service                     # instances serving during step k
        ...serve step k, measure it...
        result = tt.step(k, invocations_per_instance=..., concurrency=...)
        # decisions taken at t = (k+1)*step_s; tt.desired / tt.in_service hold for step k+1

``step_s`` is the finest metric period of the policies (60 s, or 10 s when a high-resolution
metric is tracked; the emulator may force 10 s). Each step the caller gives, per candidate, the
step's share of ``InvocationsPerInstance`` (requests received in the step / instances in service)
and, when a concurrency metric is tracked, the step's peak ``ConcurrentRequestsPerModel``. The
controller sums 60-s datapoints from 10-s steps itself, delays datapoints by the metric lag,
evaluates the alarms, completes boots and decides, in this order at each boundary:
boot completions, scheduled actions, newly visible datapoints -> alarms, scale-out, scale-in.

Arrays are per candidate (C,) or per candidate and policy slot (C, J): a candidate may carry
several policies on one target; shorter lists are padded with slots that never act.
Every choice the reference leaves to the model is named in
:class:`tuner.model.scaling.ModelChoices`;
the states, events and results a step speaks in are in :mod:`tuner.model.scaling` too.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Sequence

import numpy as np

from tuner.errors import ValidationError
from tuner.model.scaling import (
    CONCURRENCY_TYPES,
    AlarmState,
    ModelChoices,
    ScalingCause,
    ScalingEvent,
    ScalingKind,
    ScheduledAction,
    StepResult,
    finest_period_s,
    normalise_candidates,
)
from tuner.model.stepping import NO_CAPACITY_STREAMS, StepPolicies
from tuner.policy.policy import ScalingPolicy
from tuner.policy.step import StepScalingPolicy


class TargetTracking:
    """Target-tracking state for C candidates; see the module docstring for the step protocol.

    Public state (read it, do not write it): ``desired``, ``in_service``, ``updating`` (C,);
    ``alarm_high_on`` / ``alarm_low_on`` (C, J) bool, alarms in ALARM after the last evaluation;
    ``scale_out_count`` / ``scale_in_count`` (C,). ``desired`` and ``in_service`` are replaced,
    never modified in place, so a changed object means changed capacity.
    """

    def __init__(
        self,
        policies: Sequence[ScalingPolicy] | Sequence[Sequence[ScalingPolicy]],
        *,
        choices: ModelChoices | None = None,
        initial_capacity: int | np.ndarray | None = None,
        scheduled: Sequence[ScheduledAction] = (),
        boot_s: float | np.ndarray | None = None,
        step_s: int | None = None,
        record_events: bool = True,
    ) -> None:
        self.choices = choices or ModelChoices()
        groups = normalise_candidates(policies)
        self.C = len(groups)
        finest = min(finest_period_s(p) for g in groups for p in g)
        self.step_s = int(step_s or finest)
        if self.step_s not in (10, 60) or self.step_s > finest:
            raise ValidationError(f"step_s must be 10 or 60 and <= {finest}, got {self.step_s}")
        self.record_events = record_events
        ch = self.choices
        self._lag_steps = max(0, math.ceil(ch.metric_lag_s / self.step_s - 1e-9))
        self._reinvoke_steps = max(1, round(ch.reinvoke_s / self.step_s))
        self._m = {
            "inv": 60 // self.step_s,
            "conc": 10 // self.step_s or 1,
            "nocap": 60 // self.step_s,
            "nocap10": 1,
        }
        self.boot_s = np.broadcast_to(
            np.asarray(ch.boot_s if boot_s is None else boot_s, dtype=float), (self.C,)
        ).copy()
        """Boot time of the next scale-out per candidate (the simulator redraws it for jitter)."""
        if not np.isfinite(self.boot_s).all() or (self.boot_s < 0).any():
            raise ValidationError(f"boot_s >= 0 must hold, got {self.boot_s.min():g}")
        self._boot_for: np.ndarray | None = None
        self._boot_delay_s = np.zeros(self.C)
        self._scheduled = sorted(scheduled, key=lambda a: a.at_s)
        self._k = -1
        self.t_s = 0.0
        self._pending: dict[str, deque[tuple[int, np.ndarray]]] = {"inv": deque(), "conc": deque()}
        self._acc = {s: np.zeros(self.C) for s in ("inv", "conc", "nocap", "nocap10")}
        self._acc_seen = {s: np.zeros(self.C, dtype=bool) for s in self._acc}
        """Whether some step of the period being summed had a sample (a 10-s step with no copy
        in service has none: NaN); a period none of whose steps had one has no datapoint."""
        self._count = {"inv": 0, "conc": 0, "nocap": 0, "nocap10": 0}
        self._set_slots(groups, reset_all=True)
        self._steps: StepPolicies | None = self._make_steps(groups)
        self.min_capacity = np.array([g[0].min_capacity for g in groups], dtype=float)
        self.max_capacity = np.array([g[0].max_capacity for g in groups], dtype=float)
        while self._scheduled and self._scheduled[0].at_s <= 0:
            self._set_range(self._scheduled.pop(0))
        start = self.min_capacity if initial_capacity is None else initial_capacity
        self.desired = np.clip(
            np.broadcast_to(np.asarray(start, dtype=float), (self.C,)),
            self.min_capacity,
            self.max_capacity,
        )
        self.in_service = self.desired.copy()
        self._set_complete_at(np.full(self.C, np.inf))
        self._pending_base = np.zeros(self.C)
        self._pending_out_cd = np.full(self.C, np.nan)
        self.out_cd_end = np.full(self.C, -np.inf)
        self.out_base = np.zeros(self.C)
        self.in_cd_end = np.full(self.C, -np.inf)
        # latest cooldown ends: once t is past them no cooldown runs and the checks are skipped
        self._out_cd_last = -np.inf
        self._in_cd_last = -np.inf
        self.scale_out_count = np.zeros(self.C, dtype=np.int64)
        self.scale_in_count = np.zeros(self.C, dtype=np.int64)
        self._events: list[ScalingEvent] = []

    # -- policies ------------------------------------------------------------------------------

    def _set_slots(self, groups: list[list[ScalingPolicy]], *, reset_all: bool) -> None:
        C, J = self.C, max(len(g) for g in groups)
        old: list[list[ScalingPolicy]] | None = None if reset_all else self._groups
        self._groups: list[list[ScalingPolicy]] = groups
        self.J = J
        shape = (C, J)
        ch = self.choices
        self.target = np.full(shape, np.inf)
        self.is_conc = np.zeros(shape, dtype=bool)
        self.active = np.zeros(shape, dtype=bool)
        self.scale_in_enabled = np.zeros(shape, dtype=bool)
        self.need_low = np.full(shape, float(np.iinfo(np.int32).max))
        out_cd = np.zeros(shape)
        in_cd = np.zeros(shape)
        names = np.empty(shape, dtype=object)
        for i, g in enumerate(groups):
            for j, p in enumerate(g):
                names[i, j] = p.name
                if p.target_value is None:  # step policies only: a slot that never acts
                    continue
                conc = p.metric_type in CONCURRENCY_TYPES
                self.target[i, j] = p.target_value
                self.is_conc[i, j] = conc
                self.active[i, j] = True
                self.scale_in_enabled[i, j] = not p.disable_scale_in
                self.need_low[i, j] = (
                    ch.low_datapoints_high_resolution if conc else ch.low_datapoints
                )
                out_cd[i, j] = p.scale_out_cooldown_s
                in_cd[i, j] = p.scale_in_cooldown_s
        if self.is_conc.any() and self.step_s != 10:
            raise ValidationError(f"a 10-s metric needs step_s = 10, got {self.step_s}")
        # a slot without a policy never breaches either alarm (-inf: nothing is below it)
        self.low_threshold = np.where(self.active, self.target * ch.low_ratio, -np.inf)
        self._out_cd = out_cd
        self._in_cd_len = np.where(self.scale_in_enabled, in_cd, 0).max(axis=1)
        self._any_enabled = self.scale_in_enabled.any(axis=1)
        self._all_enabled = bool(self.scale_in_enabled.all())
        self._names = names
        self._streams = [
            s for s, mask in (("inv", ~self.is_conc), ("conc", self.is_conc)) if mask.any()
        ]
        # Scratch for the temporaries of _observe and _decide, which run every step: filling
        # these with out= saves an allocation per operation (C is small, so that is most of it).
        self._x = np.empty(shape)
        self._cmp = np.empty(shape, dtype=bool)
        self._ask = np.empty(shape, dtype=bool)
        self._cand = np.empty(C, dtype=bool)
        self._cand_cd = np.empty(C, dtype=bool)
        self._below = np.empty(C)
        keep = np.zeros(shape, dtype=bool)
        if old is not None:
            for i, (g_new, g_old) in enumerate(zip(groups, old, strict=True)):
                for j in range(min(len(g_new), len(g_old))):
                    a, b = g_new[j], g_old[j]
                    keep[i, j] = (a.metric_type, a.target_value) == (b.metric_type, b.target_value)
        kept = ("high_run", "low_run", "metric", "high_since", "low_since", "_seen_from")
        prev = {n: np.asarray(getattr(self, n)) for n in kept} if old else {}
        self.high_run = np.zeros(shape)
        """Consecutive newest visible datapoints above the target, per slot."""
        self.low_run = np.zeros(shape)
        self.metric = np.full(shape, np.nan)
        """Newest visible datapoint per slot."""
        self.high_since = np.zeros(shape, dtype=np.int64)
        self.low_since = np.zeros(shape, dtype=np.int64)
        # datapoints an alarm has seen = its stream's count - the count when it was created
        self._seen_from = np.where(self.is_conc, self._count["conc"], self._count["inv"]) * 1.0
        for name, arr in prev.items():
            w = min(arr.shape[1], J)
            cur = getattr(self, name)
            cur[:, :w] = np.where(keep[:, :w], arr[:, :w], cur[:, :w])
        self.alarm_high_on = self.high_run >= ch.high_datapoints
        self.alarm_low_on = self.low_run >= self.need_low

    def set_policies(
        self,
        policies: Sequence[ScalingPolicy] | Sequence[Sequence[ScalingPolicy]],
        *,
        cause: ScalingCause = ScalingCause.REGISTERED,
    ) -> list[ScalingEvent]:
        """Replace the policies at the last boundary stepped: the range applies at once (§1).

        Alarms of a changed policy (metric or target) restart in INSUFFICIENT_DATA. ``cause``
        names what changed the range (the emulator's scheduled actions re-register the target).
        """
        groups = normalise_candidates(policies)
        if len(groups) != self.C:
            raise ValidationError(f"set_policies needs {self.C} candidates, got {len(groups)}")
        self._set_slots(groups, reset_all=False)
        old_steps = self._steps
        if old_steps is None or old_steps.policies != [_steps_of(g) for g in groups]:
            # a changed step policy's alarm restarts in INSUFFICIENT_DATA, as a new alarm does
            self._steps = self._make_steps(groups)
        self.min_capacity = np.array([g[0].min_capacity for g in groups], dtype=float)
        self.max_capacity = np.array([g[0].max_capacity for g in groups], dtype=float)
        mark = len(self._events)
        self._move_into_range(cause)
        return self._events[mark:]

    @property
    def tracks_concurrency(self) -> bool:
        """Whether some policy tracks a concurrency metric (step() then needs ``concurrency``)."""
        return "conc" in self._streams or (
            self._steps is not None and self._steps.needs_concurrency
        )

    def _make_steps(self, groups: list[list[ScalingPolicy]]) -> StepPolicies | None:
        """The step policies' state; also which NoCapacityInvocationFailures streams to keep."""
        steps = [_steps_of(g) for g in groups]
        made = (
            StepPolicies(steps, step_s=self.step_s, reinvoke_steps=self._reinvoke_steps)
            if any(steps)
            else None
        )
        self._nocap_streams = sorted(made.streams & NO_CAPACITY_STREAMS) if made else []
        for stream in self._nocap_streams:
            self._pending.setdefault(stream, deque())
        return made

    @property
    def tracks_no_capacity(self) -> bool:
        """Whether a step alarm reads NoCapacityInvocationFailures (step() then uses its input)."""
        return bool(self._nocap_streams)

    @property
    def step_alarm_on(self) -> np.ndarray:
        """(C, S) bool: step-policy alarms in ALARM after the last evaluation ((C, 0): none)."""
        if self._steps is None:
            return np.zeros((self.C, 0), dtype=bool)
        return self._steps.alarm_on & self._steps.active

    # -- capacity changes ----------------------------------------------------------------------

    def _set_complete_at(self, complete_at: np.ndarray) -> None:
        """When each running boot completes (inf: none runs, the endpoint is InService)."""
        self.complete_at = complete_at
        self._idle = complete_at == np.inf
        self._next_done = float(complete_at.min())

    @property
    def updating(self) -> np.ndarray:
        """(C,) bool: a capacity change is in progress (the endpoint shows ``Updating``)."""
        return np.asarray(~self._idle)

    def _set_range(self, action: ScheduledAction) -> None:
        lo, hi = self.min_capacity, self.max_capacity
        if action.min_capacity is not None:
            new = np.broadcast_to(np.asarray(action.min_capacity, dtype=float), (self.C,))
            lo = np.where(np.isnan(new), lo, new)
        if action.max_capacity is not None:
            new = np.broadcast_to(np.asarray(action.max_capacity, dtype=float), (self.C,))
            hi = np.where(np.isnan(new), hi, new)
        if (lo > hi).any():
            i = int(np.argmax(lo > hi))
            raise ValidationError(
                f"scheduled action at {action.at_s:g} s: MinCapacity <= MaxCapacity must hold, "
                f"got {lo[i]:g} > {hi[i]:g} for candidate {i}"
            )
        self.min_capacity, self.max_capacity = lo, hi

    def _move_into_range(self, cause: ScalingCause) -> None:
        new = np.clip(self.desired, self.min_capacity, self.max_capacity)
        down = new < self.desired
        up = new > self.desired
        t = self.t_s
        if down.any():
            self._record(down, ScalingKind.IN, new, cause, None, t)
            self.scale_in_count += down
            self.desired = np.where(down, new, self.desired)
            self.in_service = np.minimum(self.in_service, self.desired)
            done = down & (self.in_service >= self.desired)
            self._set_complete_at(np.where(done, np.inf, self.complete_at))
            if self._steps is not None:  # the boot it cut short starts no step cooldown
                self._steps.cancel_pending(done)
        if up.any():
            finish = t + self._boot_delay()
            self._record(up, ScalingKind.OUT, new, cause, None, finish)
            self.scale_out_count += up
            self.desired = np.where(up, new, self.desired)
            # a boot the policy started keeps its cooldown; a range change alone starts none
            self._pending_out_cd = np.where(up & self._idle, np.nan, self._pending_out_cd)
            self._set_complete_at(np.where(up, finish, self.complete_at))

    def _boot_delay(self) -> np.ndarray:
        if self._boot_for is not self.boot_s:  # boot_s is replaced, not modified, to change it
            steps = np.maximum(1, np.ceil(self.boot_s / self.step_s - 1e-9))
            self._boot_delay_s = steps * self.step_s
            self._boot_for = self.boot_s
        return self._boot_delay_s

    def _record(
        self,
        mask: np.ndarray,
        kind: ScalingKind,
        to: np.ndarray,
        cause: ScalingCause,
        asking: np.ndarray | None,
        finish: float | np.ndarray,
    ) -> None:
        if not self.record_events:
            return
        finish = np.broadcast_to(finish, (self.C,))
        for i in np.flatnonzero(mask):
            name = None if asking is None else self._names[i, int(np.argmax(asking[i]))]
            self._events.append(
                ScalingEvent(
                    int(i),
                    self.t_s,
                    kind,
                    int(self.desired[i]),
                    int(to[i]),
                    cause,
                    name,
                    float(finish[i]),
                )
            )

    # -- the step ------------------------------------------------------------------------------

    def step(
        self,
        k: int,
        invocations_per_instance: float | np.ndarray,
        concurrency: float | np.ndarray | None = None,
        *,
        no_capacity_failures: float | np.ndarray | None = None,
    ) -> StepResult:
        """Close step k with its metric samples and decide at t = (k+1) x step_s.

        ``no_capacity_failures``: requests of step k that failed because no copy was in service
        (an inference component at zero copies), the NoCapacityInvocationFailures a step policy's
        alarm may read; None counts as zero.
        """
        mark = len(self._events)
        completed = self.advance(
            k, invocations_per_instance, concurrency, no_capacity_failures=no_capacity_failures
        )
        return StepResult(
            k,
            self.t_s,
            self.desired.copy(),
            self.in_service.copy(),
            self.updating.copy(),
            self.alarm_state(high=True),
            self.alarm_state(high=False),
            tuple(self._events[mark:]),
            tuple(int(i) for i in np.flatnonzero(completed)) if completed is not None else (),
        )

    @property
    def events(self) -> list[ScalingEvent]:
        """Every recorded scaling activity so far (``record_events=True``)."""
        return list(self._events)

    def alarm_state(self, *, high: bool) -> np.ndarray:
        """(C, J) AlarmState values of AlarmHigh (or AlarmLow) after the last evaluation."""
        on = self.alarm_high_on if high else self.alarm_low_on
        need = self.choices.high_datapoints if high else self.need_low
        state = np.where(on, AlarmState.ALARM, AlarmState.OK)
        # A new alarm needs as many datapoints as it evaluates before it leaves INSUFFICIENT_DATA.
        seen = np.where(self.is_conc, self._count["conc"], self._count["inv"]) - self._seen_from
        state = np.where(seen >= need, state, AlarmState.INSUFFICIENT_DATA)
        return np.where(self.active, state, AlarmState.INSUFFICIENT_DATA).astype(np.int8)

    def advance(
        self,
        k: int,
        invocations_per_instance: float | np.ndarray,
        concurrency: float | np.ndarray | None = None,
        *,
        copy: bool = True,
        no_capacity_failures: float | np.ndarray | None = None,
    ) -> np.ndarray | None:
        """:meth:`step` without building a result (the simulator's hot path).

        ``copy=False`` hands the sample arrays over (the caller will not modify them). Returns
        the mask of candidates whose boot completed, or None if none did.
        """
        if k != self._k + 1:
            raise ValidationError(f"steps must come in order: expected step {self._k + 1}, got {k}")
        self._k = k
        t = (k + 1) * self.step_s
        self.t_s = float(t)
        # 1. metric samples -> datapoints -> the lag queue
        self._collect(k, "inv", invocations_per_instance, copy)
        if concurrency is not None:
            self._collect(k, "conc", concurrency, copy)
        elif self.tracks_concurrency:
            raise ValidationError("a concurrency policy needs the concurrency metric each step")
        if self._nocap_streams:
            failures = 0.0 if no_capacity_failures is None else no_capacity_failures
            for stream in self._nocap_streams:
                self._collect(k, stream, failures, copy=True)
        # 2. boots complete
        completed = None
        if t >= self._next_done:
            done = self.complete_at <= t
            completed = done
            self.in_service = np.where(done, self.desired, self.in_service)
            # the scale-out cooldown (re)starts when a policy's scale-out completes (§4.4)
            by_policy = done & (self._pending_out_cd >= 0)  # NaN: a range change, no cooldown
            self.out_cd_end = np.where(by_policy, t + self._pending_out_cd, self.out_cd_end)
            self.out_base = np.where(by_policy, self._pending_base, self.out_base)
            self._out_cd_last = float(self.out_cd_end.max())
            self._set_complete_at(np.where(done, np.inf, self.complete_at))
            if self._steps is not None:
                self._steps.completed(done, self.t_s)
        # 3. scheduled actions
        while self._scheduled and self._scheduled[0].at_s <= t:
            self._set_range(self._scheduled.pop(0))
            self._move_into_range(ScalingCause.SCHEDULED)
        # 4. newly visible datapoints -> alarm counters
        for stream, queue in self._pending.items():
            while queue and queue[0][0] <= k:
                value = queue.popleft()[1]
                self._count[stream] += 1
                if stream in self._streams:
                    self._observe(stream, value, k)
                if self._steps is not None:
                    self._steps.observe(stream, value, k)
        # 5. decisions
        if self._steps is not None:
            self._decide_with_steps(k, self.t_s)
            return completed
        high, low = self.alarm_high_on, self.alarm_low_on
        high_any, low_any = np.count_nonzero(high) > 0, np.count_nonzero(low) > 0
        if high_any or low_any:
            # t as a float: array comparisons with a Python int cost more (same values)
            self._decide(k, self.t_s, high if high_any else None, low if low_any else None)
        return completed

    def _collect(self, k: int, stream: str, sample: float | np.ndarray, copy: bool) -> None:
        m = self._m[stream]
        if m == 1:
            if isinstance(sample, np.ndarray) and sample.shape == (self.C,):
                own = not copy and sample.dtype == np.float64
                value = sample if own else sample.astype(float)
            else:
                value = np.array(np.broadcast_to(sample, (self.C,)), dtype=float)
        else:
            acc, seen = self._acc[stream], self._acc_seen[stream]
            if stream != "conc":  # invocations and failures are sums, concurrency a peak
                arr = np.asarray(sample, dtype=float)
                missing = np.isnan(arr)
                if missing.any():  # per-copy metrics: a step with no copy in service adds none
                    acc += np.where(missing, 0.0, arr)
                    seen |= ~missing
                else:
                    acc += arr
                    seen[:] = True
            else:
                np.maximum(acc, sample, out=acc)
                seen[:] = True
            if (k + 1) % m:
                return
            value = np.where(seen, acc, np.nan)
            acc[:] = 0.0
            seen[:] = False
        self._pending[stream].append((k + self._lag_steps, value))

    def _observe(self, stream: str, value: np.ndarray, k: int) -> None:
        v = value[:, None]
        was_high, was_low = self.alarm_high_on, self.alarm_low_on
        if len(self._streams) == 1:
            # consecutive breaching datapoints: "3 of 3" is a run of the last 3
            # float operands: a Python int makes numpy resolve types anew on every call
            self.high_run += 1.0
            self.high_run *= np.greater(v, self.target, out=self._cmp)
            self.low_run += 1.0
            self.low_run *= np.less(v, self.low_threshold, out=self._cmp)
            self.metric = v if self.J == 1 else np.repeat(v, self.J, axis=1)
        else:
            mask = self.is_conc if stream == "conc" else ~self.is_conc
            high = (self.high_run + 1) * (v > self.target)
            low = (self.low_run + 1) * (v < self.low_threshold)
            self.high_run = np.where(mask, high, self.high_run)
            self.low_run = np.where(mask, low, self.low_run)
            self.metric = np.where(mask, v, self.metric)
        self.alarm_high_on = self.high_run >= float(self.choices.high_datapoints)
        self.alarm_low_on = self.low_run >= self.need_low
        # the step an alarm enters ALARM anchors its once-a-minute re-invocation
        if self._reinvoke_steps > 1:
            self.high_since = np.where(self.alarm_high_on & ~was_high, k, self.high_since)
            self.low_since = np.where(self.alarm_low_on & ~was_low, k, self.low_since)

    def _decide(self, k: int, t: float, high: np.ndarray | None, low: np.ndarray | None) -> None:
        reinvoke = self._reinvoke_steps
        low_invoked: np.ndarray = low if low is not None else np.zeros(0, dtype=bool)
        if reinvoke > 1:
            if high is not None:
                high = high & ((k - self.high_since) % reinvoke == 0)
            if low is not None:
                low_invoked = low & ((k - self.low_since) % reinvoke == 0)
        d = self.desired
        in_cooldown = t < self._out_cd_last
        base = np.where(t < self.out_cd_end, self.out_base, d) if in_cooldown else d
        # x = B x M / T - epsilon and R = ceil(x) before the [Min, Max] clamp. For an integer D,
        # ceil(x) > D iff x > D and ceil(x) < D iff x <= D - 1; D is always inside the range, so
        # min(R, Max) > D unless D is at Max, and max(R, Min) < D unless D is at Min.
        x = np.multiply(base[:, None], self.metric, out=self._x)
        x /= self.target
        x -= self.choices.ceil_epsilon
        dcol = d[:, None]
        if high is not None:
            ask = np.greater(x, dcol, out=self._ask)
            ask &= high
            if np.count_nonzero(ask):
                ask &= dcol < self.max_capacity[:, None]
                scale_out = (ask[:, 0] if self.J == 1 else ask.any(axis=1)) & self._idle
                if np.count_nonzero(scale_out):
                    required = np.minimum(np.ceil(x), self.max_capacity[:, None])
                    self._scale_out(t, scale_out, ask, required, base)
        if low is None or (reinvoke > 1 and not np.count_nonzero(low_invoked)):
            return
        if self.J == 1:
            below = np.subtract(self.desired, 1.0, out=self._below)
            cand = np.less_equal(x[:, 0], below, out=self._cand)
            cand &= low[:, 0]
            if not self._all_enabled:
                cand &= self.scale_in_enabled[:, 0]
            if reinvoke > 1:
                cand &= low_invoked[:, 0]
        else:
            required = np.clip(np.ceil(x), self.min_capacity[:, None], self.max_capacity[:, None])
            enabled = self.scale_in_enabled
            agree = (low & (required < self.desired[:, None])) | ~enabled
            cand = agree.all(axis=1) & (low_invoked & enabled).any(axis=1) & self._any_enabled
        cand &= self._idle
        if t < self._in_cd_last:
            cand &= np.less_equal(self.in_cd_end, t, out=self._cand_cd)
        if not np.count_nonzero(cand):
            return
        if self.J == 1:  # x <= D - 1 <= Max - 1: only the Min clamp can apply
            required = np.maximum(np.ceil(x), self.min_capacity[:, None])
            new = required[:, 0]
        else:
            required = np.clip(np.ceil(x), self.min_capacity[:, None], self.max_capacity[:, None])
            new = np.where(self.scale_in_enabled, required, -np.inf).max(axis=1)
        scale_in = cand & (new < self.desired)
        if np.count_nonzero(scale_in):
            if self.record_events:
                winner = self.scale_in_enabled & (required == new[:, None])
                self._record(scale_in, ScalingKind.IN, new, ScalingCause.ALARM_LOW, winner, t)
            self.scale_in_count += scale_in
            self.desired = np.where(scale_in, new, self.desired)
            self.in_service = np.where(scale_in, new, self.in_service)
            self.in_cd_end = np.where(scale_in, t + self._in_cd_len, self.in_cd_end)
            self._in_cd_last = float(self.in_cd_end.max())

    def _scale_out(
        self,
        t: float,
        scale_out: np.ndarray,
        ask: np.ndarray,
        required: np.ndarray,
        base: np.ndarray,
    ) -> None:
        if self.J == 1:
            new, cd = required[:, 0], self._out_cd[:, 0]
        else:
            new = np.where(ask, required, -np.inf).max(axis=1)
            cd = np.where(ask, self._out_cd, -np.inf).max(axis=1)
        finish = t + self._boot_delay()
        if self.record_events:
            winner = ask & (required == new[:, None])
            self._record(scale_out, ScalingKind.OUT, new, ScalingCause.ALARM_HIGH, winner, finish)
        self.scale_out_count += scale_out
        # inside a running scale-out cooldown the base stays the one that opened it (§4.4)
        self._pending_base = np.where(scale_out, base, self._pending_base)
        self._pending_out_cd = np.where(scale_out, cd, self._pending_out_cd)
        self.desired = np.where(scale_out, new, self.desired)
        self.in_cd_end = np.where(scale_out, -np.inf, self.in_cd_end)
        self._set_complete_at(np.where(scale_out, finish, self.complete_at))

    def _decide_with_steps(self, k: int, t: float) -> None:
        """Target tracking and step policies on one target: the largest capacity wins (§8).

        Target tracking proposes as in :meth:`_decide` (its several-policy form); each step
        policy whose alarm calls it proposes its adjusted capacity. A scale-out takes the
        largest proposal above D; without one, a scale-in takes the largest proposal below D
        (target tracking's needing all its scale-in-enabled policies to agree).
        """
        st = self._steps
        assert st is not None
        d = self.desired
        dcol = d[:, None]
        hi, lo = self.max_capacity[:, None], self.min_capacity[:, None]
        high, low, low_invoked = self.alarm_high_on, self.alarm_low_on, self.alarm_low_on
        reinvoke = self._reinvoke_steps
        if reinvoke > 1:
            high = high & ((k - self.high_since) % reinvoke == 0)
            low_invoked = low & ((k - self.low_since) % reinvoke == 0)
        base = np.where(t < self.out_cd_end, self.out_base, d)
        x = base[:, None] * self.metric / self.target - self.choices.ceil_epsilon
        ask = high & (x > dcol) & (dcol < hi)  # NaN (no datapoint yet) compares False
        required = np.where(ask, np.minimum(np.ceil(x), hi), -np.inf)
        tt_out = required.max(axis=1)
        new_s, out_s, in_s = st.propose(k, t, d, self.min_capacity, self.max_capacity)
        step_out = np.where(out_s, new_s, -np.inf).max(axis=1)
        out_new = np.maximum(tt_out, step_out)
        wants_out = out_new > d
        scale_out = wants_out & self._idle
        if scale_out.any():
            finish = t + self._boot_delay()
            tt_asked = ask.any(axis=1)
            if self.record_events:
                self._record_winner(
                    scale_out, ScalingKind.OUT, out_new, required, new_s, out_s, finish
                )
            self.scale_out_count += scale_out
            cd = np.where(ask, self._out_cd, -np.inf).max(axis=1)
            # target tracking's cooldown starts only when one of its policies asked (§4.4)
            self._pending_base = np.where(scale_out & tt_asked, base, self._pending_base)
            self._pending_out_cd = np.where(
                scale_out, np.where(tt_asked, cd, np.nan), self._pending_out_cd
            )
            st.started_out(scale_out, out_s, d, t)
            self.desired = np.where(scale_out, out_new, d)
            self.in_cd_end = np.where(scale_out, -np.inf, self.in_cd_end)
            self._set_complete_at(np.where(scale_out, finish, self.complete_at))
        enabled = self.scale_in_enabled
        required_in = np.clip(np.ceil(x), lo, hi)
        agree = (low & (required_in < dcol)) | ~enabled
        tt_in = (
            agree.all(axis=1)
            & (low_invoked & enabled).any(axis=1)
            & self._any_enabled
            & (self.in_cd_end <= t)
        )
        tt_new = np.where(enabled, required_in, -np.inf).max(axis=1)
        in_new = np.maximum(
            np.where(tt_in, tt_new, -np.inf), np.where(in_s, new_s, -np.inf).max(axis=1)
        )
        scale_in = self._idle & ~wants_out & (in_new > -np.inf) & (in_new < d)
        if not scale_in.any():
            return
        if self.record_events:
            tt_required = np.where(enabled & tt_in[:, None], required_in, -np.inf)
            self._record_winner(scale_in, ScalingKind.IN, in_new, tt_required, new_s, in_s, t)
        self.scale_in_count += scale_in
        self.in_cd_end = np.where(scale_in & tt_in, t + self._in_cd_len, self.in_cd_end)
        self._in_cd_last = float(self.in_cd_end.max())
        st.started_in(scale_in, in_s, t)
        self.desired = np.where(scale_in, in_new, self.desired)
        self.in_service = np.where(scale_in, in_new, self.in_service)

    def _record_winner(
        self,
        mask: np.ndarray,
        kind: ScalingKind,
        to: np.ndarray,
        tt_values: np.ndarray,
        step_values: np.ndarray,
        step_asked: np.ndarray,
        finish: float | np.ndarray,
    ) -> None:
        """Record one activity per candidate, naming the policy whose capacity won."""
        st = self._steps
        assert st is not None
        finish = np.broadcast_to(finish, (self.C,))
        for i in np.flatnonzero(mask):
            tt_hit = np.flatnonzero(tt_values[i] == to[i])
            if tt_hit.size:
                cause = (
                    ScalingCause.ALARM_HIGH if kind is ScalingKind.OUT else ScalingCause.ALARM_LOW
                )
                name = str(self._names[i, int(tt_hit[0])])
            else:
                hit = np.flatnonzero(step_asked[i] & (step_values[i] == to[i]))
                cause, name = ScalingCause.STEP_ALARM, str(st.names[i, int(hit[0])])
            self._events.append(
                ScalingEvent(
                    int(i),
                    self.t_s,
                    kind,
                    int(self.desired[i]),
                    int(to[i]),
                    cause,
                    name,
                    float(finish[i]),
                )
            )


def _steps_of(group: Sequence[ScalingPolicy]) -> list[StepScalingPolicy]:
    return [s for p in group for s in p.step_policies]
