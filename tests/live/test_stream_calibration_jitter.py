"""The streaming calibration's queueing rule (tuner.live.llm_calibration.QueueRule) holds under
real-time jitter: stalls of a few ms on some first tokens, which on an accelerated clock read as
whole answers, must neither hide the queue past the limit nor fail a step within it.

The synthetic test judges hand-made steps; the end-to-end one runs calibrate_stream against the
streaming test server with K slots and random stalls outside the slot queue."""

from __future__ import annotations

import numpy as np
from botocore.credentials import Credentials

from tests.live.stream_server import StreamServer
from tests.live.test_loadgen import CREDS_ENV
from tuner.live import QueueRule, StreamCalibrationSpec, calibrate_stream
from tuner.profiles.tokens import TokenSpec


def test_one_noisy_concurrency_1_step_does_not_hide_the_queue() -> None:
    # Concurrency 1: 100 requests, TTFT 200 ms, answers 1500 ms; 3 stalled to 1800 ms TTFT
    # (p99 1800: the old bar, 3 x p99 = 5400 ms, would pass any queue up to 5 s).
    ttft_1 = np.array([200.0] * 97 + [1800.0] * 3)
    answer_1 = ttft_1 + 1300.0
    rule = QueueRule.from_first_step(ttft_1, answer_1, ttft_factor=3.0, ttft_slack_ms=50.0)
    # Margin: max(2 x 200, 50, 1500 / 2) = 750 ms; the bar 200 + 750; the stalls 3% past it.
    assert (rule.base_ms, rule.margin_ms, rule.stalled_share) == (200.0, 750.0, 0.03)
    assert rule.wait_bar_ms(ttft_1) == 950.0 and not rule.queued(1, ttft_1)
    # Concurrency 8 within the limit: contended prefill (600 ms median, bar 1350) and 8% stalls
    # past 1350: 8% <= 3% + 1/16.
    at_8 = np.array([600.0] * 92 + [1800.0] * 8)
    assert rule.waited_share(at_8) == 0.08 and not rule.queued(8, at_8)
    # Concurrency 9, one past: 1 in 9 waits a whole answer (~2900 ms): 11% + 3% stalls past the
    # bar (650 + 750) > 3% + 1/18 = 8.6%.
    at_9 = np.array([650.0] * 86 + [3300.0] * 11 + [1800.0] * 3)
    assert rule.wait_bar_ms(at_9) == 1400.0 and rule.waited_share(at_9) == 0.14
    assert rule.queued(9, at_9)
    assert np.percentile(at_9, 99) < 3 * np.percentile(ttft_1, 99)  # the old rule's miss
    # Concurrency 16, twice the limit: every request waits (none past its own step's median,
    # but the median is past concurrency 1's bar).
    at_16 = np.full(100, 3600.0)
    assert rule.waited_share(at_16) == 0.0 and rule.queued(16, at_16)
    # A step just under concurrency 1's bar with no tail passes; one answer-long wait in 9
    # fails it.
    assert not rule.queued(9, np.full(90, 940.0))
    assert rule.queued(9, np.array([940.0] * 80 + [940.0 + 760.0] * 10))


def test_margin_follows_slack_and_factor_when_they_are_larger() -> None:
    ttft = np.array([20.0, 21.0, 22.0])
    answer = np.array([40.0, 41.0, 42.0])
    assert QueueRule.from_first_step(ttft, answer, 2.0, 50.0).margin_ms == 50.0
    assert QueueRule.from_first_step(ttft, answer, 4.0, 10.0).margin_ms == 21.0 * 3


K = 6


def test_calibration_finds_k_despite_stalls(monkeypatch) -> None:
    for key, value in CREDS_ENV.items():
        monkeypatch.setenv(key, value)
    # Answers ~10 + 7 x 6 = 52 ms; 10% of requests stall 5-30 ms before their first token.
    srv = StreamServer(
        token_delay_s=0.006, prefill_s=0.01, slots=K, stall_share=0.1, stall_s=(0.005, 0.03)
    )
    spec = StreamCalibrationSpec(
        endpoint="llm-ep",
        inference_component="llama-ic",
        tokens=TokenSpec(prompt_tokens=64, output_tokens=8),
        step_s=1.5,
        ttft_slack_ms=10.0,
        max_concurrency=16,
    )
    try:
        result = calibrate_stream(
            spec,
            host=srv.url,
            region=CREDS_ENV["AWS_REGION"],
            credentials=Credentials(
                CREDS_ENV["AWS_ACCESS_KEY_ID"], CREDS_ENV["AWS_SECRET_ACCESS_KEY"]
            ),
            log=print,
        )
    finally:
        srv.close()
    stalled = np.mean([r.stall_s > 0 for r in srv.served])
    assert 0.05 < stalled < 0.15  # the jitter happened, at about the share asked
    steps = result.steps
    assert abs(result.capacity["max_concurrency_per_copy"] - K) <= 0.1 * K, steps
    over = steps[steps["concurrency"] > K]
    assert len(over) and (over["passed"] == 0).all()
    # Little's law: past K answered requests per second stop growing with concurrency.
    rate = steps.set_index("concurrency")["requests_per_s"]
    assert rate[4.0] > 1.5 * rate[2.0]
    assert rate[8.0] < 1.2 * rate[float(K)]
