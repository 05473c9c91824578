"""The candidate family "target tracking plus a step scale-out companion".

Target tracking scales out only after 3 datapoints above its target plus the metric delay; a
step policy on its own alarm with 1 of 1 datapoints and a high threshold adds capacity a few
minutes sooner on a flash spike. Such a companion can let a cheaper target-tracking policy
(lower MinCapacity, higher target) meet the objective. So the family is generated from the
target-tracking candidates that are cheaper than the best one meeting the objective but miss
it, nearest misses first: each gets a companion per threshold x adjustment x cooldown.
The pipeline ranks them with the rest; a companion wins only when it is strictly cheaper at the
same objective (ties go to target tracking alone, the simpler policy).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

import pandas as pd

from tuner.errors import ValidationError
from tuner.policy.alarm import StepAlarm
from tuner.policy.policy import ScalingPolicy
from tuner.policy.step import AdjustmentType, StepAdjustment, StepScalingPolicy
from tuner.policy.tracking import MetricType

COMPANION_NAME = "tuner-step-scale-out"


@dataclass(frozen=True, kw_only=True)
class CompanionGrid:
    """What the step companions of the target-tracking candidates try."""

    threshold_factors: tuple[float, ...] = (1.25, 1.5, 2.0, 3.0)
    """Alarm threshold = the base policy's TargetValue x this (InvocationsPerInstance)."""
    change_adjustments: tuple[int, ...] = (1, 2, 4, 8)
    """ChangeInCapacity steps tried (instances added per call)."""
    percent_adjustments: tuple[int, ...] = (100,)
    """PercentChangeInCapacity steps tried."""
    cooldowns_s: tuple[int, ...] = (120,)
    bases: int = 40
    """How many target-tracking candidates get companions (the nearest misses)."""

    def __post_init__(self) -> None:
        if any(f <= 1 for f in self.threshold_factors):
            raise ValidationError(
                f"companion threshold_factors > 1 must hold, got {list(self.threshold_factors)}"
            )
        if any(a < 1 for a in (*self.change_adjustments, *self.percent_adjustments)):
            raise ValidationError("companion adjustments >= 1 must hold")
        if self.bases < 1:
            raise ValidationError(f"companion bases >= 1 must hold, got {self.bases}")

    def to_dict(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    def companions(self, base: ScalingPolicy) -> list[ScalingPolicy]:
        """``base`` with each companion of the grid beside it."""
        if base.target_value is None:
            raise ValidationError(f"a step companion needs target tracking beside it: {base.label}")
        kinds = [(AdjustmentType.CHANGE_IN_CAPACITY, a) for a in self.change_adjustments] + [
            (AdjustmentType.PERCENT_CHANGE_IN_CAPACITY, a) for a in self.percent_adjustments
        ]
        out = []
        for factor in self.threshold_factors:
            for kind, adjustment in kinds:
                for cooldown in self.cooldowns_s:
                    step = StepScalingPolicy(
                        name=COMPANION_NAME,
                        alarm=StepAlarm(
                            threshold=round(base.target_value * factor, 3),
                            evaluation_periods=1,
                            datapoints_to_alarm=1,
                        ),
                        steps=(StepAdjustment(adjustment, 0.0, None),),
                        adjustment_type=kind,
                        cooldown_s=cooldown,
                    )
                    out.append(base.replace(step_policies=(step,)))
        return out


def companion_candidates(
    table: pd.DataFrame, policies: Mapping[str, ScalingPolicy], grid: CompanionGrid
) -> list[ScalingPolicy]:
    """Companions of the nearest-missing target-tracking candidates cheaper than the best."""
    rows = table.set_index("candidate")
    plain = [
        label
        for label in rows.index
        if not policies[label].step_policies
        and policies[label].metric_type is MetricType.INVOCATIONS_PER_INSTANCE
    ]
    rows = rows.loc[plain]
    meeting = rows[rows["meets_objective"]]
    if len(meeting):
        rows = rows[rows["monthly_cost_usd"] < meeting["monthly_cost_usd"].min()]
    bases = rows.sort_values(["slo_violation_rate", "monthly_cost_usd"]).index[: grid.bases]
    return [c for label in bases for c in grid.companions(policies[label])]
