"""CloudWatch: the AWS/SageMaker metrics of one variant as one DataFrame indexed by timestamp."""

from __future__ import annotations

import datetime as dt
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
from botocore.exceptions import BotoCoreError, ClientError

from tuner.aws.clients import translate_client_error
from tuner.errors import ValidationError

NAMESPACE = "AWS/SageMaker"
# metric -> statistics fetched by default. Sums are counts (a missing bucket means 0); the rest
# are gauges (a missing bucket means unknown). Latencies are in microseconds, as AWS emits them.
SAGEMAKER_METRICS: dict[str, tuple[str, ...]] = {
    "Invocations": ("Sum",),
    "InvocationsPerInstance": ("Sum",),
    "ModelLatency": ("Average", "p50", "p99"),
    "OverheadLatency": ("Average",),
    "Invocation4XXErrors": ("Sum",),
    "Invocation5XXErrors": ("Sum",),
    "ConcurrentRequestsPerModel": ("Maximum",),
}
_COUNT_STATS = {"Sum", "SampleCount"}
# GetMetricData returns at most 100,800 datapoints per call and takes 500 queries [DOC].
_MAX_QUERIES = 500


def _is_percentile(stat: str) -> bool:
    return stat.startswith("p") and stat[1:].replace(".", "", 1).isdigit()


def _utc(t: dt.datetime) -> dt.datetime:
    return t.replace(tzinfo=dt.UTC) if t.tzinfo is None else t.astimezone(dt.UTC)


def column_name(metric: str, stat: str) -> str:
    """``Invocations:Sum``: the DataFrame column of one metric statistic."""
    return f"{metric}:{stat}"


def fetch_variant_metrics(
    client: Any,
    endpoint: str,
    variant: str,
    start: dt.datetime,
    end: dt.datetime,
    *,
    period_s: int = 60,
    metrics: Mapping[str, Sequence[str]] | None = None,
) -> pd.DataFrame:
    """One row per period in [start, end), one column per ``metric:stat``.

    Sum columns fill missing buckets with 0; other statistics leave NaN. A statistic the backend
    cannot compute (moto's percentiles) is dropped with a RuntimeWarning instead of failing.
    """
    dims = [
        {"Name": "EndpointName", "Value": endpoint},
        {"Name": "VariantName", "Value": variant},
    ]
    return _fetch(client, dims, start, end, period_s=period_s, metrics=metrics)


def fetch_component_metrics(
    client: Any,
    component: str,
    start: dt.datetime,
    end: dt.datetime,
    *,
    period_s: int = 60,
    metrics: Mapping[str, Sequence[str]],
) -> pd.DataFrame:
    """:func:`fetch_variant_metrics` for an inference component (dimension
    ``InferenceComponentName``, as SageMaker publishes its per-copy metrics)."""
    dims = [{"Name": "InferenceComponentName", "Value": component}]
    return _fetch(client, dims, start, end, period_s=period_s, metrics=metrics)


