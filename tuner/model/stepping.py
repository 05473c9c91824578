"""Step-scaling policies for the controller: their alarms, steps, adjustments and cooldowns.

State is numpy arrays over (candidate, step-policy slot); :class:`tuner.model.controller.
TargetTracking` owns one :class:`StepPolicies` only when some candidate has a step policy, so
the target-tracking-only path pays nothing. The rules, from the Application Auto Scaling
documentation (reference/target-tracking.md §8) and, where it is silent, from
:class:`tuner.model.scaling.ModelChoices`:

- the alarm: the newest ``EvaluationPeriods`` visible datapoints of its metric; ALARM when at
  least ``DatapointsToAlarm`` of them breach (CloudWatch "M out of N"); before the first
  datapoint the alarm is INSUFFICIENT_DATA and never acts;
- the value the steps are chosen by is ``MetricAggregationType`` (Average, Minimum, Maximum) of
  those datapoints; the step is the one whose interval contains value - threshold. API
  StepAdjustment: "If the metric value is above the breach threshold, the lower bound is
  inclusive ... the upper bound is exclusive"; below it, the lower bound is exclusive and the
  upper inclusive;
- adjustments: ChangeInCapacity adds, ExactCapacity sets, PercentChangeInCapacity adds that
  percentage of the current capacity rounded as ModelChoices says, at least
  ``MinAdjustmentMagnitude`` ("25 percent of 4 is 1 ... MinAdjustmentMagnitude of 2 ... scales
  out by 2", API StepScalingPolicyConfiguration);
- Cooldown (API StepScalingPolicyConfiguration, "Cooldown"): after a step scale-out the policy
  "won't increase the desired capacity again unless either a larger scale out is triggered or
  the cooldown period ends", and meanwhile "capacity added by the initiating scale-out activity
  is calculated as part of the desired capacity for the next scale-out": the adjustment applies
  to the capacity before the initiating scale-out (+2 then +3 adds 1). Scale-ins are blocked
  until the policy's scale-in cooldown expires; a scale-out ends it.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from tuner.errors import PolicyError
from tuner.policy.alarm import Comparison
from tuner.policy.step import AdjustmentType, MetricAggregation, StepScalingPolicy

# (MetricName, Period) -> stream: "inv" 60-s InvocationsPerInstance sums, "conc" 10-s peaks of
# ConcurrentRequestsPerModel, "conc60" the peak of six of those, "nocap" 60-s and "nocap10"
# 10-s sums of NoCapacityInvocationFailures (requests an inference component at zero copies
# refused; the controller's ``no_capacity_failures`` input).
_INVOCATIONS = {"InvocationsPerInstance", "InvocationsPerCopy"}
_CONCURRENCY = {"ConcurrentRequestsPerModel", "ConcurrentRequestsPerCopy"}
NO_CAPACITY_METRIC = "NoCapacityInvocationFailures"
NO_CAPACITY_STREAMS = {"nocap", "nocap10"}
_CMP = {c: i for i, c in enumerate(Comparison)}
_AGG = {a: i for i, a in enumerate(MetricAggregation)}
_ADJ = {a: i for i, a in enumerate(AdjustmentType)}


def stream_of(step: StepScalingPolicy) -> str:
    """The controller stream a step policy's alarm reads, or PolicyError if it is not modelled."""
    a = step.alarm
    where = f"StepScalingPolicies[{step.name}].Alarm"
    if a.metric_name in _INVOCATIONS:
        # SageMaker publishes InvocationsPerInstance once a minute: every statistic of a 60-s
        # period is that one value (ModelChoices.step_invocation_statistics).
        if a.period_s != 60 or a.statistic not in {"Sum", "Average", "Minimum", "Maximum"}:
            raise PolicyError(
                f"{where}: {a.metric_name} is modelled with Period 60 and Statistic Sum, "
                f"Average, Minimum or Maximum, got Period {a.period_s} and {a.statistic}"
            )
        return "inv"
    if a.metric_name in _CONCURRENCY:
        if a.statistic != "Maximum" or a.period_s not in (10, 60):
            raise PolicyError(
                f"{where}: {a.metric_name} is modelled with Statistic Maximum and Period 10 or "
                f"60, got {a.statistic} and {a.period_s}"
            )
        return "conc" if a.period_s == 10 else "conc60"
    if a.metric_name == NO_CAPACITY_METRIC:
        if a.statistic != "Sum" or a.period_s not in (10, 60):
            raise PolicyError(
                f"{where}: {a.metric_name} is modelled with Statistic Sum and Period 10 or 60, "
                f"got {a.statistic} and {a.period_s}"
            )
        return "nocap" if a.period_s == 60 else "nocap10"
    allowed = ", ".join(sorted(_INVOCATIONS | _CONCURRENCY | {NO_CAPACITY_METRIC}))
    raise PolicyError(
        f"{where}.MetricName must be one of {allowed} to be modelled, got {a.metric_name}"
    )


