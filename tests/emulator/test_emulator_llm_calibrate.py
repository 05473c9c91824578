"""The client side's streaming calibration (tuner.live.llm_calibration) against an emulated
inference component: the wire formats agree, the concurrency limit it finds is the copy's
max_concurrent_sequences, and its TTFT/ITL at concurrency 1 are the token model's."""

from __future__ import annotations

import pytest
from botocore.credentials import Credentials

from tuner.emulator import EmulatorConfig, LlmServerSpec, LocalAws
from tuner.live.llm_calibration import StreamCalibrationSpec, calibrate_stream
from tuner.profiles.tokens import TokenSpec


def test_calibration_finds_the_emulated_copy() -> None:
    # TTFT 100 / 5000 = 20 ms alone, 25 ms with 6 sequences; ITL 10 ms alone, 12.5 ms with 6;
    # a seventh request waits for a whole answer (~250 ms): TTFT past the wait bar (the step's
    # median TTFT + half an answer alone, ~25 + 105 ms) for about 1 request in 7.
    llm = LlmServerSpec(
        prefill_tokens_per_s=5000.0,
        prefill_contention=0.05,
        decode_tokens_per_s=100.0,
        decode_contention=0.05,
        max_concurrent_sequences=6,
    )
    cfg = EmulatorConfig(port=0, speed=1.0, endpoint="cal-ep", inference_component="llm", llm=llm)
    with LocalAws(cfg) as aws:
        spec = StreamCalibrationSpec(
            endpoint="cal-ep",
            inference_component="llm",
            tokens=TokenSpec(prompt_tokens=100, output_tokens=20),
            step_s=1.5,
            max_concurrency=16,
        )
        result = calibrate_stream(
            spec, host=aws.url, region="us-east-1", credentials=Credentials("testing", "testing")
        )
    cap = result.capacity
    assert cap["kind"] == "llm"
    assert cap["max_concurrency_per_copy"] == 6
    first_ttft = cap["ttft_ms"][0]
    first_itl = cap["itl_ms"][0]
    assert first_ttft["concurrency"] == 1 and first_ttft["p50"] == pytest.approx(20.0, abs=5.0)
    assert first_itl["concurrency"] == 1 and first_itl["p50"] == pytest.approx(10.0, abs=1.5)
