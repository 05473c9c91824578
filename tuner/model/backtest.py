"""The model checked against an endpoint's own history: replay, compare, fit boot time and delay.

A :class:`Recording` is what AWS keeps about an endpoint over a window: per-minute Invocations,
the scaling activities (DescribeScalingActivities), the policies in force (one
:class:`PolicySpan` each) and the alarms target tracking created. :func:`replay` runs the
recorded demand through the one controller (:class:`tuner.model.controller.TargetTracking`) in
10-s steps, so a metric delay is resolved to 10 s, as the local emulator's autoscaler runs it;
:func:`compare` scores it minute by minute against the recorded desired capacity;
:func:`backtest` fits ``boot_s`` (median of scale-out activity start to end) and the metric delay
(the offset that best aligns the decision times) and reports both against the model defaults.

Usage::

    result = backtest(recording, defaults=ModelChoices(metric_lag_s=60, boot_s=300))
    result.fitted.boot_s, result.fitted.metric_lag_s, result.fitted_score.agreement
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import numpy as np
import pandas as pd

from tuner.errors import ValidationError
from tuner.model.controller import TargetTracking
from tuner.model.scaling import ModelChoices, ScalingKind
from tuner.policy.policy import ScalingPolicy

STEP_S = 10
MINUTE_S = 60
# A simulated decision further than this from a recorded one of the same kind is another event.
MATCH_WINDOW_S = 600.0
# Score of a missed or extra event, in seconds of decision-time error: worse than any match.
UNMATCHED_COST_S = MATCH_WINDOW_S
LAG_GRID_S = tuple(float(x) for x in range(0, 301, 10))


@dataclass(frozen=True)
class RecordedActivity:
    """One scaling activity as DescribeScalingActivities lists it (times in epoch seconds)."""

    start_s: float
    end_s: float | None
    """None while the activity is in progress (or when it failed)."""
    to_capacity: int
    status: str = "Successful"
    cause: str = ""


@dataclass(frozen=True)
class PolicySpan:
    """The policies in force on the target from ``from_s`` (epoch seconds) until the next span."""

    from_s: float
    policies: tuple[ScalingPolicy, ...]


@dataclass(frozen=True)
class Recording:
    """What AWS recorded about one endpoint variant over a window of whole minutes."""

    start_s: float
    """Epoch seconds of the first minute (a whole minute)."""
    invocations: np.ndarray
    """Invocations per minute from ``start_s``."""
    activities: tuple[RecordedActivity, ...]
    spans: tuple[PolicySpan, ...]
    initial_capacity: int
    """Desired capacity at ``start_s`` (before the first activity of the window)."""
    choices: ModelChoices | None = None
    """Alarm shape read from the alarms AWS created; None: the model's defaults."""
    alarm_notes: tuple[str, ...] = ()
    """Where the alarms as created differ from the model's defaults, one sentence each."""
    warmup_s: float = 0.0
    """Left out of the scores: the model's alarms start empty at ``start_s`` while AWS's had
    history, so the first decisions of a window cut from a longer history cannot agree."""

    def __post_init__(self) -> None:
        if not self.spans:
            raise ValidationError("a backtest needs the policy in force, got none")
        if len(self.invocations) < 2:
            raise ValidationError(
                f"a backtest needs at least 2 minutes of Invocations, got {len(self.invocations)}"
            )
        if self.initial_capacity < 0:
            raise ValidationError(f"initial capacity >= 0 must hold, got {self.initial_capacity}")

    @property
    def minutes(self) -> int:
        return len(self.invocations)

    def policies_at(self, t_s: float) -> tuple[ScalingPolicy, ...]:
        """The span in force at epoch ``t_s``; before the first span, the first one."""
        chosen = self.spans[0]
        for span in sorted(self.spans, key=lambda s: s.from_s):
            if span.from_s <= t_s:
                chosen = span
        return chosen.policies


@dataclass(frozen=True)
class Decision:
    """A change of desired capacity at ``t_s`` (seconds from the recording's start)."""

    t_s: float
    kind: ScalingKind
    from_capacity: int
    to_capacity: int


