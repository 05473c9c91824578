"""The input contract: every malformed input to every subcommand exits 2 with one line on stderr.

The corpus runs the CLI in process (``tuner.cli.main``) and checks, for each case: exit status 2,
exactly one non-empty line on stderr naming the problem, no traceback, within a time bound. The
cases that need AWS share one local AWS (``LocalAws``) for the module. A few go through a real
subprocess to prove the console entry point behaves the same. Valid edge cases are a separate
list that must exit 0.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tuner.cli import main

TIME_BOUND_S = 20.0
"""No bad input may keep the tool busy: each case must be refused within this (most take ms)."""

GOOD_POLICY: dict[str, Any] = {
    "ScalableTarget": {"MinCapacity": 1, "MaxCapacity": 4},
    "TargetTrackingScalingPolicyConfiguration": {
        "TargetValue": 300.0,
        "PredefinedMetricSpecification": {
            "PredefinedMetricType": "SageMakerVariantInvocationsPerInstance"
        },
        "ScaleOutCooldown": 60,
        "ScaleInCooldown": 300,
        "DisableScaleIn": False,
    },
}
GOOD_CAPACITY: dict[str, Any] = {
    "instance_type": "ml.m5.xlarge",
    "hourly_usd": 0.23,
    "boot_s": 300,
    "max_rps_per_instance": 20.0,
    "timeout_ms": 60000,
    "latency_ms": [{"rps": 5, "p50": 40, "p99": 80}, {"rps": 20, "p50": 60, "p99": 150}],
}
GOOD_PROFILE = 'name = "p"\n[[segment]]\nhold = "20m"\nrps = 10\n'
ENDPOINT = "demo-endpoint"


def _policy(**changes: Any) -> str:
    """GOOD_POLICY with fields changed ("Min" -> ScalableTarget.MinCapacity, else the TT field)."""
    doc = json.loads(json.dumps(GOOD_POLICY))
    for key, value in changes.items():
        if key in ("MinCapacity", "MaxCapacity"):
            doc["ScalableTarget"][key] = value
        else:
            doc["TargetTrackingScalingPolicyConfiguration"][key] = value
    return json.dumps(doc)


def _capacity(**changes: Any) -> str:
    doc = dict(GOOD_CAPACITY, **changes)
    return json.dumps(doc)


def _segment(**fields: str) -> str:
    body = "".join(f"{k} = {v}\n" for k, v in fields.items())
    return f'name = "bad"\n[[segment]]\n{body}'


def _csv(rows: list[tuple[str, str]]) -> str:
    return "timestamp,invocations\n" + "".join(f"{t},{c}\n" for t, c in rows)


def _snapshot(**changes: Any) -> str:
    doc: dict[str, Any] = {
        "version": 1,
        "resource_id": f"endpoint/{ENDPOINT}/variant/AllTraffic",
        "taken_at": "2026-01-01T00:00:00Z",
        "target": {"MinCapacity": 1, "MaxCapacity": 4},
        "policies": [],
        "scheduled_actions": [],
    }
    doc.update(changes)
    return json.dumps(doc)


MINUTES = [(f"2025-01-01T00:{m:02d}:00Z", "60") for m in range(20)]

# name -> file content: written once into the corpus directory.
FILES: dict[str, str] = {
    "good.policy.json": json.dumps(GOOD_POLICY),
    "good.capacity.json": json.dumps(GOOD_CAPACITY),
    "good.toml": GOOD_PROFILE,
    "good.csv": _csv(MINUTES),
    "csv-as.toml": _csv(MINUTES),
    "empty.toml": "",
    "syntax.toml": 'name = "x"\n[[segment]\nhold = "1m"\n',
    "neg-rps.toml": _segment(hold='"10m"', rps="-3"),
    "nan-rps.toml": _segment(hold='"10m"', rps="nan"),
    "inf-rps.toml": _segment(hold='"10m"', rps="inf"),
    "huge-rps.toml": _segment(hold='"10m"', rps="1e300"),
    "huge-hold.toml": _segment(hold='"100000d"', rps="1"),
    "zero-hold.toml": _segment(hold='"0s"', rps="1"),
    "word-hold.toml": _segment(hold='"soon"', rps="1"),
    "neg-hold.toml": _segment(hold='"-5m"', rps="1"),
    "unknown-key.toml": _segment(hold='"10m"', rps="1", colour='"red"'),
    "no-segment.toml": 'name = "x"\n',
    "two-kinds.toml": _segment(hold='"10m"', ramp='"1m"', rps="1"),
    "bad-noise.toml": 'name = "x"\nnoise = "gaussian"\n[[segment]]\nhold = "10m"\nrps = 1\n',
    "neg-seed.toml": 'name = "x"\nseed = -4\n[[segment]]\nhold = "10m"\nrps = 1\n',
    "poisson.toml": 'name = "x"\nnoise = "poisson"\n[[segment]]\nhold = "10m"\nrps = 5\n',
    "sine-bad.toml": _segment(sine='"1h"', min_rps="50", max_rps="5"),
    "spike-nan.toml": _segment(spike='"10m"', baseline_rps="1", peak_rps="nan"),
    "replay-inf.toml": _segment(replay='"inf.csv"'),
    "inf.csv": _csv([("2025-01-01T00:00:00Z", "5"), ("inf", "5"), ("2025-01-01T00:02:00Z", "5")]),
    "replay-gap.toml": _segment(replay='"gap.csv"'),
    "gap.csv": _csv([("0", "5"), ("60", "5"), ("1000000000000", "5")]),
    "replay-neg.toml": _segment(replay='"neg.csv"'),
    "neg.csv": _csv([("0", "5"), ("60", "-5"), ("120", "5")]),
    "replay-nan.toml": _segment(replay='"nancount.csv"'),
    "nancount.csv": _csv([("0", "5"), ("60", "nan"), ("120", "5")]),
    "replay-missing.toml": _segment(replay='"nowhere.csv"'),
    "replay-scale.toml": _segment(replay='"good.csv"', rate_scale="-1"),
    "replay-tscale.toml": _segment(replay='"good.csv"', time_scale="0"),
    "replay-start-late.toml": _segment(replay='"good.csv"', start='"30d"'),
    "replay-start-zero.toml": _segment(replay='"good.csv"', start='"0d"'),
    "bad-columns.csv": "when,count\n1,2\n3,4\n",
    "one-row.csv": _csv([("0", "5")]),
    "binary.toml": "\x00\x01\x02garbage\xff",
    "policy-not-json.policy.json": "MinCapacity: 1\n",
    "policy-array.policy.json": "[1, 2, 3]",
    "policy-empty.policy.json": "",
    "policy-min-1e9.policy.json": _policy(MinCapacity=10**9, MaxCapacity=10**9),
    "policy-max-1e9.policy.json": _policy(MaxCapacity=10**9),
    "policy-min-neg.policy.json": _policy(MinCapacity=-1),
    "policy-min-gt-max.policy.json": _policy(MinCapacity=5, MaxCapacity=2),
    "policy-min-float.policy.json": _policy(MinCapacity=1.5),
    "policy-min-str.policy.json": _policy(MinCapacity="1"),
    "policy-max-bool.policy.json": _policy(MaxCapacity=True),
    "policy-tv-tiny.policy.json": _policy(TargetValue=1e-300),
    "policy-tv-huge.policy.json": _policy(TargetValue=1e300),
    "policy-tv-zero.policy.json": _policy(TargetValue=0),
    "policy-tv-neg.policy.json": _policy(TargetValue=-10),
    "policy-tv-str.policy.json": _policy(TargetValue="abc"),
    "policy-tv-nan.policy.json": _policy(TargetValue=float("nan")),
    "policy-tv-inf.policy.json": _policy(TargetValue=float("inf")),
    "policy-tv-null.policy.json": _policy(TargetValue=None),
    "policy-out-neg.policy.json": _policy(ScaleOutCooldown=-1),
    "policy-out-huge.policy.json": _policy(ScaleOutCooldown=10**12),
    "policy-in-float.policy.json": _policy(ScaleInCooldown=1.5),
    "policy-dsi-str.policy.json": _policy(DisableScaleIn="no"),
    "policy-metric.policy.json": _policy(
        PredefinedMetricSpecification={"PredefinedMetricType": "CPUUtilization"}
    ),
    "policy-unknown.policy.json": _policy(Colour="red"),
    "policy-no-target.policy.json": json.dumps(
        {
            "TargetTrackingScalingPolicyConfiguration": GOOD_POLICY[
                "TargetTrackingScalingPolicyConfiguration"
            ]
        }
    ),
    "capacity-not-json.json": "{",
    "capacity-empty-curve.json": _capacity(latency_ms=[]),
    "capacity-neg-rps.json": _capacity(max_rps_per_instance=-1),
    "capacity-zero-rps.json": _capacity(max_rps_per_instance=0),
    "capacity-nan-boot.json": _capacity(boot_s=float("nan")),
    "capacity-neg-usd.json": _capacity(hourly_usd=-1),
    "capacity-zero-timeout.json": _capacity(timeout_ms=0),
    "capacity-p50-gt-p99.json": _capacity(latency_ms=[{"rps": 5, "p50": 90, "p99": 80}]),
    "capacity-unknown.json": _capacity(colour="red"),
    "capacity-array.json": "[]",
    "capacity-huge-boot.json": _capacity(boot_s=1e15),
    "grid-syntax.toml": "target_fractions = [0.4,\n",
    "grid-unknown.toml": "colour = 1\n",
    "grid-neg.toml": "target_fractions = [-0.5]\n",
    "grid-empty.toml": "scale_out_cooldowns_s = []\n",
    "grid-huge.toml": "min_capacities = [1000000000]\n",
    "grid-nan.toml": "target_values = [nan]\n",
    "grid-str.toml": 'scale_in_cooldowns_s = ["300"]\n',
    "snap-no-max.json": _snapshot(target={"MinCapacity": 1}),
    "snap-max-str.json": _snapshot(target={"MinCapacity": 1, "MaxCapacity": "8"}),
    "snap-policy-bad.json": _snapshot(policies=[42]),
    "snap-no-version.json": json.dumps({"resource_id": "endpoint/x/variant/y"}),
    "snap-not-json.json": "{oops",
    "snap-array.json": "[]",
    "snap-empty.json": "",
    "a-file": "just a file\n",
    "ok-zero.toml": _segment(hold='"30m"', rps="0"),
    "ok-long.toml": _segment(hold='"300d"', rps="10"),
    "ok-aws-max.policy.json": _policy(TargetValue=1.174271e108, MaxCapacity=2**31 - 1),
    "ok-aws-min.policy.json": _policy(TargetValue=8.6e-109, ScaleOutCooldown=0),
    "ok-min-1e9.policy.json": _policy(MinCapacity=10**9, MaxCapacity=10**9),
    "ok-grid-tiny.toml": "target_fractions = [0.5]\nscale_out_cooldowns_s = [60]\n"
    "scale_in_cooldowns_s = [300]\nmin_capacities = [1]\nmax_capacities = [4]\n",
    "payload.jsonl": '{"x": 1}\n',
}


@pytest.fixture(scope="module")
def corpus_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("corpus")
    for name, text in FILES.items():
        (d / name).write_text(text, encoding="utf-8", errors="surrogateescape")
    (d / "a-dir").mkdir()
    (d / "run-empty").mkdir()
    bad_run = d / "run-bad"
    bad_run.mkdir()
    (bad_run / "candidates.csv").write_text("not,a\nrun,dir\n")
    journal_dir = d / "journal-bad" / "trials" / "x"
    journal_dir.mkdir(parents=True)
    (journal_dir / "restore-journal.json").write_text("{broken")
    from tuner.model.llm_capacity import LlmCapacity

    LlmCapacity.default().save(d / "llm-capacity.json")
    return d


@pytest.fixture(scope="module")
def local_aws() -> Iterator[str]:
    """One local AWS for every case that needs a control plane (module scope: one per process)."""
    from tuner.emulator import EmulatorConfig, LocalAws

    aws = LocalAws(EmulatorConfig(port=0, speed=60.0, endpoint=ENDPOINT))
    aws.start()
    try:
        yield aws.url
    finally:
        aws.stop()


@pytest.fixture(scope="module")
def busy_port() -> Iterator[int]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(1)
        yield s.getsockname()[1]


SIM = ["simulate", "--profile", "{d}/good.toml", "--policy", "{d}/good.policy.json"]
SIM_OUT = ["--out", "{d}/out/sim"]
TUNE = ["tune", "--profile", "{d}/good.toml", "--slo-p99-ms", "300", "--max-error-rate", "0.01"]
TUNE_OUT = ["--out", "{d}/out/tune"]
AWS = ["--endpoint-url", "{aws}"]
TRIAL = ["trial", "--endpoint", ENDPOINT, "--policy", "{d}/good.policy.json"]
TRIAL_REST = ["--profile", "{d}/good.toml", "--out", "{d}/out/trial", "--dry-run", *AWS]
CAL = ["calibrate", "--endpoint", ENDPOINT, "--slo-p99-ms", "500", "--dry-run"]
LOAD = ["loadtest", "--profile", "{d}/good.toml", "--endpoint", ENDPOINT]
LOAD_OUT = ["--out", "{d}/out/load", "--host", "{aws}"]
COLLECT = ["collect", "--endpoint", ENDPOINT]
SNAP = ["snapshot", "--endpoint", ENDPOINT]


def _sim_profile(name: str) -> list[str]:
    return ["simulate", "--profile", "{d}/" + name, "--policy", "{d}/good.policy.json", *SIM_OUT]


def _sim_policy(name: str) -> list[str]:
    return ["simulate", "--profile", "{d}/good.toml", "--policy", "{d}/" + name, *SIM_OUT]


def _sim_capacity(name: str) -> list[str]:
    return [*SIM, "--capacity", "{d}/" + name, *SIM_OUT]


PROFILE_FILES = [
    n for n in FILES if n.endswith(".toml") and not n.startswith(("good", "grid", "ok-"))
]
PROFILE_FILES += ["bad-columns.csv", "one-row.csv", "missing.toml", "a-dir"]
PROFILE_FILES.remove("replay-start-zero.toml")
PROFILE_FILES.remove("poisson.toml")
POLICY_FILES = [n for n in FILES if n.startswith("policy-")] + [
    "missing.json",
    "a-dir",
    "good.toml",
]
CAPACITY_FILES = [n for n in FILES if n.startswith("capacity-")]
CAPACITY_FILES += ["missing.json", "a-dir", "good.csv", "good.policy.json"]
GRID_FILES = [n for n in FILES if n.startswith("grid-")] + ["missing.toml", "good.csv"]
SNAP_FILES = [n for n in FILES if n.startswith("snap-")] + ["missing.json", "journal-bad"]

# Out paths that cannot be what the command needs: an existing file where a directory goes, a
# directory where a file goes, a path under a file, and a place no one can write (/proc).
OUT_DIRS = {"out-is-file": "{d}/a-file", "out-under-file": "{d}/a-file/sub", "out-proc": "/proc/x"}
OUT_FILES = {
    "out-is-dir": "{d}/a-dir",
    "out-under-file": "{d}/a-file/x.json",
    "out-proc": "/proc/x",
}

NUMBERS_BAD = ["nan", "inf", "-inf", "-1"]

CASES: list[tuple[str, list[str]]] = []
CASES += [(f"simulate-profile-{n}", _sim_profile(n)) for n in PROFILE_FILES]
CASES += [(f"simulate-policy-{n}", _sim_policy(n)) for n in POLICY_FILES]
CASES += [(f"simulate-capacity-{n}", _sim_capacity(n)) for n in CAPACITY_FILES]
CASES += [
    (f"simulate-{flag}-{v}", [*SIM, f"--{flag}", v, *SIM_OUT])
    for flag in ("boot-s", "boot-jitter-s", "metric-lag-s", "slo-p99-ms")
    for v in NUMBERS_BAD
]
CASES += [
    ("simulate-slo-zero", [*SIM, "--slo-p99-ms", "0", *SIM_OUT]),
    ("simulate-boot-huge", [*SIM, "--boot-s", "1e12", *SIM_OUT]),
    ("simulate-seed-neg", [*SIM, "--seed", "-1", *SIM_OUT]),
    ("simulate-seed-neg-poisson", [*_sim_profile("poisson.toml"), "--seed", "-10"]),
    ("simulate-seed-huge", [*SIM, "--seed", str(2**70), *SIM_OUT]),
    ("simulate-initial-neg", [*SIM, "--initial-capacity", "-1", *SIM_OUT]),
    ("simulate-initial-huge", [*SIM, "--initial-capacity", "1000000000", *SIM_OUT]),
    ("simulate-scheduled-form", [*SIM, "--scheduled", "7h:4", *SIM_OUT]),
    ("simulate-scheduled-min-gt-max", [*SIM, "--scheduled", "7h:5:2", *SIM_OUT]),
    ("simulate-scheduled-word", [*SIM, "--scheduled", "soon:1:2", *SIM_OUT]),
    ("simulate-scheduled-neg", [*SIM, "--scheduled", "1h:-1:2", *SIM_OUT]),
    ("simulate-scheduled-huge", [*SIM, "--scheduled", "1h:1:1000000000", *SIM_OUT]),
    ("simulate-policy-plus-missing", [*SIM[:-1], "{d}/good.policy.json+{d}/no.json", *SIM_OUT]),
    ("simulate-boot-word", [*SIM, "--boot-s", "soon", *SIM_OUT]),
    ("simulate-no-out", SIM),
    ("simulate-unknown-flag", [*SIM, "--colour", "red", *SIM_OUT]),
    (
        "simulate-profile-unknown-name",
        [*_sim_profile("x")[:2], "no-such-ready-profile", *_sim_profile("x")[3:]],
    ),
]
CASES += [(f"simulate-{k}", [*SIM, "--out", v]) for k, v in OUT_DIRS.items()]

CASES += [
    (f"tune-profile-{n}", [*TUNE[:2], "{d}/" + n, *TUNE[3:], *TUNE_OUT])
    for n in ("csv-as.toml", "huge-hold.toml", "missing.toml", "nan-rps.toml", "replay-gap.toml")
]
CASES += [(f"tune-grid-{n}", [*TUNE, "--grid", "{d}/" + n, *TUNE_OUT]) for n in GRID_FILES]
CASES += [
    (f"tune-capacity-{n}", [*TUNE, "--capacity", "{d}/" + n, *TUNE_OUT])
    for n in ("capacity-nan-boot.json", "capacity-zero-rps.json", "missing.json")
]
CASES += [
    (f"tune-{flag}-{v}", [*TUNE, f"--{flag}", v, *TUNE_OUT])
    for flag, values in (
        ("seeds", ["0", "-1", "100000"]),
        ("margin", ["0", "2", "nan"]),
        ("max-slo-violation", ["-0.1", "1.5", "nan"]),
        ("boot-jitter-s", ["-1", "inf"]),
        ("metric-lag-s", ["-5", "nan"]),
        ("top", ["0", "-3"]),
        ("boot-s", ["-1", "nan"]),
    )
    for v in values
]
CASES += [
    ("tune-max-error-rate-over-1", [*TUNE[:-1], "1.5", *TUNE_OUT]),
    ("tune-max-error-rate-neg", [*TUNE[:-1], "-0.1", *TUNE_OUT]),
    ("tune-max-error-rate-nan", [*TUNE[:-1], "nan", *TUNE_OUT]),
    ("tune-slo-zero", [*TUNE[:4], "0", *TUNE[5:], *TUNE_OUT]),
    # 300 days: the grid on the scenario path (no held-out split) would not fit in memory
    (
        "tune-grid-too-large-for-memory",
        [*TUNE[:2], "{d}/ok-long.toml", *TUNE[3:], "--holdout", "off", *TUNE_OUT],
    ),
    ("tune-live-without-endpoint", [*TUNE, "--live", *TUNE_OUT]),
    ("tune-endpoint-unknown", [*TUNE, "--endpoint", "no-such-endpoint", *AWS, *TUNE_OUT]),
    (
        "tune-endpoint-url-bad",
        [*TUNE, "--endpoint", ENDPOINT, "--endpoint-url", "not-a-url", *TUNE_OUT],
    ),
    ("tune-region-bad", [*TUNE, "--endpoint", ENDPOINT, "--region", "mars-1", *AWS, *TUNE_OUT]),
]
CASES += [(f"tune-{k}", [*TUNE, "--out", v]) for k, v in OUT_DIRS.items()]
# An LLM capacity file ("kind": "llm"): every flag its path does not honour is refused, not ignored.
TUNE_LLM = [*TUNE, "--capacity", "{d}/llm-capacity.json", *TUNE_OUT]
CASES += [
    ("-".join(["tune-llm", flag.lstrip("-"), *values[:1]]), [*TUNE_LLM, flag, *values])
    for flag, *values in (
        ("--holdout", "off"),
        ("--holdout", "auto"),
        ("--stress-level", "2"),
        ("--schedule-timezone", "Europe/Paris"),
        ("--step-companion",),
        ("--live-profile", "steady"),
        ("--live-window", "0,1h"),
        ("--dry-run",),
        ("--allow-production",),
        ("--yes",),
        ("--region", "eu-west-1"),
        ("--aws-profile", "x"),
        ("--endpoint-url", "{aws}"),
        ("--endpoint", ENDPOINT),
        ("--backtest",),
        ("--max-instances", "0"),
    )
]

CASES += [
    ("trial-workers-neg", [*TRIAL, *TRIAL_REST, "--workers", "-2"]),
    ("trial-workers-huge", [*TRIAL, *TRIAL_REST, "--workers", "100000"]),
    ("trial-seed-neg", [*TRIAL, *TRIAL_REST, "--seed", "-1"]),
    ("trial-max-instances-zero", [*TRIAL, *TRIAL_REST, "--max-instances", "0"]),
    ("trial-max-rps-neg", [*TRIAL, *TRIAL_REST, "--max-rps", "-1"]),
    ("trial-max-rps-nan", [*TRIAL, *TRIAL_REST, "--max-rps", "nan"]),
    ("trial-policy-missing", [*TRIAL[:-1], "{d}/missing.json", *TRIAL_REST]),
    ("trial-policy-bad", [*TRIAL[:-1], "{d}/policy-tv-nan.policy.json", *TRIAL_REST]),
    ("trial-profile-bad", [*TRIAL, "--profile", "{d}/csv-as.toml", *TRIAL_REST[2:]]),
    (
        "trial-endpoint-url-bad",
        [*TRIAL, *TRIAL_REST[:-2], "--dry-run", "--endpoint-url", "not-a-url"],
    ),
    ("trial-region-bad", [*TRIAL, *TRIAL_REST, "--region", "moon"]),
]
CASES += [
    (f"trial-{k}", [*TRIAL, "--profile", "{d}/good.toml", "--out", v, "--dry-run", *AWS])
    for k, v in OUT_DIRS.items()
]

CASES += [
    (f"calibrate-{flag}-{v}", [*CAL, f"--{flag}", v, *AWS])
    for flag, values in (
        ("step-s", ["0", "-1", "nan"]),
        ("start-rps", ["0", "-1", "inf"]),
        ("max-error-rate", ["2", "-1"]),
        ("boot-s", ["-1", "nan"]),
        ("hourly-usd", ["-1", "nan"]),
        ("seed", ["-1"]),
        ("max-instances", ["0"]),
        ("max-rps", ["0"]),
    )
    for v in values
]
CASES += [
    ("calibrate-slo-zero", [*CAL[:4], "0", *CAL[5:], *AWS]),
    ("calibrate-slo-nan", [*CAL[:4], "nan", *CAL[5:], *AWS]),
    ("calibrate-endpoint-url-bad", [*CAL, "--endpoint-url", "ftp://x"]),
    ("calibrate-endpoint-url-word", [*CAL, "--endpoint-url", "not-a-url"]),
    ("calibrate-region-bad", [*CAL, "--region", "not a region", *AWS]),
]
CASES += [(f"calibrate-{k}", [*CAL, "--out", v, *AWS]) for k, v in OUT_FILES.items()]

CASES += [
    (f"loadtest-{flag}-{v}", [*LOAD, f"--{flag}", v, *LOAD_OUT])
    for flag, values in (
        ("request-timeout", ["-5", "0", "nan"]),
        ("speed", ["0", "-1", "inf"]),
        ("workers", ["-1", "100000"]),
        ("max-inflight", ["0", "-1"]),
        ("period", ["0", "nan"]),
        ("seed", ["-1"]),
    )
    for v in values
]
CASES += [
    ("loadtest-profile-missing", [*LOAD[:2], "{d}/missing.toml", *LOAD[3:], *LOAD_OUT]),
    ("loadtest-profile-csv-as-toml", [*LOAD[:2], "{d}/csv-as.toml", *LOAD[3:], *LOAD_OUT]),
    ("loadtest-payload-missing", [*LOAD, "--payload", "{d}/missing.jsonl", *LOAD_OUT]),
    ("loadtest-host-bad", [*LOAD, "--out", "{d}/out/load", "--host", "not-a-url"]),
    ("loadtest-region-bad", [*LOAD, *LOAD_OUT, "--region", "xx"]),
]
CASES += [(f"loadtest-{k}", [*LOAD, "--out", v, "--host", "{aws}"]) for k, v in OUT_DIRS.items()]

CASES += [
    ("collect-days-zero", [*COLLECT, "--days", "0", "--out", "{d}/out/h.csv", *AWS]),
    ("collect-days-huge", [*COLLECT, "--days", "1000", "--out", "{d}/out/h.csv", *AWS]),
    ("collect-days-nan", [*COLLECT, "--days", "nan", "--out", "{d}/out/h.csv", *AWS]),
    ("collect-end-word", [*COLLECT, "--end", "yesterday", "--out", "{d}/out/h.csv", *AWS]),
    (
        "collect-end-future",
        [*COLLECT, "--end", "2999-01-01T00:00:00Z", "--days", "1", "--out", "{d}/out/h.csv", *AWS],
    ),
    ("collect-period-7", [*COLLECT, "--period-s", "7", "--out", "{d}/out/h.csv", *AWS]),
    ("collect-endpoint-unknown", ["collect", "--endpoint", "nope", "--out", "{d}/out/h.csv", *AWS]),
    (
        "collect-profile-out-dir",
        [*COLLECT, "--out", "{d}/out/h.csv", "--profile-out", "{d}/a-dir", *AWS],
    ),
    ("collect-endpoint-url-bad", [*COLLECT, "--out", "{d}/out/h.csv", "--endpoint-url", "http://"]),
    ("collect-region-bad", [*COLLECT, "--out", "{d}/out/h.csv", "--region", "EU_WEST_1", *AWS]),
]
CASES += [(f"collect-{k}", [*COLLECT, "--out", v, *AWS]) for k, v in OUT_FILES.items()]

CASES += [
    (
        "snapshot-endpoint-unknown",
        ["snapshot", "--endpoint", "nope", "--out", "{d}/out/s.json", *AWS],
    ),
    (
        "snapshot-region-not-served",
        [*SNAP, "--out", "{d}/out/s.json", "--region", "eu-west-1", *AWS],
    ),
    ("snapshot-no-endpoint", ["snapshot", "--out", "{d}/out/s.json", *AWS]),
    (
        "snapshot-endpoint-and-ic",
        [*SNAP, "--inference-component", "ic", "--out", "{d}/out/s.json", *AWS],
    ),
    (
        "snapshot-endpoint-url-bad",
        [*SNAP, "--out", "{d}/out/s.json", "--endpoint-url", "localhost:1"],
    ),
    ("snapshot-region-bad", [*SNAP, "--out", "{d}/out/s.json", "--region", "us-east", *AWS]),
]
CASES += [(f"snapshot-{k}", [*SNAP, "--out", v, *AWS]) for k, v in OUT_FILES.items()]

CASES += [(f"restore-{n}", ["restore", "{d}/" + n, *AWS]) for n in SNAP_FILES]
CASES += [
    (f"apply-policy-{n}", ["apply", "{d}/" + n, "--endpoint", ENDPOINT, "--dry-run", *AWS])
    for n in (
        "missing.json",
        "policy-tv-tiny.policy.json",
        "policy-tv-huge.policy.json",
        "policy-empty.policy.json",
        "good.csv",
    )
]
CASES += [
    ("apply-endpoint-unknown", ["apply", "{d}/good.policy.json", "--endpoint", "nope", *AWS]),
    (
        "apply-endpoint-unknown-dry-run",
        ["apply", "{d}/good.policy.json", "--endpoint", "nope", "--dry-run", *AWS],
    ),
    ("apply-no-endpoint", ["apply", "{d}/good.policy.json", *AWS]),
    (
        "apply-endpoint-url-bad",
        ["apply", "{d}/good.policy.json", "--endpoint", ENDPOINT, "--endpoint-url", "nope"],
    ),
]
CASES += [
    (f"export-{n}", ["export", "{d}/" + n, "--format", "aws-cli", "--endpoint", ENDPOINT])
    for n in ("missing.json", "policy-tv-inf.policy.json", "policy-out-neg.policy.json", "a-dir")
]
CASES += [("export-format-bad", ["export", "{d}/good.policy.json", "--format", "yaml"])]
CASES += [
    (f"report-{n}", ["report", "{d}/" + n]) for n in ("missing", "a-file", "run-empty", "run-bad")
]

CASES += [
    (f"emulate-{flag}-{v}", ["emulate", f"--{flag}", v])
    for flag, values in (
        ("port", ["-1", "70000"]),
        ("speed", ["0", "nan", "-2"]),
        ("instances", ["0", "1000000000"]),
        ("metric-lag-s", ["-1"]),
        ("progress-s", ["0", "nan"]),
        ("seed", ["-1"]),
        ("region", ["mars-1"]),
        ("capacity", ["{d}/missing.json", "{d}/capacity-zero-rps.json", "{d}/good.toml"]),
    )
    for v in values
]
CASES += [("emulate-port-busy", ["emulate", "--port", "{port}"])]
BACKTEST = ["backtest", "--out", "{d}/out/bt"]
CASES += [
    ("backtest-no-source", BACKTEST),
    ("backtest-both-sources", [*BACKTEST, "--endpoint", ENDPOINT, "--history", "{d}/good.csv"]),
    ("backtest-history-missing", [*BACKTEST, "--history", "{d}/nope.csv"]),
    ("backtest-history-no-scaling", [*BACKTEST, "--history", "{d}/good.csv"]),
    ("backtest-days-nan", [*BACKTEST, "--endpoint", ENDPOINT, "--days", "nan", *AWS]),
    ("backtest-days-negative", [*BACKTEST, "--endpoint", ENDPOINT, "--days", "-1", *AWS]),
    ("backtest-lags-word", [*BACKTEST, "--endpoint", ENDPOINT, "--lags", "a:b:c", *AWS]),
    ("backtest-lags-step-0", [*BACKTEST, "--endpoint", ENDPOINT, "--lags", "0:300:0", *AWS]),
    ("backtest-end-word", [*BACKTEST, "--endpoint", ENDPOINT, "--end", "soon", *AWS]),
    ("backtest-unknown-endpoint", [*BACKTEST, "--endpoint", "no-such-endpoint", *AWS]),
]
CASES += [
    ("demo-speed-zero", ["demo", "--speed", "0"]),
    ("demo-speed-nan", ["demo", "--speed", "nan"]),
    ("demo-seeds-zero", ["demo", "--seeds", "0"]),
    ("demo-out-file", ["demo", "--out", "{d}/a-file"]),
    ("demo-out-under-file", ["demo", "--out", "{d}/a-file/x"]),
    ("no-subcommand", []),
    ("unknown-subcommand", ["frobnicate"]),
]


def _fill(argv: list[str], d: Path, aws: str, port: int) -> list[str]:
    return [
        a.replace("{d}", str(d)).replace("{aws}", aws).replace("{port}", str(port)) for a in argv
    ]


def _run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, float]:
    started = time.perf_counter()
    try:
        code = main(argv)
    except SystemExit as e:  # argparse's usage errors exit through SystemExit(2)
        code = e.code if isinstance(e.code, int) else 1
    elapsed = time.perf_counter() - started
    return code, capsys.readouterr().err, elapsed


@pytest.mark.parametrize("argv", [c[1] for c in CASES], ids=[c[0] for c in CASES])
def test_malformed_input_exits_2_with_one_line(
    argv: list[str],
    corpus_dir: Path,
    local_aws: str,
    busy_port: int,
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, err, elapsed = _run(_fill(argv, corpus_dir, local_aws, busy_port), capsys)
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2, f"exit {code}, stderr: {err[-2000:]}"
    assert len(lines) == 1, f"expected one line on stderr, got {len(lines)}: {err[-2000:]}"
    assert "Traceback" not in err
    assert "np.int64" not in err and "np.float64" not in err
    assert elapsed < TIME_BOUND_S


def test_corpus_is_large_and_covers_every_subcommand() -> None:
    from tuner.cli import _command_modules

    assert len(CASES) >= 150
    assert len({name for name, _ in CASES}) == len(CASES)
    covered = {argv[0] for _, argv in CASES if argv}
    assert covered >= set(_command_modules())


VALID: list[tuple[str, list[str]]] = [
    ("simulate-replay-start-0d", _sim_profile("replay-start-zero.toml")),
    ("simulate-poisson-seed-0", [*_sim_profile("poisson.toml"), "--seed", "0"]),
    ("simulate-seed-max", [*SIM, "--seed", str(2**32 - 1), *SIM_OUT]),
    ("simulate-zero-lag-boot-jitter", [*SIM, "--metric-lag-s", "0", "--boot-s", "0", *SIM_OUT]),
    ("simulate-zero-traffic", _sim_profile("ok-zero.toml")),
    ("simulate-target-at-aws-min", _sim_policy("ok-aws-min.policy.json")),
    ("simulate-out-existing-dir", [*SIM, "--out", "{d}/a-dir"]),
    ("simulate-scheduled-at-0", [*SIM, "--scheduled", "0:1:4", *SIM_OUT]),
    ("simulate-csv-profile", _sim_profile("good.csv")),
    (
        "export-aws-limits",
        ["export", "{d}/ok-aws-max.policy.json", "--format", "aws-cli", "--endpoint", ENDPOINT],
    ),
    (
        "apply-dry-run-capacity-1e9",
        ["apply", "{d}/ok-min-1e9.policy.json", "--endpoint", ENDPOINT, "--dry-run", *AWS],
    ),
    ("restore-dir-without-journal", ["restore", "{d}/a-dir", *AWS]),
    ("snapshot-new-nested-path", [*SNAP, "--out", "{d}/out/new/dir/s.json", *AWS]),
    (
        "tune-tiny-grid",
        [*TUNE, "--grid", "{d}/ok-grid-tiny.toml", "--seeds", "1", "--out", "{d}/out/tune-ok"],
    ),
    ("trial-dry-run", [*TRIAL, *TRIAL_REST]),
    ("calibrate-dry-run", [*CAL, "--out", "{d}/out/capacity.json", *AWS]),
]


@pytest.mark.parametrize("argv", [c[1] for c in VALID], ids=[c[0] for c in VALID])
def test_valid_edge_case_exits_0(
    argv: list[str],
    corpus_dir: Path,
    local_aws: str,
    busy_port: int,
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, err, _ = _run(_fill(argv, corpus_dir, local_aws, busy_port), capsys)
    assert code == 0, err[-2000:]
    assert "Traceback" not in err and "error" not in err.lower()
    assert not list(corpus_dir.rglob("*.tmp"))


SUBPROCESS_CASES = [
    ("csv-as-toml", _sim_profile("csv-as.toml"), "replay CSV"),
    (
        "endpoint-url",
        ["snapshot", "--endpoint", "x", "--out", "{d}/s.json", "--endpoint-url", "not-a-url"],
        "--endpoint-url must be an http(s) URL",
    ),
    ("port", ["emulate", "--port", "70000"], "--port must be in 0..65535"),
]


@pytest.mark.parametrize(
    "argv,needle", [c[1:] for c in SUBPROCESS_CASES], ids=[c[0] for c in SUBPROCESS_CASES]
)
def test_console_entry_point_gives_one_line(
    argv: list[str], needle: str, corpus_dir: Path, busy_port: int
) -> None:
    """The installed `tuner` script, as a user runs it: exit 2, one line, no traceback."""
    tuner = Path(sys.executable).with_name("tuner")
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    proc = subprocess.run(
        [str(tuner), *_fill(argv, corpus_dir, "http://127.0.0.1:1", busy_port)],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1 and needle in lines[0], proc.stderr
