"""`make bench`: streaming InvokeEndpointWithResponseStream requests/s from one Locust process.

A local asyncio server answers every request at once with ``max_new_tokens`` one-token
PayloadParts in HTTP/1.1 chunks, so what is measured is the load generator: signing, sending,
reading the event stream message by message and timing every token.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.live.test_loadgen import FastServer, measure_rate
from tuner.eventstream import payload_part
from tuner.live.loadgen import LOCUSTFILE

LINE = b'{"token": {"text": " tok"}}\n'


class FastStreamServer(FastServer):
    """FastServer streaming max_new_tokens parts; counts the tokens sent."""

    def __init__(self) -> None:
        self.tokens = 0
        part = payload_part(LINE)
        chunk = b"%x\r\n%s\r\n" % (len(part), part)
        head = (
            b"HTTP/1.1 200 OK\r\nContent-Type: application/vnd.amazon.eventstream\r\n"
            b"X-Amzn-SageMaker-Content-Type: application/jsonlines\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n"
        )
        replies: dict[int, bytes] = {}

        def reply(body: bytes) -> bytes:
            n = int(json.loads(body)["parameters"]["max_new_tokens"])
            self.tokens += n
            if n not in replies:
                replies[n] = head + chunk * n + b"0\r\n\r\n"
            return replies[n]

        super().__init__(reply)


@pytest.mark.benchmark
def test_bench_streaming_requests_per_locust_process(tmp_path: Path):
    seconds, rounds = 15, 2
    srv = FastStreamServer()
    profile = tmp_path / "p.toml"
    profile.write_text('[[segment]]\nhold = "30s"\nrps = 30000\n')
    rates: dict[int, list[float]] = {16: [], 128: []}
    try:
        for _ in range(rounds):
            for tokens in rates:
                cmd = [
                    sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--headless",
                    "-u", "1", "-t", f"{seconds}s", "--host", srv.url, "--profile", str(profile),
                    "--endpoint-name", "bench", "--requests-csv", str(tmp_path / "r.csv"),
                    "--max-inflight", "1000", "--loglevel", "ERROR", "--stream",
                    "--prompt-tokens", "64", "--output-tokens", str(tokens),
                ]  # fmt: skip
                rates[tokens].append(measure_rate(srv, cmd, seconds, tmp_path))
    finally:
        srv.close()
    lines = "\n".join(
        f"  {tokens:4d} output tokens/request: {' '.join(f'{r:6.0f}' for r in rs)}  median "
        f"{np.median(rs):6.0f} streaming req/s = {np.median(rs) * tokens:8.0f} tokens/s"
        for tokens, rs in rates.items()
    )
    print(
        f"\nbench streaming loadgen: InvokeEndpointWithResponseStream requests/s from one Locust "
        f"process to a local server (one token per PayloadPart, every token timed), {rounds} "
        f"alternating rounds of {seconds} s (noisy on a shared machine):\n{lines}\n"
        f"  signatures checked {srv.checked}, bad {srv.bad}"
    )
    assert srv.bad == 0 and srv.checked > 10
    assert min(min(r) for r in rates.values()) > 0
