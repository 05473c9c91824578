"""Streaming load (InvokeEndpointWithResponseStream): Locust against a server that checks every
SigV4 signature and streams event-stream tokens at a known pace; token traces; the reader."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests.live.stream_server import StreamServer
from tests.live.test_loadgen import CREDS_ENV
from tuner.cli import main
from tuner.eventstream import payload_part, stream_error
from tuner.live.loadgen import LoadTestConfig, run_loadtest
from tuner.profiles.profile_file import load_profile
from tuner.profiles.tokens import TokenSpec
from tuner.records import REQUEST_COLUMNS
from tuner.tokenstream import read_stream

LINE = b'{"token": {"text": " tok"}}\n'


def _reader(parts: list[bytes], step_s: float = 0.01):
    """read(n) over the parts' bytes, and a clock that advances step_s per message read."""
    buf = io.BytesIO(b"".join(parts))
    clock = {"t": 0.0, "reads": 0}

    def read(n: int) -> bytes:
        clock["reads"] += 1
        if clock["reads"] % 2 == 0:  # the second read of each message: its body
            clock["t"] += step_s
        return buf.read(n)

    return read, lambda: clock["t"]


def test_reader_counts_split_and_grouped_tokens_and_times_gaps():
    # 3 tokens in one part, a line split across two parts, then 2 single parts: 7 tokens.
    parts = [
        payload_part(LINE * 3),
        payload_part(LINE[:9]),
        payload_part(LINE[9:] + LINE),
        payload_part(LINE),
        payload_part(LINE),
    ]
    read, clock = _reader(parts)
    s = read_stream(read, 0.0, clock)
    assert s.error == "" and s.output_tokens == 7
    # Parts at 10..50 ms; TTFT is the first part; tokens at 10,10,10,30,30,40,50 ms.
    assert s.ttft_ms == pytest.approx(10.0)
    gaps = [0, 0, 20, 0, 10, 10]
    assert s.itl_mean_ms == pytest.approx(np.mean(gaps))
    assert s.itl_p99_ms == pytest.approx(np.percentile(gaps, 99))
    assert s.latency_ms == pytest.approx(50.0)


def test_reader_reports_stream_errors_and_truncation():
    read, clock = _reader([payload_part(LINE), stream_error("boom")])
    s = read_stream(read, 0.0, clock)
    assert (s.error, s.output_tokens) == ("model_error", 1) and "boom" in s.message
    whole = payload_part(LINE * 2)
    read, clock = _reader([payload_part(LINE), whole[:-5]])
    s = read_stream(read, 0.0, clock)
    assert s.error == "stream_error" and s.output_tokens == 1


