"""`tuner backtest` end to end on the local AWS, whose boot time and metric delay it is not told.

The emulator runs with ``metric_lag_s=90`` and a capacity with ``boot_s=420``; virtual hours of a
real load balancer's request count (``elb_request_count_8c0756.csv`` played at double speed) are
sent to its endpoint over real HTTP at 320x, then `tuner backtest --endpoint` reads CloudWatch,
the scaling activities, the policy and the alarms back through boto3 and must recover both values
and reproduce the recorded desired capacity minute by minute. The default suite plays two virtual
hours (about 22 s of traffic); `make bench` also plays three and runs `tuner tune --backtest`
on that endpoint (marked slow).
"""

from __future__ import annotations

import datetime as dt
import http.client
import json
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import boto3
import numpy as np
import pandas as pd
import pytest

from tests.conftest import TRACES, local_aws_env
from tuner.emulator import EmulatorConfig, LocalAws
from tuner.model.capacity import Capacity
from tuner.policy.policy import ScalingPolicy
from tuner.policy.resource import Resource
from tuner.profiles.profile_file import parse_profile

SPEED = 320.0
ENDPOINT = "bt-endpoint"
TRUE_BOOT_S = 420
TRUE_LAG_S = 90
HIDDEN = Capacity.from_dict(
    {
        "instance_type": "ml.m5.large",
        "hourly_usd": 0.115,
        "boot_s": TRUE_BOOT_S,
        "max_rps_per_instance": 5.0,
        "timeout_ms": 20000,
        "latency_ms": [{"rps": 1, "p50": 40, "p99": 90}, {"rps": 5, "p50": 50, "p99": 120}],
    }
)
POLICY = ScalingPolicy(
    min_capacity=1,
    max_capacity=8,
    target_value=15.0,
    scale_out_cooldown_s=60,
    scale_in_cooldown_s=120,
    name="bt-target-tracking",
)
TRACE = TRACES / "elb_request_count_8c0756.csv"


def _send(port: int, times_real: np.ndarray, errors: list[str]) -> None:
    """POST one InvokeEndpoint per due time (real epoch seconds), on one kept-alive connection."""
    import time

    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    path = f"/endpoints/{ENDPOINT}/invocations"
    try:
        for due in times_real:
            wait = due - time.time()
            if wait > 0:
                time.sleep(wait)
            conn.request("POST", path, body=b"{}", headers={"Content-Type": "application/json"})
            resp = conn.getresponse()
            resp.read()
            if resp.status != 200:
                errors.append(f"HTTP {resp.status}")
    except OSError as e:
        errors.append(repr(e))
    finally:
        conn.close()


def _drive(aws: LocalAws, arrivals_v: np.ndarray, start_v: float, threads: int = 6) -> list[str]:
    times_real = np.array([aws.clock.to_real(start_v + a) for a in arrivals_v])
    errors: list[str] = []
    workers = [
        threading.Thread(target=_send, args=(aws.port, times_real[i::threads], errors))
        for i in range(threads)
    ]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    return errors