def round_percent(raw: np.ndarray) -> np.ndarray:
    """PercentChangeInCapacity's change rounded: > 1 down, (0, 1] to 1, and mirrored below 0."""
    mag = np.abs(raw)
    rounded = np.where(mag > 1, np.floor(mag), np.where(mag > 0, 1.0, 0.0))
    out: np.ndarray = np.sign(raw) * rounded
    return out


class StepPolicies:
    """Step policies of C candidates in S slots (shorter lists padded with inactive slots)."""

    def __init__(
        self,
        steps: Sequence[Sequence[StepScalingPolicy]],
        *,
        step_s: int,
        reinvoke_steps: int,
    ) -> None:
        C = len(steps)
        S = max(1, max(len(g) for g in steps))
        K = max(1, max((len(s.steps) for g in steps for s in g), default=1))
        N = max(1, max((s.alarm.evaluation_periods for g in steps for s in g), default=1))
        self.C, self.S, self.N = C, S, N
        self.policies = [list(g) for g in steps]
        shape = (C, S)
        self.active = np.zeros(shape, dtype=bool)
        self.stream = np.full(shape, "", dtype=object)
        self.threshold = np.zeros(shape)
        self.cmp = np.zeros(shape, dtype=np.int8)
        self.need = np.ones(shape)
        self.window = np.ones(shape, dtype=np.int64)
        self.agg = np.zeros(shape, dtype=np.int8)
        self.adj_type = np.zeros(shape, dtype=np.int8)
        self.min_mag = np.zeros(shape)
        self.cooldown = np.zeros(shape)
        self.lower = np.full((C, S, K), np.nan)
        self.upper = np.full((C, S, K), np.nan)
        self.adjust = np.zeros((C, S, K))
        self.names = np.full(shape, "", dtype=object)
        for i, g in enumerate(steps):
            for j, s in enumerate(g):
                stream = stream_of(s)
                if stream in ("conc", "nocap10") and step_s != 10:
                    raise PolicyError(f"a 10-s alarm needs 10-s steps, got {step_s}")
                self.active[i, j] = True
                self.stream[i, j] = stream
                self.threshold[i, j] = s.alarm.threshold
                self.cmp[i, j] = _CMP[s.alarm.comparison]
                self.need[i, j] = s.alarm.datapoints_to_alarm
                self.window[i, j] = s.alarm.evaluation_periods
                self.agg[i, j] = _AGG[s.metric_aggregation]
                self.adj_type[i, j] = _ADJ[s.adjustment_type]
                self.min_mag[i, j] = s.min_adjustment_magnitude or 0
                self.cooldown[i, j] = s.cooldown_s
                self.names[i, j] = s.name
                for q, st in enumerate(s.steps):
                    self.lower[i, j, q] = -np.inf if st.lower is None else st.lower
                    self.upper[i, j, q] = np.inf if st.upper is None else st.upper
                    self.adjust[i, j, q] = st.scaling_adjustment
        self.above = self.cmp <= _CMP[Comparison.GREATER]
        self.streams = {str(x) for x in self.stream[self.active]}
        self._in_window = np.arange(N)[None, None, :] < self.window[:, :, None]
        self._reinvoke = reinvoke_steps
        # state
        self.values = np.full((C, S, N), np.nan)
        """Newest visible datapoints per slot, newest first (NaN: none yet)."""
        self.alarm_on = np.zeros(shape, dtype=bool)
        self.since = np.zeros(shape, dtype=np.int64)
        self.out_cd_end = np.full(shape, -np.inf)
        self.out_base = np.zeros(shape)
        self.in_cd_end = np.full(shape, -np.inf)
        self._pending = np.zeros(shape, dtype=bool)
        self._pending_base = np.zeros(shape)
        self._conc_peak = np.zeros(C)
        self._conc_count = 0

    @property
    def needs_concurrency(self) -> bool:
        return bool(self.streams & {"conc", "conc60"})

    @property
    def needs_no_capacity(self) -> bool:
        """Whether some alarm reads NoCapacityInvocationFailures."""
        return bool(self.streams & NO_CAPACITY_STREAMS)

    # -- alarms ----------------------------------------------------------------------------------

    def observe(self, stream: str, value: np.ndarray, k: int) -> None:
        """A datapoint of ``stream`` became visible at the boundary closing step k."""
        if stream == "conc" and "conc60" in self.streams:
            np.maximum(self._conc_peak, value, out=self._conc_peak)
            self._conc_count += 1
            if self._conc_count % 6 == 0:  # 10-s datapoints from t = 0: a minute is complete
                self._push("conc60", self._conc_peak.copy(), k)
                self._conc_peak[:] = 0.0
        if stream in self.streams:
            self._push(stream, value, k)

    def _push(self, stream: str, value: np.ndarray, k: int) -> None:
        mask = self.active & (self.stream == stream)
        shifted = np.empty_like(self.values)
        shifted[:, :, 1:] = self.values[:, :, :-1]
        shifted[:, :, 0] = value[:, None]
        self.values = np.where(mask[:, :, None], shifted, self.values)
        v, thr = self.values, self.threshold[:, :, None]
        with np.errstate(invalid="ignore"):
            breach = np.select(
                [self.cmp[:, :, None] == c for c in range(4)],
                [v >= thr, v > thr, v < thr, v <= thr],
            )
        breach &= self._in_window & ~np.isnan(v)
        on = (breach.sum(axis=2) >= self.need) & mask | (self.alarm_on & ~mask)
        self.since = np.where(on & ~self.alarm_on, k, self.since)
        self.alarm_on = on

    def aggregated(self) -> np.ndarray:
        """(C, S) MetricAggregationType of the datapoints in each alarm's evaluation window."""
        v = self.values
        seen = self._in_window & ~np.isnan(v)
        n = np.maximum(seen.sum(axis=2), 1)
        avg = np.where(seen, v, 0.0).sum(axis=2) / n
        lo = np.where(seen, v, np.inf).min(axis=2)
        hi = np.where(seen, v, -np.inf).max(axis=2)
        return np.choose(self.agg, [avg, lo, hi])

    # -- decisions -------------------------------------------------------------------------------

    def propose(
        self,
        k: int,
        t: float,
        desired: np.ndarray,
        min_capacity: np.ndarray,
        max_capacity: np.ndarray,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(new capacity, asks to scale out, asks to scale in), each (C, S), at boundary t."""
        invoked = self.alarm_on & ((k - self.since) % self._reinvoke == 0)
        if not invoked.any():
            none = np.zeros_like(invoked)
            return np.zeros(invoked.shape), none, none
        delta = (self.aggregated() - self.threshold)[:, :, None]
        above = self.above[:, :, None]
        within = np.where(
            above,
            (self.lower <= delta) & (delta < self.upper),
            (self.lower < delta) & (delta <= self.upper),
        )
        has = within.any(axis=2) & invoked
        adj = np.where(within, self.adjust, 0.0).sum(axis=2)  # at most one step contains delta
        d = desired[:, None]
        base = np.where((t < self.out_cd_end) & (adj > 0), self.out_base, d)
        pct = round_percent(base * adj / 100.0)
        pct = np.sign(adj) * np.maximum(np.abs(pct), self.min_mag)
        new = np.choose(self.adj_type, [base + adj, base + pct, np.broadcast_to(adj, base.shape)])
        new = np.clip(new, min_capacity[:, None], max_capacity[:, None])
        # a positive adjustment only adds and a negative one only removes (from a cooldown's
        # base, +50% may come to less than D: no change); ExactCapacity goes either way
        exact = self.adj_type == _ADJ[AdjustmentType.EXACT_CAPACITY]
        out = has & (new > d) & ((adj > 0) | exact)
        in_ = has & (new < d) & ((adj < 0) | exact) & (self.in_cd_end <= t)
        return new, out, in_

    def started_out(
        self, scale_out: np.ndarray, out: np.ndarray, desired: np.ndarray, t: float
    ) -> None:
        """A scale-out began for ``scale_out`` candidates; ``out`` slots asked for it."""
        asked = out & scale_out[:, None]
        base = np.where(t < self.out_cd_end, self.out_base, desired[:, None])
        self._pending = np.where(scale_out[:, None], asked, self._pending)
        self._pending_base = np.where(asked, base, self._pending_base)
        self.in_cd_end = np.where(scale_out[:, None], -np.inf, self.in_cd_end)

    def completed(self, done: np.ndarray, t: float) -> None:
        """Boots completed: the cooldown of each step policy that asked starts now."""
        start = self._pending & done[:, None]
        self.out_cd_end = np.where(start, t + self.cooldown, self.out_cd_end)
        self.out_base = np.where(start, self._pending_base, self.out_base)
        self._pending = self._pending & ~done[:, None]

    def cancel_pending(self, mask: np.ndarray) -> None:
        self._pending = self._pending & ~mask[:, None]

    def started_in(self, scale_in: np.ndarray, in_: np.ndarray, t: float) -> None:
        asked = in_ & scale_in[:, None]
        self.in_cd_end = np.where(asked, t + self.cooldown, self.in_cd_end)