def _profile(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "p.toml"
    path.write_text(text)
    return path


def _run(tmp_path: Path, profile: Path, srv: StreamServer, **kw) -> pd.DataFrame:
    cfg = LoadTestConfig(
        profile=load_profile(profile),
        endpoint="llm-ep",
        out_dir=tmp_path / "out",
        host=srv.url,
        env=CREDS_ENV,
        stream=True,
        period_s=10.0,
        **kw,
    )
    return run_loadtest(cfg, progress=None)


def _match(srv: StreamServer, req: pd.DataFrame) -> pd.DataFrame:
    """Each record with the server's log of the same request (nearest receipt to its send)."""
    served = sorted(srv.served, key=lambda r: r.received)
    got = np.array([r.received for r in served])
    rows = req.sort_values("sent_epoch_s").reset_index(drop=True)
    k = np.searchsorted(got, rows["sent_epoch_s"].to_numpy())
    k = np.clip(k, 0, len(got) - 1)
    assert len(set(k.tolist())) == len(rows), "one server record per request"
    rows["server_first"] = [served[i].first_part for i in k]
    rows["server_words"] = [served[i].prompt_words for i in k]
    rows["server_new"] = [served[i].max_new_tokens for i in k]
    return rows


def test_stream_load_times_ttft_against_the_server_and_counts_tokens(tmp_path):
    srv = StreamServer(token_delay_s=0.01, prefill_s=0.03)
    try:
        path = _profile(tmp_path, 'name = "llm"\n[[segment]]\nhold = "20s"\nrps = 4\n')
        result = _run(
            tmp_path,
            path,
            srv,
            speed=2.0,
            inference_component="llama-ic",
            tokens=TokenSpec(prompt_tokens=64, output_tokens=12),
        )
    finally:
        srv.close()
    assert len(srv.served) == 80
    assert all(r.signed for r in srv.served), "every request is correctly signed"
    assert {r.path for r in srv.served} == {"/endpoints/llm-ep/invocations-response-stream"}
    assert {r.component for r in srv.served} == {"llama-ic"}
    req = pd.read_csv(tmp_path / "out" / "requests.csv")
    assert list(req.columns) == list(REQUEST_COLUMNS)
    assert (req["status"] == 200).all() and (req["error"].isna()).all()
    rows = _match(srv, req)
    assert (rows["server_words"] == 64).all() and (rows["server_new"] == 12).all()
    assert (rows["prompt_tokens"] == 64).all() and (rows["output_tokens"] == 12).all()
    # Locust's TTFT against the server's first-PayloadPart time, request by request.
    client_first = rows["sent_epoch_s"] + rows["ttft_ms"] / 1000
    diff_ms = (client_first - rows["server_first"]).abs() * 1000
    # On a 2-core machine shared with other work a request now and then waits for the CPU (one
    # in 80 measured 5.3 ms; the median is ~0.2 ms): 95% within 5 ms, the typical one within 1.
    assert (diff_ms < 5.0).mean() >= 0.95 and diff_ms.median() < 1.0, diff_ms.describe()
    assert rows["ttft_ms"].min() >= 30.0
    # 11 gaps of 10 ms: the mean is (last - first) / 11.
    assert rows["itl_mean_ms"].median() == pytest.approx(10.0, abs=1.5)
    assert (rows["itl_p99_ms"] >= rows["itl_mean_ms"]).all()
    assert (rows["latency_ms"] >= rows["ttft_ms"] + 100).all()
    periods = result.periods
    assert {"ttft_p50_ms", "ttft_p99_ms", "itl_p99_ms", "output_tokens_per_s"} <= set(periods)
    # 4 requests/s x 12 tokens in every 10-s period.
    assert periods["output_tokens_per_s"].tolist() == pytest.approx([48.0, 48.0])
    assert result.summary["output_tokens"] == 80 * 12
    assert result.summary["ttft_ms"]["p50"] == pytest.approx(rows["ttft_ms"].median())


def test_azure_trace_replay_sends_each_requests_tokens_grouped_and_split(tmp_path):
    trace = tmp_path / "azure_code.csv"
    counts = [(17, 5), (3, 9), (250, 2), (40, 13), (8, 1), (99, 7)] * 3
    stamps = pd.date_range("2023-11-16 18:15:46", periods=len(counts), freq="500ms")
    pairs = zip(stamps, counts, strict=True)
    rows = [f"{t:%Y-%m-%d %H:%M:%S.%f}0,{c},{g}\n" for t, (c, g) in pairs]
    trace.write_text("TIMESTAMP,ContextTokens,GeneratedTokens\n" + "".join(rows))
    path = _profile(tmp_path, f'name = "azure"\n[[segment]]\nreplay = "{trace}"\n')
    profile = load_profile(path)
    assert profile.mean_prompt_tokens == pytest.approx(np.mean([c for c, _ in counts]))
    assert profile.mean_output_tokens == pytest.approx(np.mean([g for _, g in counts]))
    srv = StreamServer(token_delay_s=0.004, tokens_per_part=4, split=True)
    try:
        # A master and one worker: the worker learns the trace's token counts from the
        # profile's content alone (it has no file).
        _run(tmp_path, path, srv, speed=2.0, workers=1)
    finally:
        srv.close()
    req = pd.read_csv(tmp_path / "out" / "requests.csv").sort_values("seq")
    assert len(req) == len(counts) and all(r.signed for r in srv.served)
    assert req["prompt_tokens"].tolist() == [c for c, _ in counts]
    assert req["output_tokens"].tolist() == [g for _, g in counts]  # lines split across parts
    sent = sorted(srv.served, key=lambda r: r.received)
    assert [(r.prompt_words, r.max_new_tokens) for r in sent] == counts
    # 4 tokens per part: of 13 tokens' 12 gaps only 3 are the 4-ms pauses.
    thirteen = req[req["output_tokens"] == 13]
    assert thirteen["itl_mean_ms"].median() == pytest.approx(3 * 4.0 / 12, abs=0.6)


@pytest.mark.parametrize(
    ("server", "error", "tokens"),
    [
        ({"no_capacity": True}, "no_capacity", np.nan),
        ({"fail_after": 3}, "model_error", 3.0),
    ],
    ids=["no-capacity", "error-mid-stream"],
)
def test_stream_failures_are_recorded_by_kind(tmp_path, server, error, tokens):
    srv = StreamServer(**server)
    try:
        path = _profile(tmp_path, '[[segment]]\nhold = "4s"\nrps = 2\n')
        result = _run(tmp_path, path, srv, tokens=TokenSpec(prompt_tokens=4, output_tokens=8))
    finally:
        srv.close()
    req = result.requests
    assert len(req) == 8 and (req["error"] == error).all()
    np.testing.assert_array_equal(req["output_tokens"].to_numpy(float), [tokens] * 8)
    assert result.periods[f"failed_{error}"].sum() == 8


@pytest.mark.parametrize(
    ("csv_text", "needle"),
    [
        ("TIMESTAMP,ContextTokens\n2023-11-16 18:15:46,4\n", "missing GeneratedTokens"),
        ("TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16 18:15:46,4,-2\n", "line 2: Gene"),
        ("TIMESTAMP,ContextTokens,GeneratedTokens\nyesterday,4,2\n", "line 2: timestamp must"),
        ("TIMESTAMP,ContextTokens,GeneratedTokens\n", "no rows"),
    ],
    ids=["missing-column", "negative", "bad-time", "empty"],
)
def test_bad_trace_exits_2_with_one_line(tmp_path, capsys, csv_text, needle):
    trace = tmp_path / "trace.csv"
    trace.write_text(csv_text)
    argv = ["loadtest", "--profile", str(trace), "--endpoint", "e", "--stream"]
    assert main([*argv, "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert needle in err and err.count("\n") == 1 and err.startswith("tuner loadtest: error:")


def test_bad_token_options_exit_2(tmp_path, capsys):
    path = _profile(tmp_path, '[[segment]]\nhold = "1m"\nrps = 1\n')
    argv = ["loadtest", "--profile", str(path), "--endpoint", "e", "--out", str(tmp_path / "o")]
    assert main([*argv, "--stream", "--prompt-tokens", "0"]) == 2
    assert "--prompt-tokens must be an integer >= 1, got 0" in capsys.readouterr().err
    assert main([*argv, "--stream", "--token-dist", "lognormal", "--token-sigma", "9"]) == 2
    assert "--token-sigma must be in (0, 3], got 9" in capsys.readouterr().err


def test_token_draws_are_seeded_per_request_and_keep_the_mean():
    from tuner.profiles.tokens import TokenDistribution

    spec = TokenSpec(
        prompt_tokens=512, output_tokens=256, distribution=TokenDistribution.LOGNORMAL, seed=4
    )
    p, o = spec.draw(np.arange(40_000))
    assert p.mean() == pytest.approx(512, rel=0.02) and o.mean() == pytest.approx(256, rel=0.02)
    assert np.std(np.log(p)) == pytest.approx(0.5, rel=0.05)
    # A worker drawing only its share gets the same counts for the same seqs.
    share = np.arange(3, 40_000, 4)
    assert (spec.draw(share)[0] == p[share]).all()
    uni = TokenSpec(prompt_tokens=100, output_tokens=10, distribution=TokenDistribution.UNIFORM)
    p, o = uni.draw(np.arange(10_000))
    assert p.min() >= 50 and p.max() <= 150 and p.mean() == pytest.approx(100, rel=0.02)
    body = json.loads(__import__("tuner.profiles.tokens", fromlist=["x"]).stream_body(3, 7))
    assert body == {"inputs": "tok tok tok", "parameters": {"max_new_tokens": 7}, "stream": True}


def test_per_period_stream_columns_by_hand():
    from tuner.live.periods import per_period
    from tuner.profiles.profile_file import parse_profile

    profile = parse_profile({"segment": [{"hold": "20s", "rps": 0.2}]})
    req = pd.DataFrame(
        {
            "seq": [0, 1, 2, 3],
            "scheduled_s": [2.5, 7.5, 12.5, 17.5],
            "sent_epoch_s": [1002.5, 1007.5, 1012.5, 1017.5],
            "latency_ms": [900.0, 1100.0, 800.0, 50.0],
            "status": [200, 200, 200, 400],
            "error": ["", "", "", "no_capacity"],
            "worker": [0, 0, 0, 0],
            "ttft_ms": [100.0, 300.0, 50.0, np.nan],
            "itl_mean_ms": [20.0, 22.0, 21.0, np.nan],
            "itl_p99_ms": [30.0, 40.0, 25.0, np.nan],
            "prompt_tokens": [10, 10, 10, 10],
            "output_tokens": [40, 50, 30, np.nan],
        }
    )
    t = per_period(req, profile, period_s=10.0, speed=1.0, start_epoch_s=1000.0)
    assert t["ttft_p50_ms"].tolist() == pytest.approx([200.0, 50.0])
    assert t["ttft_p99_ms"].tolist() == pytest.approx([100 + 0.99 * 200, 50.0])
    assert t["itl_p99_ms"].tolist() == pytest.approx([30 + 0.99 * 10, 25.0])
    assert t["output_tokens_per_s"].tolist() == pytest.approx([9.0, 3.0])
    assert t["failed_no_capacity"].tolist() == [0, 1]
    # Without streaming columns the table has none of these.
    plain = per_period(
        req.drop(columns=["ttft_ms"]), profile, period_s=10.0, speed=1.0, start_epoch_s=1000.0
    )
    assert "ttft_p50_ms" not in plain.columns
