"""tuner collect: CloudWatch history -> replay CSV that profiles play back unchanged."""

from __future__ import annotations

import datetime as dt
import time
from pathlib import Path

import boto3
import numpy as np
import pandas as pd
import pytest

from tests.conftest import REGION, create_endpoint
from tuner.aws.cloudwatch import history_period_s
from tuner.cli import main
from tuner.profiles.profile_file import load_profile

END = dt.datetime(2026, 11, 20, 0, 0, tzinfo=dt.UTC)
DIMS = [
    {"Name": "EndpointName", "Value": "my-endpoint"},
    {"Name": "VariantName", "Value": "AllTraffic"},
]


def _publish(cw: object, counts: list[float], instances: list[int], start: dt.datetime) -> None:
    data = []
    for m, (n, k) in enumerate(zip(counts, instances, strict=True)):
        ts = start + dt.timedelta(minutes=m, seconds=20)
        if n:
            data.append(
                {"MetricName": "Invocations", "Dimensions": DIMS, "Value": n, "Timestamp": ts}
            )
            data.append(
                {
                    "MetricName": "InvocationsPerInstance",
                    "Dimensions": DIMS,
                    "Value": n / k,
                    "Timestamp": ts,
                }
            )
    for first in range(0, len(data), 1000):
        cw.put_metric_data(
            Namespace="AWS/SageMaker",  # type: ignore[attr-defined]
            MetricData=data[first : first + 1000],
        )


def test_collect_writes_replayable_history(
    aws: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    create_endpoint(boto3.client("sagemaker", region_name=REGION))
    cw = boto3.client("cloudwatch", region_name=REGION)
    minutes = 180
    rng = np.random.default_rng(7)
    counts = [float(c) for c in rng.integers(0, 900, size=minutes)]
    counts[50] = 0.0  # an idle minute: no datapoint at all, as SageMaker without traffic
    instances = [1 + int(c // 300) for c in counts]
    start = END - dt.timedelta(minutes=minutes)
    _publish(cw, counts, instances, start)

    out = tmp_path / "history.csv"
    assert (
        main(
            [
                "collect",
                "--endpoint",
                "my-endpoint",
                "--days",
                str(minutes / 1440),
                "--end",
                END.isoformat(),
                "--out",
                str(out),
            ]
        )
        == 0
    )
    assert "wrote" in capsys.readouterr().out
    history = pd.read_csv(out)
    assert list(history.columns) == ["timestamp", "invocations", "instances"]
    assert len(history) == minutes
    assert history["timestamp"].iloc[0] == start.strftime("%Y-%m-%dT%H:%M:%SZ")
    assert history["invocations"].tolist() == counts
    busy = history["invocations"] > 0
    assert history.loc[busy, "instances"].tolist() == [
        k for c, k in zip(counts, instances, strict=True) if c
    ]
    assert np.isnan(history["instances"].iloc[50])

    profile = load_profile(out.with_suffix(".toml"))
    assert profile.duration_s == minutes * 60
    assert np.allclose(profile.counts(60), counts)


@pytest.mark.parametrize(
    ("days", "period"), [(1, 60), (14, 60), (30, 300), (90, 3600)], ids=["1d", "14d", "30d", "90d"]
)
def test_period_follows_cloudwatch_retention(days: float, period: int) -> None:
    assert history_period_s(days) == period


def test_collect_unknown_endpoint_exits_2(
    aws: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["collect", "--endpoint", "ghost", "--out", str(tmp_path / "h.csv")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "ghost" in err


def _collect(tmp_path: Path, *extra: str) -> int:
    return main(["collect", "--endpoint", "my-endpoint", "--out", str(tmp_path / "h.csv"), *extra])


def test_an_empty_window_is_an_error_naming_it(
    aws: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    create_endpoint(boto3.client("sagemaker", region_name=REGION))
    assert _collect(tmp_path, "--days", "1", "--end", END.isoformat()) == 2
    last = capsys.readouterr().err.splitlines()[-1]  # after the progress line, one error line
    assert last.startswith("tuner collect: error: no invocations of my-endpoint/AllTraffic")
    assert "2026-11-19 00:00 to 2026-11-20 00:00 UTC" in last
    assert not (tmp_path / "h.csv").exists()


def test_a_mostly_empty_window_is_pointed_out_and_trimmed(
    aws: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    create_endpoint(boto3.client("sagemaker", region_name=REGION))
    cw = boto3.client("cloudwatch", region_name=REGION)
    counts = [120.0, 0.0, 60.0, 90.0]  # four minutes of a day, the last ending an hour early
    _publish(cw, counts, [1] * 4, END - dt.timedelta(minutes=64))
    assert _collect(tmp_path, "--days", "1", "--end", END.isoformat()) == 0
    err = capsys.readouterr().err
    assert "traffic in only 0% of the periods" in err
    assert "from 2026-11-19T22:56:00Z to 2026-11-19T23:00:00Z" in err
    assert len(pd.read_csv(tmp_path / "h.csv")) == 1440
    assert _collect(tmp_path, "--days", "1", "--end", END.isoformat(), "--trim") == 0
    assert pd.read_csv(tmp_path / "h.csv")["invocations"].tolist() == counts


def test_collect_reads_the_local_aws_virtual_clock(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from tuner.emulator import EmulatorConfig, LocalAws

    # At x2000 the virtual clock is an hour ahead of real time in 2 s: traffic published
    # "now" on it lies in the future of the machine's clock, which collect must not use.
    with LocalAws(EmulatorConfig(port=0, speed=2000.0, endpoint="my-endpoint")) as local:
        cw = boto3.client("cloudwatch", region_name=REGION, endpoint_url=local.url)
        now = local.clock.now()
        while now - dt.datetime.now(dt.UTC).timestamp() < 3600:
            time.sleep(0.2)
            now = local.clock.now()
        start = dt.datetime.fromtimestamp(now // 60 * 60 - 600, dt.UTC)
        _publish(cw, [100.0, 200.0, 300.0], [1, 1, 2], start)
        code = _collect(tmp_path, "--days", "0.5", "--endpoint-url", local.url)
    assert code == 0, capsys.readouterr().err
    assert "virtual clock (x2000)" in capsys.readouterr().err
    history = pd.read_csv(tmp_path / "h.csv")
    assert history["invocations"].sum() == 600.0