def _fetch(
    client: Any,
    dims: list[dict[str, str]],
    start: dt.datetime,
    end: dt.datetime,
    *,
    period_s: int,
    metrics: Mapping[str, Sequence[str]] | None,
) -> pd.DataFrame:
    if period_s not in (10, 60) and period_s % 60:
        raise ValidationError(f"period_s must be 10, or a multiple of 60, got {period_s}")
    start, end = _utc(start), _utc(end)
    # Align to the period so buckets match CloudWatch's own minute boundaries.
    epoch = int(start.timestamp()) // period_s * period_s
    start = dt.datetime.fromtimestamp(epoch, dt.UTC)
    if end <= start:
        raise ValidationError(
            f"start < end must hold, got {start.isoformat()} >= {end.isoformat()}"
        )
    wanted = metrics if metrics is not None else SAGEMAKER_METRICS
    pairs = [(m, s) for m, stats in wanted.items() for s in stats]
    plain = [(m, s) for m, s in pairs if not _is_percentile(s)]
    percentiles = [(m, s) for m, s in pairs if _is_percentile(s)]
    try:
        values = _query(client, dims, start, end, period_s, plain) if plain else {}
    except (ClientError, BotoCoreError) as e:
        raise translate_client_error(e, "GetMetricData") from e
    if percentiles:
        # Asked apart so a backend that cannot compute them (moto answers HTTP 500 or, in
        # process, raises) costs only these columns.
        try:
            values.update(_query(client, dims, start, end, period_s, percentiles))
        except Exception as e:  # noqa: BLE001 - any backend failure degrades to a warning
            dropped = ", ".join(column_name(m, s) for m, s in percentiles)
            warnings.warn(
                f"CloudWatch could not compute percentile statistics ({dropped}); "
                f"continuing without them: {type(e).__name__}: {e}",
                RuntimeWarning,
                stacklevel=2,
            )
            pairs = plain
    n = int(np.ceil((end - start).total_seconds() / period_s))
    index = pd.date_range(start, periods=n, freq=f"{period_s}s", tz="UTC", name="timestamp")
    frame = pd.DataFrame(index=index)
    for metric, stat in pairs:
        col = column_name(metric, stat)
        series = pd.Series(values.get(col, {}), dtype="float64")
        if len(series):
            series.index = pd.DatetimeIndex(series.index).tz_convert("UTC")
        series = series.reindex(index)
        frame[col] = series.fillna(0.0) if stat in _COUNT_STATS else series
    return frame


def _query(
    client: Any,
    dims: list[dict[str, str]],
    start: dt.datetime,
    end: dt.datetime,
    period_s: int,
    pairs: Sequence[tuple[str, str]],
) -> dict[str, dict[dt.datetime, float]]:
    out: dict[str, dict[dt.datetime, float]] = {}
    for first in range(0, len(pairs), _MAX_QUERIES):
        chunk = pairs[first : first + _MAX_QUERIES]
        queries = [
            {
                "Id": f"q{i}",
                "MetricStat": {
                    "Metric": {"Namespace": NAMESPACE, "MetricName": m, "Dimensions": dims},
                    "Period": period_s,
                    "Stat": s,
                },
                "ReturnData": True,
            }
            for i, (m, s) in enumerate(chunk)
        ]
        by_id = {f"q{i}": column_name(m, s) for i, (m, s) in enumerate(chunk)}
        kwargs: dict[str, Any] = {
            "MetricDataQueries": queries,
            "StartTime": start,
            "EndTime": end,
            "ScanBy": "TimestampAscending",
        }
        while True:
            resp = client.get_metric_data(**kwargs)
            for result in resp.get("MetricDataResults", []):
                col = by_id[result["Id"]]
                series = out.setdefault(col, {})
                stamps, values = result.get("Timestamps", []), result.get("Values", [])
                for ts, value in zip(stamps, values, strict=True):
                    series[_utc(ts)] = float(value)
            token = resp.get("NextToken")
            if not token:
                break
            kwargs["NextToken"] = token
    return out


def history_period_s(days: float) -> int:
    """The finest period CloudWatch still keeps for data ``days`` old.

    CloudWatch keeps 60-s data 15 days, 5-minute data 63 days and hourly data 455 days [DOC].
    """
    if days <= 15:
        return 60
    if days <= 63:
        return 300
    return 3600


def collect_history(
    client: Any,
    endpoint: str,
    variant: str,
    start: dt.datetime,
    end: dt.datetime,
    *,
    period_s: int = 60,
) -> pd.DataFrame:
    """Invocations per period in the replay format (``timestamp,invocations``) plus instances.

    SageMaker publishes no instance-count metric; ``instances`` is derived per period as
    Invocations / InvocationsPerInstance (each request adds 1/N to the latter), and is empty
    where there was no traffic.
    """
    frame = fetch_variant_metrics(
        client,
        endpoint,
        variant,
        start,
        end,
        period_s=period_s,
        metrics={"Invocations": ("Sum",), "InvocationsPerInstance": ("Sum",)},
    )
    invocations = frame["Invocations:Sum"]
    per_instance = frame["InvocationsPerInstance:Sum"]
    instances = (invocations / per_instance.where(per_instance > 0)).round(2)
    out = pd.DataFrame(
        {
            "timestamp": frame.index.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "invocations": invocations.to_numpy(),
            "instances": instances.to_numpy(),
        }
    )
    return out