def recorded_decisions(rec: Recording) -> list[Decision]:
    """The recorded activities as capacity changes, oldest first (no-change activities dropped)."""
    out: list[Decision] = []
    d = rec.initial_capacity
    for a in sorted(rec.activities, key=lambda a: a.start_s):
        if a.status in ("Failed", "Unfulfilled") or a.to_capacity == d:
            continue
        kind = ScalingKind.OUT if a.to_capacity > d else ScalingKind.IN
        out.append(Decision(a.start_s - rec.start_s, kind, d, a.to_capacity))
        d = a.to_capacity
    return out


def boot_samples_s(rec: Recording) -> np.ndarray:
    """Start-to-end seconds of every completed recorded scale-out."""
    ends = {
        (a.start_s, a.to_capacity): a.end_s
        for a in rec.activities
        if a.end_s is not None and a.status == "Successful"
    }
    samples = [
        ends[(rec.start_s + d.t_s, d.to_capacity)] - (rec.start_s + d.t_s)
        for d in recorded_decisions(rec)
        if d.kind is ScalingKind.OUT and ends.get((rec.start_s + d.t_s, d.to_capacity)) is not None
    ]
    return np.array(samples, dtype=float)


def desired_per_minute(initial: int, decisions: Sequence[Decision], minutes: int) -> np.ndarray:
    """Desired capacity at the end of each minute (after every decision up to and at its end)."""
    ends = (np.arange(minutes) + 1) * MINUTE_S
    out = np.full(minutes, float(initial))
    for d in sorted(decisions, key=lambda d: d.t_s):
        out[ends >= d.t_s] = d.to_capacity
    return out


def replay(rec: Recording, *, metric_lag_s: float, boot_s: float) -> list[Decision]:
    """The model's decisions on the recorded demand, with this delay and boot time."""
    base = rec.choices or ModelChoices()
    choices = replace(base, metric_lag_s=metric_lag_s, boot_s=boot_s)
    policies = rec.policies_at(rec.start_s)
    tt = TargetTracking(
        [list(policies)],
        choices=choices,
        initial_capacity=rec.initial_capacity,
        step_s=STEP_S,
    )
    per_step = np.repeat(np.asarray(rec.invocations, dtype=float) / (MINUTE_S / STEP_S), 6)
    changes = sorted(s.from_s - rec.start_s for s in rec.spans if s.from_s > rec.start_s)
    for k, count in enumerate(per_step):
        while changes and changes[0] <= k * STEP_S:
            t = changes.pop(0)
            tt.set_policies([list(rec.policies_at(rec.start_s + t))])
        n = float(tt.in_service[0])
        tt.advance(k, count / max(1.0, n))
    return [
        Decision(e.t_s, e.kind, e.from_capacity, e.to_capacity)
        for e in tt.events
        if e.to_capacity != e.from_capacity
    ]


@dataclass(frozen=True)
class Score:
    """How one replay compares with the record, minute by minute and event by event."""

    metric_lag_s: float
    boot_s: float
    agreement: float
    """Share of minutes whose simulated desired capacity equals the recorded one."""
    scale_out_errors_s: tuple[float, ...]
    """Simulated minus recorded time of each matched scale-out decision."""
    scale_in_errors_s: tuple[float, ...]
    missed: int
    """Recorded changes the model did not make (within the match window)."""
    extra: int
    """Changes the model made that the record does not show."""
    simulated: tuple[Decision, ...] = field(repr=False)
    simulated_desired: np.ndarray = field(repr=False)

    @property
    def cost_s(self) -> float:
        """Mean absolute decision-time error with each missed or extra event as a full window."""
        errors = np.abs(np.array(self.scale_out_errors_s + self.scale_in_errors_s))
        n = len(errors) + self.missed + self.extra
        return float((errors.sum() + UNMATCHED_COST_S * (self.missed + self.extra)) / max(1, n))

    @property
    def mean_scale_out_error_s(self) -> float:
        return float(np.mean(self.scale_out_errors_s)) if self.scale_out_errors_s else math.nan

    @property
    def mean_abs_error_s(self) -> float:
        """Mean absolute decision-time error of the matched scale-outs and scale-ins."""
        errors = self.scale_out_errors_s + self.scale_in_errors_s
        return float(np.mean(np.abs(errors))) if errors else math.nan


