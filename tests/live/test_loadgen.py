"""Open-loop Locust load against a local server that checks every SigV4 signature.

Locust only ever runs as a subprocess (it monkey-patches the process with gevent on import). The
server here recomputes each request's signature with botocore from the same fake credentials.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from tuner.cli import main
from tuner.live.loadgen import LOCUSTFILE, LoadTestConfig, run_loadtest
from tuner.live.periods import per_period
from tuner.profiles.profile_file import load_profile, parse_profile

AK, SK, REGION = "AKIDTUNERTEST0001", "tuner/test/secret/key", "us-east-1"
CREDS_ENV = {
    "AWS_ACCESS_KEY_ID": AK,
    "AWS_SECRET_ACCESS_KEY": SK,
    "AWS_REGION": REGION,
    "AWS_CONFIG_FILE": "/dev/null",
    "AWS_SHARED_CREDENTIALS_FILE": "/dev/null",
}


def signature_ok(host: str, path: str, headers, body: bytes) -> bool:
    """Recompute the SigV4 signature of a received request with botocore."""
    auth = headers.get("Authorization", "")
    if not auth.startswith("AWS4-HMAC-SHA256 "):
        return False
    fields = dict(
        p.strip().split("=", 1) for p in auth.removeprefix("AWS4-HMAC-SHA256 ").split(",")
    )
    key, _day, region, service, term = fields["Credential"].split("/")
    if (key, region, service, term) != (AK, REGION, "sagemaker", "aws4_request"):
        return False
    signed = {h: headers[h] for h in fields["SignedHeaders"].split(";")}
    request = AWSRequest(method="POST", url=f"http://{host}{path}", data=body, headers=signed)
    request.context["timestamp"] = headers["X-Amz-Date"]
    signer = SigV4Auth(Credentials(AK, SK), "sagemaker", REGION)
    expected = signer.signature(
        signer.string_to_sign(request, signer.canonical_request(request)), request
    )
    return expected == fields["Signature"]


class SigV4Server:
    """InvokeEndpoint on 127.0.0.1: verifies signatures, answers after delay_s, records all.

    A body {"mode": "throttle"|"model_error"|"slow"} picks a SageMaker-style answer.
    """

    def __init__(self, delay_s: float = 0.0) -> None:
        self.delay_s = delay_s
        self.received: list[tuple[float, str, bool, bytes, dict]] = []
        self.inflight = self.max_inflight = 0
        self.lock = threading.Lock()
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def _handler(self):
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:
                pass

            def do_POST(self) -> None:
                at = time.time()
                with server.lock:
                    server.inflight += 1
                    server.max_inflight = max(server.max_inflight, server.inflight)
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                ok = signature_ok(self.headers["Host"], self.path, self.headers, body)
                server.received.append((at, self.path, ok, body, dict(self.headers)))
                mode = json.loads(body).get("mode", "ok") if body.startswith(b"{") else "ok"
                time.sleep(server.delay_s + (1.0 if mode == "slow" else 0.0))
                code, extra, out = 200, {}, b'{"predictions": [0.5]}'
                if not ok:
                    code, out = 403, b'{"__type": "InvalidSignatureException"}'
                elif mode == "throttle":
                    code, out = 400, b'{"message": "Rate exceeded"}'
                    extra = {"x-amzn-ErrorType": "ThrottlingException:http://internal.amazon.com/"}
                elif mode == "model_error":
                    code, out = 424, b'{"__type": "ModelError", "message": "boom"}'
                self.send_response(code)
                for k, v in {"Content-Type": "application/json", **extra}.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(out)))
                self.end_headers()
                self.wfile.write(out)
                with server.lock:
                    server.inflight -= 1

        return Handler

    def arrivals(self) -> np.ndarray:
        return np.array([r[0] for r in self.received])

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server():
    srv = SigV4Server()
    yield srv
    srv.close()


def _profile(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "p.toml"
    path.write_text(text)
    return path


def _run(tmp_path, profile_path, srv, **kw):
    cfg = LoadTestConfig(
        profile=load_profile(profile_path),
        endpoint="my-endpoint",
        out_dir=tmp_path / "out",
        host=srv.url,
        env=CREDS_ENV,
        **kw,
    )
    return run_loadtest(cfg, progress=None)


def _per_minute_at_server(srv, result, speed: float, minutes: int) -> np.ndarray:
    # Profile time of each receipt; the last request of the last minute may land a hair after.
    t = (srv.arrivals() - result.summary["start_epoch_s"]) * speed
    return np.bincount(np.clip((t // 60).astype(int), 0, minutes - 1), minlength=minutes)


PROFILES = {
    "steady": '[[segment]]\nhold = "2m"\nrps = 12\n',
    "ramp": '[[segment]]\nramp = "2m"\nfrom_rps = 4\nto_rps = 20\n',
    "spike": '[[segment]]\nspike = "2m"\nbaseline_rps = 6\npeak_rps = 30\nat = "30s"\n'
    'rise = "10s"\nhold = "30s"\nfall = "20s"\n',
}


# The spike runs in `make test`; steady and ramp, the same path at gentler rates, in `make bench`.
@pytest.mark.parametrize(
    "kind",
    [pytest.param(k, marks=() if k == "spike" else pytest.mark.slow) for k in PROFILES],
    ids=list(PROFILES),
)
def test_per_minute_counts_follow_the_profile(tmp_path, server, kind):
    speed = 15.0
    path = _profile(tmp_path, f'name = "{kind}"\n' + PROFILES[kind])
    expected = load_profile(path).counts(60)
    result = _run(tmp_path, path, server, speed=speed)
    at_server = _per_minute_at_server(server, result, speed, len(expected))
    assert all(ok for _, _, ok, _, _ in server.received), "every request is correctly signed"
    assert {p for _, p, _, _, _ in server.received} == {"/endpoints/my-endpoint/invocations"}
    assert np.all(np.abs(at_server - expected) <= 0.01 * expected), (at_server, expected)
    periods = result.periods
    assert np.all(np.abs(periods["sent"] - expected) <= 0.01 * expected)
    assert periods["ok"].sum() == len(server.received) == round(expected.sum())
    req = pd.read_csv(tmp_path / "out" / "requests.csv")
    assert list(req.columns[:6]) == [
        "seq",
        "scheduled_s",
        "sent_epoch_s",
        "latency_ms",
        "status",
        "error",
    ]
    assert (req["seq"] == np.arange(len(req))).all() and (req["status"] == 200).all()


def test_open_loop_holds_the_rate_when_the_server_is_slow(tmp_path):
    srv = SigV4Server(delay_s=0.5)
    try:
        speed = 12.0
        path = _profile(tmp_path, '[[segment]]\nhold = "2m"\nrps = 10\n')
        result = _run(tmp_path, path, srv, speed=speed)
    finally:
        srv.close()
    # 120 requests/s real at 0.5 s each: ~60 in flight; a closed loop would have slowed down.
    at_server = _per_minute_at_server(srv, result, speed, 2)
    assert np.all(np.abs(at_server - 600) <= 6), at_server
    assert srv.max_inflight >= 40
    assert np.all(np.abs(result.periods["sent"] - 600) <= 6)
    lat = result.requests["latency_ms"]
    assert lat.min() >= 500 and lat.median() < 1500
    assert (result.periods["latency_p50_ms"] >= 500).all()
    # Requests left on time: the send lag stays far below the server's 500 ms.
    assert result.summary["send_lag_ms"]["p99"] < 250


def test_master_and_two_workers_deliver_the_profile(tmp_path, server):
    speed = 15.0
    path = _profile(
        tmp_path, '[[segment]]\nhold = "1m"\nrps = 10\n[[segment]]\nramp = "1m"\nto_rps = 30\n'
    )
    result = _run(tmp_path, path, server, speed=speed, workers=2)
    expected = np.array([600.0, 1200.0])
    at_server = _per_minute_at_server(server, result, speed, 2)
    assert np.all(np.abs(at_server - expected) <= 0.02 * expected), at_server
    assert all(ok for _, _, ok, _, _ in server.received)
    req = result.requests
    assert sorted(req["seq"]) == list(range(1800))  # each scheduled request sent exactly once
    assert req.groupby("worker").size().to_dict() == {0: 900, 1: 900}
    assert not list((tmp_path / "out").glob("requests.worker*.csv"))


REPLAY_CSV = "timestamp,invocations\n2024-06-03T08:00:00Z,600\n2024-06-03T08:01:00Z,1200\n"


def test_the_loaded_profile_is_played_after_its_files_are_gone(tmp_path, server):
    """The load test plays the Profile object: its TOML and replay CSV are deleted first."""
    (tmp_path / "hist.csv").write_text(REPLAY_CSV)
    toml = _profile(tmp_path, 'name = "hist"\n[[segment]]\nreplay = "hist.csv"\n')
    profile = load_profile(toml)
    toml.unlink()
    (tmp_path / "hist.csv").unlink()
    speed = 15.0
    result = run_loadtest(
        LoadTestConfig(
            profile=profile,
            endpoint="my-endpoint",
            out_dir=tmp_path / "out",
            host=server.url,
            env=CREDS_ENV,
            speed=speed,
        ),
        progress=None,
    )
    expected = np.array([600.0, 1200.0])  # 10 then 20 rps, a minute each
    assert profile.counts(60).tolist() == expected.tolist()
    at_server = _per_minute_at_server(server, result, speed, 2)
    assert np.all(np.abs(at_server - expected) <= 0.01 * expected), at_server
    assert result.summary["profile"] == "hist" and result.summary["ok"] == 1800
    # Locust got the content in a private file, removed after the run; nothing else was written.
    command = result.summary["commands"][0].split()
    content = Path(command[command.index("--profile-content") + 1])
    assert "--profile" not in command and not content.exists()
    assert not content.parent.exists() and content.parent.parent != tmp_path / "out"
    assert sorted(f.name for f in tmp_path.iterdir()) == ["out"]


def test_cli_plays_a_replay_csv_without_writing_a_profile_file(tmp_path, server, monkeypatch):
    for key, value in CREDS_ENV.items():
        monkeypatch.setenv(key, value)
    csv = tmp_path / "hist.csv"
    csv.write_text(REPLAY_CSV)
    out = tmp_path / "out"
    argv = ["loadtest", "--profile", str(csv), "--endpoint", "my-endpoint", "--host", server.url]
    assert main([*argv, "--speed", "15", "--out", str(out)]) == 0
    assert len(server.received) == 1800
    assert pd.read_csv(out / "periods.csv")["ok"].tolist() == [600, 1200]
    # No replay TOML beside the results (tune and trial used to write OUT/profiles/hist.toml).
    assert not list(out.rglob("*.toml")) and not (out / "profiles").exists()
    assert sorted(f.name for f in tmp_path.iterdir()) == ["hist.csv", "out"]


def test_errors_payloads_and_variant_are_recorded(tmp_path, server):
    payloads = tmp_path / "bodies.jsonl"
    modes = ["ok", "throttle", "model_error", "ok"]
    payloads.write_text(
        "".join(json.dumps({"mode": m, "i": i}) + "\n" for i, m in enumerate(modes))
    )
    path = _profile(tmp_path, 'noise = "poisson"\nseed = 5\n[[segment]]\nhold = "40s"\nrps = 10\n')
    result = _run(
        tmp_path, path, server, speed=8.0, payload=payloads, variant="blue", seed=11, period_s=10
    )
    # Poisson arrivals with the run's seed: exactly the profile's seeded counts per period.
    realised = load_profile(path).counts(10, seed=11)
    assert result.periods["scheduled"].tolist() == realised.tolist() != [100.0] * 4
    assert result.periods["profile_requests"].tolist() == realised.tolist()
    req = result.requests.sort_values("seq")
    want = np.array(modes)[req["seq"] % 4]
    assert (req["error"][want == "throttle"] == "throttled").all()
    assert (req["status"][want == "throttle"] == 400).all()
    assert (req["error"][want == "model_error"] == "model_error").all()
    assert (req["status"][want == "model_error"] == 424).all()
    assert (req["error"][want == "ok"] == "").all()
    per_body = np.bincount(req["seq"] % 4, minlength=4).tolist()
    assert result.summary["failures"] == {"throttled": per_body[1], "model_error": per_body[2]}
    assert result.periods["failed_throttled"].sum() == per_body[1]
    # Cycled by seq: the answers per seq above follow seq % 4, and so do the bodies received.
    bodies = [json.loads(b)["i"] for _, _, _, b, _ in server.received]
    assert np.bincount(bodies, minlength=4).tolist() == per_body
    assert {h.get("X-Amzn-SageMaker-Target-Variant") for *_, h in server.received} == {"blue"}


def test_in_flight_cap_is_enforced_and_reported(tmp_path, server):
    payloads = tmp_path / "slow.jsonl"
    payloads.write_text('{"mode": "slow"}\n')
    path = _profile(tmp_path, '[[segment]]\nhold = "8s"\nrps = 20\n')
    result = _run(tmp_path, path, server, speed=2.0, payload=payloads, max_inflight=4)
    capped = result.requests[result.requests["error"] == "inflight_cap"]
    assert server.max_inflight <= 4
    assert len(capped) > 80 and (capped["status"] == 0).all()  # 40/s due, ~4/s served
    assert len(server.received) + len(capped) == 160
    assert result.periods["failed_inflight_cap"].sum() == len(capped)
    assert "in-flight cap 4 reached" in (tmp_path / "out" / "locust.log").read_text()


def test_connection_failures_are_recorded(tmp_path):
    srv = SigV4Server()
    srv.close()  # nobody listens there any more
    path = _profile(tmp_path, '[[segment]]\nhold = "4s"\nrps = 5\n')
    result = _run(tmp_path, path, srv, speed=2.0, request_timeout_s=5.0)
    assert len(result.requests) == 20
    assert set(result.requests["error"]) == {"connection"}
    assert (result.requests["status"] == 0).all()


def test_per_period_table_by_hand():
    profile = parse_profile({"name": "h", "segment": [{"hold": "2m", "rps": 0.05}]})  # 3 per min
    start = 1_000_000.0
    rows = [
        # seq, scheduled_s, sent_epoch_s (speed 2), latency_ms, status, error, worker
        (0, 10.0, start + 5.0, 100.0, 200, "", 0),
        (1, 30.0, start + 15.0, 300.0, 200, "", 0),
        (2, 50.0, start + 31.0, 50.0, 400, "throttled", 0),  # due in min 0, sent in min 1
        (3, 70.0, start + 35.0, 200.0, 200, "", 0),
        (4, 90.0, start + 45.0, float("nan"), 0, "inflight_cap", 0),
        (5, 110.0, start + 55.0, 5000.0, 0, "timeout", 0),
    ]
    cols = ["seq", "scheduled_s", "sent_epoch_s", "latency_ms", "status", "error", "worker"]
    t = per_period(
        pd.DataFrame(rows, columns=cols), profile, period_s=60, speed=2.0, start_epoch_s=start
    )
    assert t["t_s"].tolist() == [0, 60]
    assert t["profile_requests"].tolist() == pytest.approx([3, 3])
    assert t["scheduled"].tolist() == [3, 3]
    assert t["sent"].tolist() == [2, 3]
    assert t["completed"].tolist() == [3, 1]
    assert t["ok"].tolist() == [2, 1]
    assert t["failed_throttled"].tolist() == [1, 0]
    assert t["failed_inflight_cap"].tolist() == [0, 1]
    assert t["failed_timeout"].tolist() == [0, 1]
    assert t["latency_p50_ms"].tolist() == pytest.approx([200, 200])
    assert t["achieved_rps"].tolist() == pytest.approx([2 / 60, 3 / 60])


@pytest.mark.parametrize(
    ("profile_text", "extra", "needle"),
    [
        ('colour = "red"\n[[segment]]\nhold = "1m"\nrps = 1\n', [], "unknown key 'colour'"),
        ('[[segment]]\nhold = "1m"\nrps = -3\n', [], "segment[1].rps: rate must be >= 0, got -3"),
        ('[[segment]]\nhold = "1m"\nrps = 1\n', ["--payload", "/nonexistent/x.jsonl"], "--payload"),
    ],
    ids=["unknown-key", "negative-rate", "missing-payload"],
)
def test_cli_bad_input_exits_2_with_one_line(tmp_path, capsys, profile_text, extra, needle):
    path = _profile(tmp_path, profile_text)
    argv = ["loadtest", "--profile", str(path), "--endpoint", "e", "--out", str(tmp_path / "o")]
    assert main(argv + extra) == 2
    err = capsys.readouterr().err
    assert needle in err and err.count("\n") == 1 and err.startswith("tuner loadtest: error:")


def test_cli_takes_ready_profile_names_and_names_them_when_unknown(tmp_path, capsys):
    argv = ["loadtest", "--endpoint", "e", "--out", str(tmp_path / "o")]
    assert main([*argv, "--profile", "no-such-profile"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "demo-spike" in err and "flash-spike" in err
    # A ready name resolves to its file; --master-only without --workers is refused before Locust.
    assert main([*argv, "--profile", "demo-spike", "--master-only"]) == 2
    err = capsys.readouterr().err
    assert err.strip() == (
        "tuner loadtest: error: --master-only needs --workers N: how many workers will connect"
    )


def test_stock_locust_rejects_a_missing_payload_in_one_line(tmp_path):
    path = _profile(tmp_path, '[[segment]]\nhold = "1m"\nrps = 1\n')
    cmd = [sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--headless", "-u", "1",
           "--profile", str(path), "--endpoint-name", "e", "--host", "http://127.0.0.1:9",
           "--payload", str(tmp_path / "none.jsonl")]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=60, env=_env(), cwd=tmp_path)
    assert done.returncode == 2
    lines = [ln for ln in done.stderr.splitlines() if "error" in ln]
    assert lines == [
        f"sagemaker_endpoint: error: --payload: file not found: {tmp_path / 'none.jsonl'}"
    ]


def test_stock_locust_rejects_malformed_profile_content_in_one_line(tmp_path):
    content = tmp_path / "content.json"
    content.write_text(json.dumps({"name": "x", "kind": [0], "duration_s": [60.0]}))
    cmd = [sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--headless", "-u", "1",
           "--profile-content", str(content), "--endpoint-name", "e",
           "--host", "http://127.0.0.1:9"]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=60, env=_env(), cwd=tmp_path)
    assert done.returncode == 2
    lines = [ln for ln in done.stderr.splitlines() if "error" in ln]
    assert lines == [
        f"sagemaker_endpoint: error: --profile-content {content}: profile content is malformed: "
        "KeyError: 'params'"
    ]


def _env() -> dict[str, str]:
    import os

    return {**os.environ, **CREDS_ENV}


class _Headers(dict):
    """Case-insensitive header lookup, as http.server gives."""

    def __getitem__(self, key: str) -> str:
        return super().__getitem__(key.lower())

    def get(self, key, default=None):
        return super().get(key.lower(), default)


class FastServer:
    """A minimal asyncio HTTP/1.1 keep-alive server: fast enough not to be what a bench measures.

    It answers every POST with ``reply(body)`` (by default 200 and ``{}``), records arrival
    times, and verifies one signature in 20.
    """

    def __init__(self, reply: Callable[[bytes], bytes] | None = None) -> None:
        import asyncio

        self.times: list[float] = []
        self.checked = self.bad = 0
        self.loop = asyncio.new_event_loop()
        ready = threading.Event()
        empty = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"
        answer = reply or (lambda body: empty)

        async def handle(reader, writer) -> None:
            try:
                while True:
                    head = await reader.readuntil(b"\r\n\r\n")
                    lines = head.decode("latin-1").split("\r\n")
                    hdrs = _Headers(
                        (k.strip().lower(), v.strip())
                        for k, v in (ln.split(":", 1) for ln in lines[1:] if ":" in ln)
                    )
                    body = await reader.readexactly(int(hdrs.get("content-length", 0)))
                    self.times.append(time.time())
                    if len(self.times) % 20 == 1:
                        self.checked += 1
                        path = lines[0].split(" ")[1]
                        self.bad += not signature_ok(hdrs["host"], path, hdrs, body)
                    writer.write(answer(body))
            except (asyncio.IncompleteReadError, ConnectionError):
                writer.close()

        async def start() -> None:
            self.server = await asyncio.start_server(handle, "127.0.0.1", 0, backlog=1024)
            self.url = f"http://127.0.0.1:{self.server.sockets[0].getsockname()[1]}"
            ready.set()

        def serve() -> None:
            self.loop.run_until_complete(start())
            self.loop.run_forever()

        self.thread = threading.Thread(target=serve, daemon=True)
        self.thread.start()
        ready.wait(10)

    def rate(self, since: float, until: float) -> float:
        t = np.array(self.times)
        return float(((t >= since) & (t < until)).sum() / (until - since))

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


def measure_rate(srv: FastServer, cmd: list[str], seconds: float, cwd: Path) -> float:
    """Requests/s the server received in the steady middle of a Locust run of `seconds`."""
    began = time.time()
    with (cwd / "bench.log").open("a") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=_env(), cwd=cwd)
        try:
            proc.wait(timeout=seconds + 60)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    # Skip start-up (imports, clients) and the tail: 5 s in, until 2 s before the end.
    return srv.rate(began + 5, began + seconds - 2)


@pytest.mark.benchmark
def test_bench_signed_fasthttp_vs_boto3_user(tmp_path):
    seconds, rounds = 15, 2
    srv = FastServer()
    profile = _profile(tmp_path, '[[segment]]\nhold = "30s"\nrps = 30000\n')
    ours = [sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--headless", "-u", "1",
            "-t", f"{seconds}s", "--host", srv.url, "--profile", str(profile),
            "--endpoint-name", "bench", "--requests-csv", str(tmp_path / "r.csv"),
            "--max-inflight", "1000", "--loglevel", "ERROR"]  # fmt: skip
    baseline = LOCUSTFILE.parent / "bench_boto3_user.py"
    runs = {
        "sagemaker_endpoint.py, signature reused per second": ours,
        "sagemaker_endpoint.py --sign-each-request": ours + ["--sign-each-request"],
        "boto3 invoke_endpoint, 32 closed-loop Users": [
            sys.executable, "-m", "locust", "-f", str(baseline), "--headless", "-u", "32",
            "-r", "32", "-t", f"{seconds}s", "--host", srv.url, "--loglevel", "ERROR",
        ],
    }  # fmt: skip
    rates: dict[str, list[float]] = {name: [] for name in runs}
    try:
        # Alternate the runs so all meet the same background load of a shared machine.
        for _ in range(rounds):
            for name, cmd in runs.items():
                rates[name].append(measure_rate(srv, cmd, seconds, tmp_path))
    finally:
        srv.close()
    (reuse, fresh, boto) = (float(np.median(r)) for r in rates.values())
    lines = "\n".join(
        f"  {name:52s} {' '.join(f'{r:6.0f}' for r in rs)}  median {np.median(rs):6.0f} req/s"
        for name, rs in rates.items()
    )
    print(
        f"\nbench loadgen: signed InvokeEndpoint requests/s from one Locust process to a local "
        f"server, {rounds} alternating rounds of {seconds} s (noisy on a shared machine):\n"
        f"{lines}\n"
        f"  ratio vs boto3 (medians): {reuse / boto:.2f}x with signature reuse, "
        f"{fresh / boto:.2f}x signing every request (goal >= 3x); "
        f"signatures checked {srv.checked}, bad {srv.bad}"
    )
    assert srv.bad == 0 and srv.checked > 100
    assert min(min(r) for r in rates.values()) > 0
