"""Benchmark (``make bench``): tune on a window of a real trace, replay the window after it.

Each shared trace is scaled so that its median interval runs at 20 rps; default capacity (20 rps
per instance, boot 300 s), ``--slo-p99-ms 300``, ``--max-error-rate 0.001``. The hindsight
policy is the cheapest meeting the objective on both windows together, from a fine grid with
every MinCapacity up to the level that covers the peak (seed 0 to search, every seed to confirm).
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests.conftest import TRACES
from tuner.model import Capacity, SimulationSettings
from tuner.policy import ScalingPolicy
from tuner.profiles.profile import Profile
from tuner.profiles.profile_file import parse_profile
from tuner.tune import Objective, simulate_candidates, tune

pytestmark = pytest.mark.benchmark

CASES = [
    ("Twitter_volume_AAPL.csv", 14),
    ("Twitter_volume_AMZN.csv", 14),
    ("elb_request_count_8c0756.csv", 7),
    ("nyc_taxi.csv", 28),
]
OBJECTIVE = Objective(slo_p99_ms=300, max_error_rate=0.001)
SETTINGS = SimulationSettings()
CAPACITY = Capacity.default()


def window(csv: Path, start_days: int, days: int, name: str) -> Profile:
    frame = pd.read_csv(csv)
    step = pd.to_datetime(frame["timestamp"]).diff().median().total_seconds()
    scale = 20.0 * step / float(frame["invocations"].median())
    seg: dict[str, object] = {"replay": str(csv), "rate_scale": scale, "limit": f"{days * 24}h"}
    if start_days:
        seg["start"] = f"{start_days * 24}h"
    return parse_profile({"name": name, "segment": [seg]})


def outcome(profile: Profile, policies: list[ScalingPolicy], seed: int) -> pd.DataFrame:
    return simulate_candidates(profile, policies, CAPACITY, OBJECTIVE, SETTINGS, seed).summary


def meets(summary: pd.DataFrame) -> np.ndarray:
    """The objective itself (1% SLO violation, 0.1% errors), not the tuner's safety margin."""
    return np.asarray(
        (summary["slo_violation_rate"] <= OBJECTIVE.max_slo_violation)
        & (summary["error_rate"] <= OBJECTIVE.max_error_rate)
    )


def hindsight(both: Profile, peak_rps: float) -> tuple[ScalingPolicy | None, float]:
    """Cheapest policy meeting the objective on both windows, every seed; its cost there."""
    top = max(1, int(np.ceil(peak_rps / CAPACITY.max_rps_per_instance)))
    grid = [
        ScalingPolicy(
            min_capacity=mn,
            max_capacity=max(mn, int(np.ceil(peak_rps * 60 / t * 1.25))),
            target_value=t,
            scale_out_cooldown_s=0,
            scale_in_cooldown_s=sin,
        )
        for mn in range(1, top + 1)
        for t in np.round(np.arange(0.30, 0.951, 0.05) * 1200, 1)
        for sin in (300, 1800)
    ]
    costs, ok = [], []
    for i in range(0, len(grid), 600):
        s = outcome(both, grid[i : i + 600], 0)
        costs.append(s["cost_usd"].to_numpy())
        ok.append(meets(s))
    cost, good = np.concatenate(costs), np.concatenate(ok)
    for i in np.argsort(np.where(good, cost, np.inf)):
        if not good[i]:
            break
        if all(meets(outcome(both, [grid[i]], seed))[0] for seed in SETTINGS.seeds[1:]):
            return grid[i], float(cost[i])
    return None, float("nan")


