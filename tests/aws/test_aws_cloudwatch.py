"""fetch_variant_metrics against moto's CloudWatch: values, gaps, pagination, percentiles."""

from __future__ import annotations

import datetime as dt

import boto3
import numpy as np
import pytest

from tests.conftest import REGION
from tuner.aws import fetch_variant_metrics
from tuner.errors import ValidationError

T0 = dt.datetime(2026, 11, 1, 12, 0, tzinfo=dt.UTC)
DIMS = [{"Name": "EndpointName", "Value": "ep"}, {"Name": "VariantName", "Value": "AllTraffic"}]


def _put(
    cw: object,
    metric: str,
    minute: int,
    value: float,
    *,
    second: int = 0,
    variant: str = "AllTraffic",
) -> None:
    dims = [DIMS[0], {"Name": "VariantName", "Value": variant}]
    cw.put_metric_data(  # type: ignore[attr-defined]
        Namespace="AWS/SageMaker",
        MetricData=[
            {
                "MetricName": metric,
                "Dimensions": dims,
                "Value": value,
                "Timestamp": T0 + dt.timedelta(minutes=minute, seconds=second),
            }
        ],
    )


def test_sums_per_minute_with_gaps_as_zero(aws: None) -> None:
    cw = boto3.client("cloudwatch", region_name=REGION)
    # Two datapoints in minute 0 (summed), none in minute 1, one in minute 2; another variant
    # must not leak in.
    _put(cw, "Invocations", 0, 100, second=5)
    _put(cw, "Invocations", 0, 20, second=40)
    _put(cw, "Invocations", 2, 7)
    _put(cw, "Invocations", 2, 1000, variant="other")
    _put(cw, "ModelLatency", 0, 40_000)
    _put(cw, "ModelLatency", 0, 60_000, second=30)
    frame = fetch_variant_metrics(
        cw,
        "ep",
        "AllTraffic",
        T0,
        T0 + dt.timedelta(minutes=3),
        metrics={"Invocations": ("Sum",), "ModelLatency": ("Average", "Maximum")},
    )
    assert list(frame.index) == [T0 + dt.timedelta(minutes=m) for m in range(3)]
    assert frame["Invocations:Sum"].tolist() == [120.0, 0.0, 7.0]
    assert frame["ModelLatency:Average"].iloc[0] == 50_000
    assert frame["ModelLatency:Maximum"].iloc[0] == 60_000
    assert np.isnan(frame["ModelLatency:Average"].iloc[1])


def test_long_window_paginates(aws: None) -> None:
    cw = boto3.client("cloudwatch", region_name=REGION)
    minutes = 2 * 24 * 60
    for first in range(0, minutes, 1000):
        cw.put_metric_data(
            Namespace="AWS/SageMaker",
            MetricData=[
                {
                    "MetricName": "InvocationsPerInstance",
                    "Dimensions": DIMS,
                    "Value": float(m % 97),
                    "Timestamp": T0 + dt.timedelta(minutes=m),
                }
                for m in range(first, min(first + 1000, minutes))
            ],
        )
    frame = fetch_variant_metrics(
        cw,
        "ep",
        "AllTraffic",
        T0,
        T0 + dt.timedelta(minutes=minutes),
        metrics={"InvocationsPerInstance": ("Sum",)},
    )
    assert len(frame) == minutes
    assert frame["InvocationsPerInstance:Sum"].tolist() == [float(m % 97) for m in range(minutes)]


def test_percentiles_degrade_to_a_warning(aws: None) -> None:
    cw = boto3.client("cloudwatch", region_name=REGION)
    _put(cw, "Invocations", 0, 5)
    _put(cw, "ModelLatency", 0, 40_000)
    with pytest.warns(RuntimeWarning, match="percentile statistics .*ModelLatency:p99"):
        frame = fetch_variant_metrics(cw, "ep", "AllTraffic", T0, T0 + dt.timedelta(minutes=1))
    assert "ModelLatency:p99" not in frame.columns
    assert frame["Invocations:Sum"].iloc[0] == 5
    assert frame["ModelLatency:Average"].iloc[0] == 40_000
    assert {"Invocation5XXErrors:Sum", "ConcurrentRequestsPerModel:Maximum"} <= set(frame.columns)


def test_ten_second_periods_and_bad_window(aws: None) -> None:
    cw = boto3.client("cloudwatch", region_name=REGION)
    _put(cw, "ConcurrentRequestsPerModel", 0, 3, second=12)
    _put(cw, "ConcurrentRequestsPerModel", 0, 9, second=15)
    frame = fetch_variant_metrics(
        cw,
        "ep",
        "AllTraffic",
        T0,
        T0 + dt.timedelta(seconds=30),
        period_s=10,
        metrics={"ConcurrentRequestsPerModel": ("Maximum",)},
    )
    assert len(frame) == 3
    assert frame["ConcurrentRequestsPerModel:Maximum"].iloc[1] == 9
    with pytest.raises(ValidationError, match="start < end must hold"):
        fetch_variant_metrics(cw, "ep", "AllTraffic", T0, T0)
