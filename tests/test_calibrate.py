"""Calibration analysis: step rates, per-step verdicts, the sustained rate (hand-made records)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from tuner.calibrate import (
    CalibrationSpec,
    Step,
    analyse_steps,
    bracket_rates,
    refine_rates,
    step_profile_toml,
    sustained,
)
from tuner.errors import ValidationError
from tuner.profiles import parse_profile


def _records(steps: list[Step], latency_ms: list[float], fail_share: list[float]) -> pd.DataFrame:
    rows = []
    for step, lat, share in zip(steps, latency_ms, fail_share, strict=True):
        n = int(round(step.rps * (step.end_s - step.start_s)))
        times = step.start_s + (np.arange(n) + 0.5) / step.rps
        every = int(round(1 / share)) if share else 0
        for i, t in enumerate(times):
            failed = bool(every) and i % every == 0  # spread out, so warm-up cuts no bias
            rows.append(
                {
                    "scheduled_s": t,
                    "latency_ms": np.nan if failed else lat,
                    "status": 0 if failed else 200,
                    "error": "timeout" if failed else "",
                }
            )
    return pd.DataFrame(rows)


def test_bracket_and_refine_rates() -> None:
    assert bracket_rates(1, 2, 20) == [1, 2, 4, 8, 16, 20]
    assert refine_rates(8, 16, 4) == [10, 12, 14, 16]


def test_step_profile_plays_the_rates() -> None:
    import tomllib

    text = step_profile_toml("cal", [1.5, 3, 6], 60)
    profile = parse_profile(tomllib.loads(text))
    assert profile.duration_s == 180
    assert np.allclose(profile.counts(60), [90, 180, 360])


def test_analysis_finds_highest_passing_step_before_first_failure() -> None:
    steps = [Step(i * 60.0, (i + 1) * 60.0, r) for i, r in enumerate([2, 4, 8, 16])]
    # 8 rps: p99 over the objective; 16 rps: errors. 4 rps is the last good step.
    records = _records(steps, [100, 150, 900, 200], [0, 0, 0, 0.2])
    table = analyse_steps(records, steps, slo_p99_ms=500, max_error_rate=0.01, warmup_share=0.25)
    assert table["passed"].tolist() == [True, True, False, False]
    # The warm-up quarter is left out: 45 s of 60 at 4 rps = 180 requests.
    assert table.loc[1, "sent"] == 180
    assert table.loc[3, "error_rate"] == pytest.approx(0.2, abs=0.01)
    assert table.loc[0, "p99_ms"] == 100
    assert sustained(table) == (4.0, 8.0)


def test_no_failure_and_failure_at_first_step() -> None:
    steps = [Step(0, 60, 1.0), Step(60, 120, 2.0)]
    ok = analyse_steps(_records(steps, [50, 60], [0, 0]), steps, slo_p99_ms=100, max_error_rate=0.0)
    assert sustained(ok) == (2.0, None)
    bad = analyse_steps(
        _records(steps, [500, 60], [0, 0]), steps, slo_p99_ms=100, max_error_rate=0.0
    )
    assert sustained(bad) == (None, 1.0)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"slo_p99_ms": 0}, "--slo-p99-ms > 0"),
        ({"slo_p99_ms": 100, "max_error_rate": 1.5}, "--max-error-rate must be in"),
        ({"slo_p99_ms": 100, "start_rps": 50, "max_rps": 10}, "0 < --start-rps < --max-rps"),
        ({"slo_p99_ms": 100, "factor": 1.0}, "--factor > 1"),
    ],
    ids=["slo", "error-rate", "start>max", "factor"],
)
def test_spec_validation(kwargs: dict[str, float], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        CalibrationSpec(endpoint="e", **kwargs)  # type: ignore[arg-type]