def run_case(trace: str, days: int) -> dict[str, object]:
    """Tune on the first window, replay the next; the row of the benchmark's table."""
    csv = TRACES / trace
    train = window(csv, 0, days, "train")
    test = window(csv, days, days, "test")
    both = window(csv, 0, 2 * days, "both")
    t0 = time.perf_counter()
    tuning = tune([train], OBJECTIVE, capacity=CAPACITY, settings=SETTINGS)
    took = time.perf_counter() - t0
    rec = tuning.recommended
    per_seed = [outcome(test, [rec], seed).iloc[0] for seed in SETTINGS.seeds]
    worst_v = max(float(s["slo_violation_rate"]) for s in per_seed)
    worst_e = max(float(s["error_rate"]) for s in per_seed)
    ok = all(meets(pd.DataFrame([s]))[0] for s in per_seed)
    cost = float(np.mean([s["cost_usd"] for s in per_seed]))
    peak = float(both.counts(60.0).max() / 60.0)
    best, _ = hindsight(both, peak)
    # the hindsight policy's cost on the replayed window, for a like-for-like ratio
    h_cost = (
        float(np.mean([outcome(test, [best], s).iloc[0]["cost_usd"] for s in SETTINGS.seeds]))
        if best
        else float("nan")
    )
    tr, te = train.counts(60.0) / 60.0, test.counts(60.0) / 60.0
    w = 9  # minutes: boot 300 s + metric delay 60 s + three 60-s alarm datapoints
    row = {
        "trace": trace,
        "recommended": rec.label,
        "held_out_slo_violation": worst_v,
        "error_rate": worst_e,
        "meets_all_seeds": ok,
        "cost_usd": cost,
        "hindsight": best.label if best else "none",
        "hindsight_cost_usd": h_cost,
        "ratio": cost / h_cost if h_cost else float("nan"),
        "stress_level": tuning.validation.get("stress_level"),
        "folds_needed": [f["level"] for f in tuning.validation.get("folds", [])],
        # why a miss may be out of reach: the replayed window against everything tuned on
        "peak_ratio": float(te.max() / tr.max()),
        "rise_ratio": float((te[w:] - te[:-w]).max() / max((tr[w:] - tr[:-w]).max(), 1e-9)),
        "tune_s": took,
    }
    if not ok:
        row.update(out_of_reach(train, test, float(tr.max()), float(te.max()), cost))
    return row


def out_of_reach(
    train: Profile, test: Profile, train_peak: float, test_peak: float, cost: float
) -> dict[str, object]:
    """For a miss, the figures of the closing note: what meeting the replayed window takes,
    against what the training window could justify even at the top stress level."""
    # the cheapest policy meeting the replayed window alone (it has seen that window)
    seen, _ = hindsight(test, test_peak)
    seen_cost = (
        float(np.mean([outcome(test, [seen], s).iloc[0]["cost_usd"] for s in SETTINGS.seeds]))
        if seen
        else float("nan")
    )
    # what it does on the training window (a tuner must at least meet what it has seen)
    back = [outcome(train, [seen], s).iloc[0] for s in SETTINGS.seeds] if seen else []
    # the tuner held to its ceiling: stress scenarios from the training window at x3
    ceiling = tune([train], OBJECTIVE, capacity=CAPACITY, settings=SETTINGS, stress_level=3.0)
    runs = [outcome(test, [ceiling.recommended], seed).iloc[0] for seed in SETTINGS.seeds]
    return {
        "needs": seen.label if seen else "none",
        "needs_cost_usd": seen_cost,
        "needs_vs_recommended": seen_cost / cost,
        # standing capacity the replayed window needs, in multiples of the training peak
        "needs_min_rps_over_train_peak": (
            seen.min_capacity * CAPACITY.max_rps_per_instance / train_peak if seen else None
        ),
        "test_peak_over_train_peak": test_peak / train_peak,
        "needs_meets_train": bool(back) and all(meets(pd.DataFrame([r]))[0] for r in back),
        "needs_train_slo_violation": max((float(r["slo_violation_rate"]) for r in back), default=0),
        "x3_stress_policy": ceiling.recommended.label,
        "x3_stress_meets": all(meets(pd.DataFrame([r]))[0] for r in runs),
        "x3_stress_worst_error_rate": max(float(r["error_rate"]) for r in runs),
        "x3_stress_cost_usd": float(np.mean([r["cost_usd"] for r in runs])),
    }


