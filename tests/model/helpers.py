"""What the model tests share: the scalar reference model's rules made from policies, and the
comparison of one vectorised candidate with the reference on a step-scaling scenario."""

from __future__ import annotations

from typing import Any

import scalar_model

from tuner.policy.policy import ScalingPolicy
from tuner.policy.step import StepScalingPolicy
from tuner.policy.tracking import MetricType


def tracking_rule(p: ScalingPolicy) -> scalar_model.Rule:
    """The target-tracking rule of ``p``; a concurrency metric (per model or per copy) is read
    as the 10-s stream."""
    return scalar_model.Rule(
        p.target_value,
        p.scale_out_cooldown_s,
        p.scale_in_cooldown_s,
        p.disable_scale_in,
        p.metric_type
        in (MetricType.CONCURRENT_REQUESTS_PER_MODEL, MetricType.CONCURRENT_REQUESTS_PER_COPY),
    )


def step_rule(s: StepScalingPolicy) -> scalar_model.StepRule:
    a = s.alarm
    stream = (
        "inv"
        if a.metric_name == "InvocationsPerInstance"
        else ("conc" if a.period_s == 10 else "conc60")
    )
    return scalar_model.StepRule(
        threshold=a.threshold,
        steps=[(x.lower, x.upper, x.scaling_adjustment) for x in s.steps],
        comparison={
            "GreaterThanOrEqualToThreshold": ">=",
            "GreaterThanThreshold": ">",
            "LessThanThreshold": "<",
            "LessThanOrEqualToThreshold": "<=",
        }[a.comparison],
        evaluation_periods=a.evaluation_periods,
        datapoints_to_alarm=a.datapoints_to_alarm,
        stream=stream,
        aggregation=s.metric_aggregation.value,
        adjustment_type=s.adjustment_type.value,
        min_magnitude=s.min_adjustment_magnitude or 0,
        cooldown_s=s.cooldown_s,
    )


def assert_matches_scalar(
    result: Any,
    i: int,
    p: ScalingPolicy,
    sc: dict[str, Any],
    rules: list[scalar_model.Rule],
    serving: scalar_model.Serving,
    where: str,
) -> scalar_model.Timeline:
    """Candidate ``i`` of a simulation of step scenario ``sc`` scales as the scalar model does
    (desired, in service, scale-out and scale-in counts); returns the reference."""
    ref = scalar_model.run(
        list(sc["demand"]),
        sc["step_s"],
        rules,
        p.min_capacity,
        p.max_capacity,
        lag_s=sc["lag_s"],
        boot_s=sc["boot_s"],
        initial=sc["initial"],
        scheduled=[(a.at_s, a.min_capacity, a.max_capacity) for a in sc["scheduled"]],
        serving=serving,
        step_rules=[step_rule(s) for s in p.step_policies],
    )
    assert result.desired[:, i].tolist() == ref.desired, where
    assert result.in_service[:, i].tolist() == ref.in_service, where
    row = result.summary.iloc[i]
    assert (row.scale_out_events, row.scale_in_events) == (ref.scale_outs, ref.scale_ins), where
    return ref