def _tune(tmp: Path, out: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """`tuner tune --backtest` on the same endpoint, its history as the profile, a small grid."""
    grid = tmp / "grid.toml"
    grid.write_text(
        "target_values = [10.0, 15.0, 30.0]\nscale_out_cooldowns_s = [60]\n"
        "scale_in_cooldowns_s = [300]\nmin_capacities = [1, 2]\nmax_capacities = [8]\n"
    )
    return subprocess.run(
        [sys.executable, "-m", "tuner", "tune", "--profile", str(out / "history.csv"),
         "--slo-p99-ms", "500", "--max-error-rate", "0.01", "--seeds", "1",
         "--grid", str(grid), "--endpoint", ENDPOINT, "--backtest", "--backtest-days", "0.25",
         "--out", str(tmp / "tuned")],
        env=env, capture_output=True, text=True, timeout=180,
    )  # fmt: skip


@pytest.fixture(
    scope="module",
    params=[
        pytest.param("4h", id="2-virtual-hours"),
        pytest.param("6h", id="3-virtual-hours", marks=pytest.mark.slow),
    ],
)
def backtested(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Any]:
    if not TRACE.is_file():
        pytest.skip(f"the shared traces are not beside the checkout: {TRACE}")
    tmp = tmp_path_factory.mktemp("backtest")
    profile = parse_profile(
        {
            "name": "elb",
            "segment": [
                {
                    "replay": str(TRACE),
                    "start": "6h",
                    "limit": request.param,
                    "time_scale": 0.5,
                    "peak_rps": 1.5,
                }
            ],
        }
    )
    config = EmulatorConfig(
        speed=SPEED, endpoint=ENDPOINT, capacity=HIDDEN, metric_lag_s=float(TRUE_LAG_S)
    )
    with LocalAws(config) as aws:
        creds = {"region_name": "us-east-1", "aws_access_key_id": "testing",
                 "aws_secret_access_key": "testing"}  # fmt: skip
        aas = boto3.client("application-autoscaling", endpoint_url=aws.url, **creds)
        aas.register_scalable_target(**POLICY.register_scalable_target_args(
            Resource.for_variant(ENDPOINT, "AllTraffic")))  # fmt: skip
        aas.put_scaling_policy(**POLICY.put_scaling_policy_args(
            Resource.for_variant(ENDPOINT, "AllTraffic")))  # fmt: skip
        start_v = (aws.clock.now() // 60 + 2) * 60  # a whole virtual minute, a moment away
        errors = _drive(aws, profile.arrivals(0, profile.duration_s), start_v)
        end_v = start_v + profile.duration_s
        aws.clock.wait_until(end_v + 90, threading.Event())  # the last datapoint published
        env = local_aws_env(aws, tmp)
        end_iso = dt.datetime.fromtimestamp(end_v, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        out = tmp / "bt"
        done = subprocess.run(
            [sys.executable, "-m", "tuner", "backtest", "--endpoint", ENDPOINT,
             "--hours", f"{profile.duration_s / 3600:g}", "--end", end_iso,
             "--write-capacity", str(tmp / "fitted.json"), "--out", str(out)],
            env=env, capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        activities = len(aws.autoscaler.activities)
        assert done.returncode == 0, done.stderr
        tuned = _tune(tmp, out, env) if request.param == "6h" else None
    return {
        "out": out,
        "stdout": done.stdout,
        "doc": json.loads((out / "backtest.json").read_text()),
        "minutes": pd.read_csv(out / "backtest.csv"),
        "fitted": Capacity.load(tmp / "fitted.json"),
        "errors": errors,
        "activities": activities,
        "tuned": tuned,
        "tuned_dir": tmp / "tuned",
        "minutes_played": round(profile.duration_s / 60),
    }


def test_the_replayed_trace_scaled_out_and_in_several_times(backtested: dict[str, Any]) -> None:
    # a stalled sender may burst past the queue bound on a loaded machine: a few refusals at most
    assert len(backtested["errors"]) <= 10, backtested["errors"][:5]
    rec = backtested["doc"]["recorded"]
    assert rec["scale_outs"] >= 4 and rec["scale_ins"] >= 2, rec
    assert backtested["doc"]["window"]["minutes"] == backtested["minutes_played"]


def test_boot_time_and_metric_delay_are_recovered(backtested: dict[str, Any]) -> None:
    fitted = backtested["doc"]["fitted"]
    assert abs(fitted["boot_s"] - TRUE_BOOT_S) <= 30, fitted
    assert abs(fitted["metric_lag_s"] - TRUE_LAG_S) <= 30, fitted
    assert fitted["boot_uncertainty_s"] is not None and fitted["boot_uncertainty_s"] < 30
    assert fitted["metric_lag_uncertainty_s"] is not None
    assert fitted["metric_lag_uncertainty_s"] < 30
    # the fitted values land in the capacity file that simulate and tune read
    assert backtested["fitted"].boot_s == round(fitted["boot_s"])
    assert backtested["fitted"].metric_lag_s == fitted["metric_lag_s"]


def test_fitted_model_agrees_minute_by_minute_and_defaults_do_worse(
    backtested: dict[str, Any],
) -> None:
    doc, minutes = backtested["doc"], backtested["minutes"]
    fitted, default = doc["fitted_score"], doc["default_score"]
    assert fitted["agreement"] >= 0.95, fitted
    # recomputed from the per-minute file, not taken on trust
    scored = minutes[minutes["scored"]]
    assert len(scored) >= len(minutes) - 16  # at most the alarms' warm-up left out
    share = float((scored["recorded_desired"] == scored["simulated_desired"]).mean())
    assert share == pytest.approx(fitted["agreement"])
    assert default["agreement"] <= fitted["agreement"] - 0.05, (fitted, default)
    assert default["mean_abs_error_s"] >= fitted["mean_abs_error_s"] + 20, (fitted, default)
    # the defaults compared with are the model's own (the backtest was told nothing)
    assert doc["defaults"] == {"boot_s": 300.0, "metric_lag_s": 60.0}


def test_report_section_and_alarm_note(backtested: dict[str, Any]) -> None:
    out: Path = backtested["out"]
    md = (out / "backtest.md").read_text()
    assert "minutes agreeing" in md and "fitted" in md
    page = (out / "backtest.html").read_text()
    assert page.count("data:image/png;base64,") == 1
    # the alarms the local AWS created for the policy were read back; their shape is the model's
    # default one (3 of 3 above the target, 15 of 15 below 0.9 x), so nothing is overridden
    doc = backtested["doc"]
    shape = {"high_datapoints": 3, "low_datapoints": 15, "low_datapoints_high_resolution": 90}
    assert doc["alarm_shape"] == dict(shape, low_ratio=0.9)
    assert not any("Alarm" in n for n in doc["notes"]), doc["notes"]
    assert (out / "history.csv").is_file() and (out / "history.scaling.json").is_file()


def test_tune_with_backtest_uses_the_fitted_values(backtested: dict[str, Any]) -> None:
    tuned = backtested["tuned"]
    if tuned is None:
        pytest.skip("tune --backtest runs in the 3-virtual-hour variant (slow, `make bench`)")
    assert tuned.returncode == 0, tuned.stderr
    run = backtested["tuned_dir"]
    doc = json.loads((run / "backtest" / "backtest.json").read_text())
    settings = json.loads((run / "manifest.json").read_text())["simulation"]
    assert settings["boot_s"] == doc["fitted"]["boot_s"]
    assert settings["metric_lag_s"] == doc["fitted"]["metric_lag_s"]
    robust = pd.read_csv(run / "backtest" / "robustness.csv")
    # 3 boot times x 3 delays (each value -u, value, +u) when both uncertainties are known
    boot, u = doc["fitted"]["boot_s"], round(doc["fitted"]["boot_uncertainty_s"], 1)
    assert len(robust) == 9 and set(robust["boot_s"]) == {boot - u, boot, boot + u}
    assert "Backtest: the model against" in (run / "report.md").read_text()
    assert "Robustness:" in (run / "report.html").read_text()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--history", "missing.csv"], "--history: file not found: missing.csv"),
        (["--history", "h.csv", "--lags", "300:0:10"], "--lags: 0 <= A <= B"),
        (["--history", "bad.csv"], "bad.csv: not a per-minute history"),
        (["--history", "h.csv", "--endpoint", "e"], "exactly one of --endpoint and --history"),
    ],
    ids=["missing", "lags", "malformed", "both"],
)
def test_bad_input_is_one_line_and_exit_2(
    args: list[str], message: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    from tuner.cli import main

    monkeypatch.chdir(tmp_path)
    (tmp_path / "bad.csv").write_text("timestamp,invocations\nyesterday,many\nnow,few\n")
    (tmp_path / "bad.scaling.json").write_text(
        json.dumps(
            {"version": 1, "resource_id": "r", "policy_spans": [], "activities": [], "alarms": []}
        )  # fmt: skip
    )
    assert main(["backtest", *args, "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("tuner backtest: error: ") and message in err and "\n" not in err