def test_holdout_benchmark() -> None:
    if not TRACES.is_dir():
        pytest.skip(f"shared traces not found at {TRACES}")
    rows = []
    for trace, days in CASES:
        rows.append(run_case(trace, days))
        print(rows[-1], flush=True)
    table = pd.DataFrame(rows)
    shown = ["trace", "held_out_slo_violation", "error_rate", "cost_usd", "hindsight_cost_usd"]
    shown += ["ratio", "meets_all_seeds", "stress_level", "folds_needed", "tune_s"]
    with pd.option_context("display.width", 200, "display.max_columns", 20):
        print("\n" + table[shown].to_string(index=False, float_format=lambda x: f"{x:.4g}"))
    for row in rows:
        if not row["meets_all_seeds"]:
            print(
                f"\nmiss on {row['trace']}: the replayed window peaks at "
                f"{row['test_peak_over_train_peak']:.2f}x the training window's peak and rises "
                f"{row['rise_ratio']:.2f}x faster within one reaction time; the walk-forward "
                f"folds of the training window needed {row['folds_needed']}. Meeting it takes "
                f"{row['needs']} (standing capacity {row['needs_min_rps_over_train_peak']:.2f}x "
                f"the training peak, ${row['needs_cost_usd']:,.0f}, "
                f"{row['needs_vs_recommended']:.2f}x the recommendation), which "
                f"{'meets' if row['needs_meets_train'] else 'misses'} the objective on the "
                f"training window (SLO violation {100 * row['needs_train_slo_violation']:.2f}%); "
                f"the tuner held to its "
                f"top stress level (x3 of the training window's extremes) recommends "
                f"{row['x3_stress_policy']}, which "
                f"{'meets' if row['x3_stress_meets'] else 'still misses'} it (worst error "
                f"rate {100 * row['x3_stress_worst_error_rate']:.3f}%, "
                f"${row['x3_stress_cost_usd']:,.0f}, "
                f"{row['x3_stress_cost_usd'] / row['hindsight_cost_usd']:.2f}x hindsight)."
            )
    met = table["meets_all_seeds"] & (table["ratio"] <= 1.25)
    assert int(table["meets_all_seeds"].sum()) >= 3, table
    assert int(met.sum()) >= 3, table


def test_bench_tune_28_days_per_minute(tmp_path: Path) -> None:
    """`tuner tune` on 28 days of per-minute history, default search, validation, stress and
    the report: the whole command's wall time (the issue's budget is 30 s on 2 cores)."""
    if not TRACES.is_dir():
        pytest.skip(f"shared traces not found at {TRACES}")
    from tuner.cli import main

    frame = pd.read_csv(TRACES / "nyc_taxi.csv")
    stamps = pd.to_datetime(frame["timestamp"])
    start = stamps.iloc[0]
    # per minute: each 30-minute count spread over its minutes, scaled to a 20-rps median
    minutes = pd.date_range(start, start + pd.Timedelta(days=28), freq="min", inclusive="left")
    per_min = frame.set_index(stamps)["invocations"].reindex(minutes, method="ffill") / 30.0
    per_min *= 20.0 * 60.0 / float(per_min.median())
    csv = tmp_path / "history.csv"
    pd.DataFrame(
        {"timestamp": minutes.strftime("%Y-%m-%dT%H:%M:%SZ"), "invocations": per_min.to_numpy()}
    ).to_csv(csv, index=False)
    args = ["tune", "--profile", str(csv), "--slo-p99-ms", "300", "--max-error-rate", "0.001"]
    started = time.perf_counter()
    assert main([*args, "--out", str(tmp_path / "run")]) == 0
    took = time.perf_counter() - started
    from tuner.report.render import write_report

    started = time.perf_counter()
    write_report(tmp_path / "run")
    render = time.perf_counter() - started
    print(
        f"\ntune on 28 days of per-minute history, report included: {took:.1f} s "
        f"(of which the report about {render:.1f} s)"
    )
