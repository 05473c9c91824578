"""The streaming side of a load test's results: TTFT/ITL/token columns per period, summary
figures, and how a trial's load reaches an LLM endpoint (:class:`LlmLoad`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from tuner.profiles.tokens import TokenSpec


@dataclass(frozen=True, kw_only=True)
class LlmLoad:
    """How a trial's load reaches an LLM endpoint: streaming, an inference component, lengths."""

    stream: bool = True
    inference_component: str | None = None
    tokens: TokenSpec = TokenSpec()


def stream_period_columns(
    table: pd.DataFrame, requests: pd.DataFrame, due: np.ndarray, ok: np.ndarray, widths: Any
) -> None:
    """TTFT p50/p99 and ITL p99 over the period's successful streams; tokens/s generated."""
    n = len(table)
    streams = pd.DataFrame(
        {
            "bin": due[ok],
            "ttft": requests["ttft_ms"].to_numpy(dtype=float)[ok],
            "itl": requests["itl_p99_ms"].to_numpy(dtype=float)[ok],
        }
    )
    by = streams.groupby("bin")
    ttft = by["ttft"].quantile([0.5, 0.99]).unstack()
    for p, col in ((0.5, "ttft_p50_ms"), (0.99, "ttft_p99_ms")):
        table[col] = ttft[p].reindex(range(n)).to_numpy() if p in ttft else np.nan
    # The p99 over the period's token gaps, approximated by the p99 of the requests' own p99s.
    itl = by["itl"].quantile(0.99)
    table["itl_p99_ms"] = itl.reindex(range(n)).to_numpy()
    tokens = np.nan_to_num(requests["output_tokens"].to_numpy(dtype=float))
    table["output_tokens_per_s"] = np.bincount(due, weights=tokens, minlength=n) / widths


def stream_summary(requests: pd.DataFrame, ok: pd.Series) -> dict[str, Any]:
    """summary.json's streaming figures (none for InvokeEndpoint runs)."""
    if "ttft_ms" not in requests.columns or not requests["ttft_ms"].notna().any():
        return {}
    done = requests[ok]

    def q(col: str) -> dict[str, float | None]:
        values = done[col].dropna()
        return {
            f"p{int(p * 100)}": float(values.quantile(p)) if len(values) else None
            for p in (0.5, 0.9, 0.99)
        }

    return {
        "ttft_ms": q("ttft_ms"),
        "itl_p99_ms": q("itl_p99_ms"),
        "itl_mean_ms": float(done["itl_mean_ms"].mean()) if len(done) else None,
        "prompt_tokens": int(np.nan_to_num(requests["prompt_tokens"].to_numpy(float)).sum()),
        "output_tokens": int(np.nan_to_num(requests["output_tokens"].to_numpy(float)).sum()),
    }