def _match(
    recorded: Sequence[Decision], simulated: Sequence[Decision]
) -> tuple[list[float], int, int]:
    """Pairs each recorded decision with the nearest unused simulated one of its kind, in order."""
    used: set[int] = set()
    errors: list[float] = []
    for r in recorded:
        best, best_gap = -1, MATCH_WINDOW_S
        for i, s in enumerate(simulated):
            gap = abs(s.t_s - r.t_s)
            if i not in used and s.kind is r.kind and gap <= best_gap:
                best, best_gap = i, gap
        if best >= 0:
            used.add(best)
            errors.append(simulated[best].t_s - r.t_s)
        else:
            errors.append(math.nan)
    missed = sum(1 for e in errors if math.isnan(e))
    return errors, missed, len(simulated) - len(used)


def scored_minutes(rec: Recording) -> np.ndarray:
    """(minutes,) bool: the minutes the scores count (those that end after the warm-up)."""
    return (np.arange(rec.minutes) + 1) * MINUTE_S > rec.warmup_s


def compare(rec: Recording, *, metric_lag_s: float, boot_s: float) -> Score:
    """Replay with these values and score the replay against the record (after the warm-up)."""
    recorded = recorded_decisions(rec)
    simulated = replay(rec, metric_lag_s=metric_lag_s, boot_s=boot_s)
    want = desired_per_minute(rec.initial_capacity, recorded, rec.minutes)
    got = desired_per_minute(rec.initial_capacity, simulated, rec.minutes)
    scored = scored_minutes(rec)
    late = [d for d in recorded if d.t_s >= rec.warmup_s]
    sim_late = [d for d in simulated if d.t_s >= rec.warmup_s]
    outs = [d for d in late if d.kind is ScalingKind.OUT]
    ins = [d for d in late if d.kind is ScalingKind.IN]
    out_err, out_missed, out_extra = _match(
        outs, [d for d in sim_late if d.kind is ScalingKind.OUT]
    )
    in_err, in_missed, in_extra = _match(ins, [d for d in sim_late if d.kind is ScalingKind.IN])
    return Score(
        metric_lag_s=metric_lag_s,
        boot_s=boot_s,
        agreement=float(np.mean(want[scored] == got[scored])),
        scale_out_errors_s=tuple(e for e in out_err if not math.isnan(e)),
        scale_in_errors_s=tuple(e for e in in_err if not math.isnan(e)),
        missed=out_missed + in_missed,
        extra=out_extra + in_extra,
        simulated=tuple(simulated),
        simulated_desired=got,
    )


@dataclass(frozen=True)
class Fitted:
    """The fitted model values, each with its uncertainty (one standard error)."""

    boot_s: float
    """Median start-to-end time of the recorded scale-outs."""
    boot_spread_s: float
    """Interquartile range of those times (0 with one sample)."""
    boot_uncertainty_s: float
    """Standard error of the median: 1.2533 x sd / sqrt(n), at least 5 s (10-s resolution)."""
    boot_samples: int
    metric_lag_s: float
    """The metric delay whose replay best aligns the decision times."""
    metric_lag_uncertainty_s: float
    """Standard error of the mean decision-time error there, with the 10-s grid's own error."""
    metric_lag_samples: int


