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


def _calibrate_args(*extra: str):
    from tuner.cli import build_parser

    return build_parser().parse_args(["calibrate", "--endpoint", "ep", *extra])


def test_calibrate_defaults_resolve_per_mode_and_explicit_values_win():
    """--stream's defaults (30 s steps, 1% errors, a g6.2xlarge's price) apply only to what is
    left out: an explicit --step-s 60 (the step test's default) is kept, not taken as unset."""
    from tuner.commands.calibrate import resolve_mode_defaults, stream_spec_from

    spec = stream_spec_from(_calibrate_args("--stream"))
    assert (spec.step_s, spec.max_error_rate, spec.hourly_usd) == (30.0, 0.01, 0.9776)
    given = ("--step-s", "60", "--max-error-rate", "0.001", "--hourly-usd", "0.23")
    spec = stream_spec_from(_calibrate_args("--stream", *given))
    assert (spec.step_s, spec.max_error_rate, spec.hourly_usd) == (60.0, 0.001, 0.23)
    args = _calibrate_args("--slo-p99-ms", "300")
    resolve_mode_defaults(args)
    assert (args.step_s, args.max_error_rate, args.hourly_usd) == (60.0, 0.001, 0.23)
    args = _calibrate_args("--slo-p99-ms", "300", "--step-s", "30")
    resolve_mode_defaults(args)
    assert args.step_s == 30.0


def test_calibrate_help_shows_both_defaults(capsys):
    with pytest.raises(SystemExit):
        main(["calibrate", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "(default: 60; 30 with --stream, real seconds)" in text
    assert "(default: 0.001; 0.01 with --stream)" in text
    assert "(default: 0.23; 0.9776 with --stream, an ml.g6.2xlarge)" in text
