"""tuner calibrate --stream against a streaming server that runs at most K sequences at once
(more queue), at a known prefill time and token pace: it must find K and write the token-aware
capacity file (LLM-INTERFACES.md section 3), parsed back here."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from tests.live.stream_server import StreamServer
from tests.live.test_loadgen import CREDS_ENV
from tuner.cli import main

K = 6


def test_calibrate_stream_finds_the_concurrency_limit(tmp_path, monkeypatch, capsys):
    for key, value in CREDS_ENV.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)
    srv = StreamServer(token_delay_s=0.008, prefill_s=0.02, slots=K)
    out = tmp_path / "llm-capacity.json"
    try:
        code = main(
            [
                "calibrate", "--stream", "--endpoint", "llm-ep", "--endpoint-url", srv.url,
                "--inference-component", "llama-ic", "--prompt-tokens", "128",
                "--output-tokens", "10", "--step-s", "1.5", "--ttft-slack-ms", "30",
                "--max-concurrency", "16", "--no-hold", "--out", str(out),
            ]
        )  # fmt: skip
    finally:
        srv.close()
    assert code == 0, capsys.readouterr().err
    assert all(r.signed for r in srv.served) and {r.component for r in srv.served} == {"llama-ic"}
    cap = json.loads(out.read_text())
    assert cap["kind"] == "llm" and cap["prompt_tokens"] == 128 and cap["output_tokens"] == 10
    assert abs(cap["max_concurrency_per_copy"] - K) <= 0.1 * K
    conc = [p["concurrency"] for p in cap["ttft_ms"]]
    assert conc == sorted(conc) and conc[0] == 1 and conc[-1] == cap["max_concurrency_per_copy"]
    # Within the limit a request starts at once: TTFT ~ the 20-ms prefill, ITL ~ 8 ms.
    for point in cap["ttft_ms"]:
        assert 20 <= point["p50"] < 45, point
    for point in cap["itl_ms"]:
        assert point["p50"] == pytest.approx(8, abs=3), point
    try:  # the contract's loader (helper ic's tuner.model.llm_capacity) reads it, once merged
        from tuner.model.llm_capacity import LlmCapacity
    except ImportError:
        LlmCapacity = None
    if LlmCapacity is not None:
        loaded = LlmCapacity.load(out)
        assert loaded.max_concurrency_per_copy == cap["max_concurrency_per_copy"]
    steps = pd.read_csv(tmp_path / "llm-capacity-steps.csv")
    over = steps[steps["concurrency"] > K]
    assert len(over) and (over["passed"] == 0).all()
    # One more than K waits for a whole answer (~20 + 9 x 8 ms): its TTFT p99 shows it.
    assert (over["ttft_p99_ms"] > 80).all()
    assert "one copy serves" in capsys.readouterr().out