@dataclass(frozen=True)
class BacktestResult:
    """The fit, and the replay with the fitted values beside the one with the defaults."""

    fitted: Fitted
    fitted_score: Score
    default_score: Score
    defaults: ModelChoices
    recorded: tuple[Decision, ...]
    recorded_desired: np.ndarray
    lag_scan: tuple[Score, ...]
    """One replay per candidate delay (the fitted boot time), in the order scanned."""
    notes: tuple[str, ...]
    warmup_s: float = 0.0

    def minutes_table(self, start_s: float) -> pd.DataFrame:
        """Per minute: recorded and simulated (fitted, default) desired capacity."""
        n = len(self.recorded_desired)
        stamps = pd.to_datetime(start_s + np.arange(n) * MINUTE_S, unit="s", utc=True)
        return pd.DataFrame(
            {
                "timestamp": stamps.strftime("%Y-%m-%dT%H:%M:%SZ"),
                "t_s": np.arange(n) * MINUTE_S,
                "recorded_desired": self.recorded_desired.astype(int),
                "simulated_desired": self.fitted_score.simulated_desired.astype(int),
                "default_desired": self.default_score.simulated_desired.astype(int),
                "scored": (np.arange(n) + 1) * MINUTE_S > self.warmup_s,
            }
        )


def fit_boot(rec: Recording, default_s: float) -> tuple[float, float, float, int]:
    """(median, IQR, standard error of the median, samples); the default when there is none."""
    samples = boot_samples_s(rec)
    if not len(samples):
        return default_s, math.nan, math.inf, 0
    median = float(np.median(samples))
    q1, q3 = np.percentile(samples, [25, 75])
    sd = float(np.std(samples, ddof=1)) if len(samples) > 1 else math.inf
    se = max(STEP_S / 2, 1.2533 * sd / math.sqrt(len(samples)))
    return median, float(q3 - q1), se, len(samples)


def backtest(
    rec: Recording,
    *,
    defaults: ModelChoices,
    lags_s: Sequence[float] = LAG_GRID_S,
) -> BacktestResult:
    """Fit boot time and metric delay to the record; score the fit and the defaults."""
    if not lags_s:
        raise ValidationError("lags_s must hold at least one delay to try")
    notes = list(rec.alarm_notes)
    if rec.warmup_s > 0:
        notes.append(
            f"the first {rec.warmup_s / 60:g} minutes are left out of the scores: the policy was "
            "in force before the window, and the model's alarms start without its history"
        )
    boot, spread, boot_se, n_boot = fit_boot(rec, defaults.boot_s)
    if n_boot == 0:
        notes.append(
            f"no completed scale-out in the window: boot_s is not fitted (kept {boot:g} s)"
        )
    scan = tuple(compare(rec, metric_lag_s=float(lag), boot_s=boot) for lag in lags_s)
    # least decision-time cost, then most agreement, then the delay nearest the default
    best = min(
        scan,
        key=lambda s: (
            round(s.cost_s, 6),
            -s.agreement,
            abs(s.metric_lag_s - defaults.metric_lag_s),
        ),
    )
    errors = np.array(best.scale_out_errors_s + best.scale_in_errors_s)
    grid = float(np.min(np.diff(sorted(lags_s)))) if len(lags_s) > 1 else float(STEP_S)
    grid_se = grid / math.sqrt(12)
    if len(errors) >= 2:
        lag_se = math.hypot(float(np.std(errors, ddof=1)) / math.sqrt(len(errors)), grid_se)
    else:
        lag_se = math.inf
        notes.append(
            f"{len(errors)} matched decision(s): the metric delay is not identifiable "
            f"from this window"
        )
    fitted = Fitted(
        boot_s=boot,
        boot_spread_s=spread,
        boot_uncertainty_s=boot_se,
        boot_samples=n_boot,
        metric_lag_s=best.metric_lag_s,
        metric_lag_uncertainty_s=lag_se,
        metric_lag_samples=len(errors),
    )
    recorded = recorded_decisions(rec)
    return BacktestResult(
        fitted=fitted,
        fitted_score=best,
        default_score=compare(rec, metric_lag_s=defaults.metric_lag_s, boot_s=defaults.boot_s),
        defaults=defaults,
        recorded=tuple(recorded),
        recorded_desired=desired_per_minute(rec.initial_capacity, recorded, rec.minutes),
        lag_scan=scan,
        notes=tuple(notes),
        warmup_s=rec.warmup_s,
    )
