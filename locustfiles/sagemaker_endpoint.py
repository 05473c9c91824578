"""Open-loop, SigV4-signed SageMaker InvokeEndpoint load that follows a traffic profile.

Run it with the stock Locust, headless or with its web UI (one user per Locust process)::

    locust -f locustfiles/sagemaker_endpoint.py --headless -u 1 \\
        --profile locustfiles/profiles/flash-spike.toml --endpoint-name my-endpoint
    locust -f locustfiles/sagemaker_endpoint.py --web-host 127.0.0.1    # fill the form, 1 user

Open loop: request k leaves at the time the profile gives it, whatever the endpoint's latency,
each in its own greenlet; a slow endpoint therefore faces the same arrivals (no coordinated
omission). In-flight requests are capped only by ``--max-inflight`` (also the connection pool
size); a request due while the cap is reached is not sent and is recorded as ``inflight_cap``.

Clock: ``--speed S`` runs the profile S times faster than real time, for the local emulator's
virtual clock: a request due at profile time t leaves at real time start + t/S, so the real rate
is S x rate_at(t) while the count per profile-minute is unchanged; the emulator, whose virtual
clock runs at the same S, counts per virtual minute what the profile has per minute.

Requests go to ``POST {host}/endpoints/{name}/invocations`` signed with botocore's SigV4 signer
for service ``sagemaker`` (standard credential chain; ``--region`` or AWS_REGION /
AWS_DEFAULT_REGION / config). Host: ``--host``, else AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME or
AWS_ENDPOINT_URL, else ``https://runtime.sagemaker.{region}.amazonaws.com``.

Every request is one row of ``--requests-csv`` (columns: see tuner/loadgen.py). Distributed
(``--master`` plus ``--worker`` processes): the master gives each worker a shared start time and
every N-th request of the schedule; each worker writes ``<stem>.worker<i>.csv``.
"""

from __future__ import annotations

# Locust patches the process with gevent on import; botocore (urllib3, ssl) must come after it,
# or `import locust` dies with a RecursionError in ssl (reference/locust-and-moto.md).
# isort: off
import gevent
from gevent.event import Event
from locust import FastHttpUser, events, task
from locust.exception import StopUser
from locust.runners import LocalRunner, MasterRunner, WorkerRunner
# isort: on

import csv
import json
import logging
import math
import os
import sys
import time
from pathlib import Path
from urllib.parse import quote

import botocore.session
import numpy as np
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest

from tuner.errors import ProfileError
from tuner.profiles.profile import Profile, load_profile
from tuner.records import REQUEST_COLUMNS

NAME = "InvokeEndpoint"
DEFAULT_PAYLOAD = b'{"inputs": "tuner load test"}'
log = logging.getLogger("sagemaker_endpoint")


@events.init_command_line_parser.add_listener
def _options(parser) -> None:
    # Locust already owns --profile (a free-text label for reports); reuse it for the profile
    # file rather than fight argparse, so the label in Locust's report is the profile too.
    for action in parser._actions:
        if "--profile" in action.option_strings:
            action.help = (
                "traffic profile TOML (tuner format), e.g. locustfiles/profiles/steady.toml"
            )
    g = parser.add_argument_group("SageMaker endpoint (tuner)")
    g.add_argument("--endpoint-name", default="", help="SageMaker endpoint to invoke")
    g.add_argument("--variant", default="", help="production variant to target (header)")
    g.add_argument("--region", default="", help="AWS region (default: standard chain)")
    g.add_argument("--speed", type=float, default=1.0, help="profile seconds per real second")
    g.add_argument("--seed", type=int, default=-1, help="noise seed (default: the profile's)")
    g.add_argument("--payload", default="", help="JSON-lines file or folder of sample bodies")
    g.add_argument("--content-type", default="application/json", help="request Content-Type")
    g.add_argument("--accept", default="application/json", help="request Accept")
    g.add_argument("--payload-order", default="cycle", choices=["cycle", "random"])
    g.add_argument("--payload-seed", type=int, default=0, help="seed for --payload-order random")
    g.add_argument("--max-inflight", type=int, default=1000, help="in-flight request cap")
    g.add_argument("--request-timeout", type=float, default=70.0, help="seconds per request")
    g.add_argument("--requests-csv", default="requests.csv", help="per-request records file")
    g.add_argument(
        "--start-at",
        type=float,
        default=0.0,
        help="wall-clock epoch at which profile time 0 begins (default: as soon as ready)",
    )
    g.add_argument(
        "--sign-each-request",
        action="store_true",
        help="compute every signature afresh (default: identical bodies share one per second)",
    )


class _Fatal(Exception):
    """A bad option: one line, exit 2."""


def _die(message: str) -> None:
    sys.stderr.write(f"sagemaker_endpoint: error: {message}\n")
    sys.stderr.flush()
    os._exit(2)  # SystemExit would be swallowed or logged with a traceback inside gevent


def load_payloads(path: str) -> list[bytes]:
    """Bodies from a JSON-lines file (one per line) or a folder (one per file, sorted by name)."""
    if not path:
        return [DEFAULT_PAYLOAD]
    p = Path(path)
    if p.is_dir():
        files = sorted(f for f in p.iterdir() if f.is_file() and not f.name.startswith("."))
        if not files:
            raise _Fatal(f"--payload: folder {p} has no sample files")
        return [f.read_bytes() for f in files]
    if not p.is_file():
        raise _Fatal(f"--payload: file not found: {p}")
    bodies = []
    for n, line in enumerate(p.read_bytes().splitlines(), 1):
        if line.strip():
            try:
                json.loads(line)
            except ValueError:
                raise _Fatal(f"--payload: {p} line {n}: not valid JSON") from None
            bodies.append(line.strip())
    if not bodies:
        raise _Fatal(f"--payload: {p} has no payload lines")
    return bodies


def _region(opts) -> str:
    session = botocore.session.get_session()
    region = (
        opts.region
        or os.environ.get("AWS_REGION")
        or os.environ.get("AWS_DEFAULT_REGION")
        or session.get_config_variable("region")
    )
    if not region:
        raise _Fatal("no AWS region: pass --region or set AWS_REGION (e.g. us-east-1)")
    return region


def _default_host(region: str) -> str:
    return (
        os.environ.get("AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME")
        or os.environ.get("AWS_ENDPOINT_URL")
        or f"https://runtime.sagemaker.{region}.amazonaws.com"
    )


class _Signer:
    """SigV4 headers for one InvokeEndpoint call (botocore's signer, standard credential chain).

    SigV4 has no nonce: the signature is a function of credentials, the X-Amz-Date second and
    the request. So identical bodies within one second reuse one signature, exactly what
    botocore would compute again (AWS accepts the same signed request for minutes); signing was
    a third of the generator's CPU. ``reuse=False`` signs every request afresh.
    """

    def __init__(
        self, region: str, content_type: str, accept: str, variant: str, reuse: bool = True
    ) -> None:
        creds = botocore.session.get_session().get_credentials()
        if creds is None:
            raise _Fatal(
                "no AWS credentials: set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or a profile"
            )
        self.creds, self.region = creds, region
        self.base = {"Content-Type": content_type, "Accept": accept}
        if variant:
            self.base["X-Amzn-SageMaker-Target-Variant"] = variant
        self.frozen = None
        self.auth: SigV4Auth | None = None
        self.reuse, self.second, self.memo = reuse, -1, {}

    def headers(self, url: str, body: bytes) -> dict[str, str]:
        frozen = self.creds.get_frozen_credentials()  # refreshes temporary credentials in time
        if frozen != self.frozen or self.auth is None:
            self.frozen, self.auth = frozen, SigV4Auth(frozen, "sagemaker", self.region)
            self.memo = {}
        if self.reuse:
            second = int(time.time())
            if second != self.second:
                self.second, self.memo = second, {}
            if (hit := self.memo.get(body)) is not None:
                return dict(hit)
        request = AWSRequest(method="POST", url=url, data=body, headers=dict(self.base))
        self.auth.add_auth(request)
        signed = dict(request.headers.items())
        if self.reuse and len(self.memo) < 256:
            self.memo[body] = signed
        return dict(signed)


class _Recorder:
    """Buffers per-request rows and appends them to the CSV about once a second."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.file = path.open("w", newline="")
        self.writer = csv.writer(self.file)
        self.writer.writerow(REQUEST_COLUMNS)
        self.rows: list[tuple] = []
        self.flusher = gevent.spawn(self._loop)

    def _loop(self) -> None:
        while True:
            gevent.sleep(1.0)
            self.flush()

    def flush(self) -> None:
        rows, self.rows = self.rows, []
        if rows and not self.file.closed:
            self.writer.writerows(rows)
            self.file.flush()

    def close(self) -> None:
        self.flusher.kill(block=False)
        self.flush()
        self.file.close()


class _Run:
    """What one Locust process knows about the current test: options, plan, records."""

    def __init__(self, environment) -> None:
        opts = environment.parsed_options
        self.env, self.opts = environment, opts
        # Locust does not forward its own options (--profile is one) to workers: the plan does.
        profile_path = opts.profile or (_PLAN["data"] or {}).get("profile")
        if not profile_path:
            raise _Fatal("--profile is required (a traffic profile TOML)")
        if not opts.endpoint_name:
            raise _Fatal("--endpoint-name is required")
        if not (opts.speed > 0 and math.isfinite(opts.speed)):
            raise _Fatal(f"--speed must be > 0, got {opts.speed}")
        if opts.max_inflight < 1:
            raise _Fatal(f"--max-inflight must be >= 1, got {opts.max_inflight}")
        try:
            self.profile: Profile = load_profile(profile_path)
        except ProfileError as e:
            raise _Fatal(str(e)) from None
        self.payloads = load_payloads(opts.payload)
        self.seed = None if opts.seed < 0 else opts.seed
        self.region = _region(opts)
        self.signer = _Signer(
            self.region, opts.content_type, opts.accept, opts.variant, not opts.sign_each_request
        )
        self.driver_taken = False
        self.recorder: _Recorder | None = None
        self.done_workers: set[int] = set()
        self.worker_count = 1

    def csv_path(self, index: int) -> Path:
        path = Path(self.opts.requests_csv)
        if isinstance(self.env.runner, WorkerRunner):
            return path.with_name(f"{path.stem}.worker{index}{path.suffix or '.csv'}")
        return path


_RUN: _Run | None = None
# The master's plan for this worker: start time, share, profile path (kept across tests).
_PLAN: dict = {"data": None, "event": Event()}


@events.init.add_listener
def _on_init(environment, **_kw) -> None:
    runner = environment.runner
    if isinstance(runner, MasterRunner):
        runner.register_message("tuner_done", _on_worker_done)
    if isinstance(runner, WorkerRunner):
        runner.register_message("tuner_plan", _on_plan)
    if (
        environment.parsed_options
        and environment.parsed_options.headless
        and not isinstance(runner, WorkerRunner)
    ):
        _check(environment)  # fail fast, before any user starts


def _check(environment) -> _Run | None:
    """Validate the options into _RUN; headless or on a worker, a bad option exits 2."""
    global _RUN
    _RUN = None
    try:
        _RUN = _Run(environment)
        if not environment.host and not isinstance(environment.runner, WorkerRunner):
            # On the master this reaches the workers with their spawn message.
            environment.host = _default_host(_RUN.region)
        if environment.host:
            SageMakerEndpointUser.host = environment.host
    except _Fatal as e:
        if environment.parsed_options.headless or isinstance(environment.runner, WorkerRunner):
            _die(str(e))
        log.error(f"sagemaker_endpoint: {e}")  # web UI: report it, keep the UI up
    return _RUN


@events.test_start.add_listener
def _on_test_start(environment, **_kw) -> None:
    run = _check(environment)
    runner = environment.runner
    if run is not None and isinstance(runner, MasterRunner):
        workers = sorted(runner.clients.keys())
        # Time for every worker to receive its spawn and start its user; a caller that lines
        # the profile up with metric periods asks for a later start.
        t0 = max(time.time() + 1.0, run.opts.start_at)
        for i, client_id in enumerate(workers):
            plan = {"t0": t0, "index": i, "count": len(workers), "profile": run.opts.profile}
            runner.send_message("tuner_plan", plan, client_id=client_id)
        run.worker_count = len(workers)


def _on_plan(environment, msg, **_kw) -> None:
    _PLAN["data"] = msg.data
    _PLAN["event"].set()


def _on_worker_done(environment, msg, **_kw) -> None:
    run = _RUN
    if run is None:
        return
    run.done_workers.add(msg.data["index"])
    if len(run.done_workers) >= run.worker_count:
        gevent.spawn(_finish, environment)


def _finish(environment) -> None:
    gevent.sleep(0.2)  # let the last stats reach the master / the UI
    if environment.parsed_options.headless:
        environment.runner.quit()
    else:
        environment.runner.stop()


@events.test_stop.add_listener
@events.quitting.add_listener
def _on_test_stop(environment, **_kw) -> None:
    if _RUN is not None and _RUN.recorder is not None:
        _RUN.recorder.close()


def _error_kind(status: int, resp) -> str:
    """Short failure kind from SageMaker's error type (x-amzn-ErrorType or JSON __type)."""
    if status == 0:
        name = type(resp.error).__name__.lower() if resp.error is not None else ""
        return "timeout" if "timeout" in name or "timed out" in str(resp.error) else "connection"
    if 200 <= status < 300:
        return ""
    kind = (resp.headers.get("x-amzn-ErrorType") or "") if resp.headers else ""
    if not kind:
        try:
            kind = str(json.loads(resp.content or b"{}").get("__type", ""))
        except (ValueError, AttributeError):
            kind = ""
    kind = kind.split(":")[0].split("#")[-1].lower()
    if "throttl" in kind or status == 429:
        return "throttled"
    if "modelerror" in kind or status == 424:
        return "model_error"
    if "notready" in kind:
        return "not_ready"
    if status == 503 or "unavailable" in kind:
        return "unavailable"
    return "server_error" if status >= 500 else "client_error"


class SageMakerEndpointUser(FastHttpUser):
    """One open-loop driver per Locust process: sends the profile's arrivals on schedule."""

    host = None
    concurrency = 1000
    """Connection pool size; set from --max-inflight so the pool never queues a due request."""
    network_timeout = 70.0
    connection_timeout = 10.0

    def __init__(self, environment) -> None:
        opts = environment.parsed_options
        if opts is not None:
            self.concurrency = opts.max_inflight
            self.network_timeout = opts.request_timeout
        super().__init__(environment)
        self.inflight = 0
        self.cap_warned = False

    @task
    def drive(self) -> None:
        run = _RUN
        if run is None:  # bad options in the web UI: already logged
            gevent.spawn(self.environment.runner.stop)
            raise StopUser()
        if run.driver_taken:
            log.warning("only one user per Locust process drives the profile; extra users idle")
            raise StopUser()
        run.driver_taken = True
        if isinstance(self.environment.runner, WorkerRunner):
            if not _PLAN["event"].wait(timeout=30):
                _die("no plan from the master within 30 s (is the master this locustfile's?)")
            plan = _PLAN["data"]
        else:
            plan = {"t0": max(time.time() + 0.2, run.opts.start_at), "index": 0, "count": 1}
        run.recorder = _Recorder(run.csv_path(plan["index"]))
        self._play(run, plan)
        deadline = time.time() + run.opts.request_timeout + 5
        while self.inflight and time.time() < deadline:
            gevent.sleep(0.05)
        run.recorder.close()
        runner = self.environment.runner
        if isinstance(runner, WorkerRunner):
            runner.send_message("tuner_done", {"index": plan["index"]})
        elif isinstance(runner, LocalRunner):
            gevent.spawn(_finish, self.environment)
        raise StopUser()

    def _play(self, run: _Run, plan: dict) -> None:
        profile, speed, t0 = run.profile, run.opts.speed, plan["t0"]
        index, count = plan["index"], plan["count"]
        self.path = f"/endpoints/{quote(run.opts.endpoint_name, safe='')}/invocations"
        self.url = self.host.rstrip("/") + self.path
        window_s = max(1.0, 2.0 * speed)  # plan two real seconds of arrivals at a time
        seq0, start = 0, 0.0
        while start < profile.duration_s:
            times = profile.arrivals(start, start + window_s, seed=run.seed)
            seqs = np.arange(seq0, seq0 + times.size)
            seq0 += times.size
            start += window_s
            mine = seqs % count == index
            for seq, t in zip(seqs[mine].tolist(), times[mine].tolist(), strict=True):
                delay = t0 + t / speed - time.time()
                if delay > 0:
                    gevent.sleep(delay)
                elif seq % 16 == 0:
                    gevent.sleep(0)  # behind schedule: still let the request greenlets run
                self._launch(run, seq, t, index)

    def _launch(self, run: _Run, seq: int, t: float, worker: int) -> None:
        if self.inflight >= run.opts.max_inflight:
            run.recorder.rows.append(
                (seq, f"{t:.6f}", f"{time.time():.6f}", "", 0, "inflight_cap", worker)
            )
            self.environment.events.request.fire(
                request_type="POST",
                name=NAME,
                response_time=0,
                response_length=0,
                exception=RuntimeError("inflight_cap"),
                context={},
            )
            if not self.cap_warned:
                self.cap_warned = True
                log.warning(
                    f"in-flight cap {run.opts.max_inflight} reached at profile t={t:.1f}s: "
                    "requests due now are not sent (raise --max-inflight)"
                )
            return
        self.inflight += 1
        gevent.spawn(self._invoke, run, seq, t, worker)

    def _invoke(self, run: _Run, seq: int, t: float, worker: int) -> None:
        body = run.payloads[_payload_index(seq, len(run.payloads), run.opts)]
        status, kind, latency_ms, sent = 0, "connection", float("nan"), time.time()
        try:
            headers = run.signer.headers(self.url, body)
            sent, began = time.time(), time.perf_counter()
            with self.client.request(
                "POST", self.path, data=body, headers=headers, name=NAME, catch_response=True
            ) as resp:
                latency_ms = (time.perf_counter() - began) * 1000
                status = int(resp.status_code or 0)
                kind = _error_kind(status, resp)
                if kind:
                    resp.failure(kind)
                else:
                    resp.success()
        finally:
            self.inflight -= 1
            run.recorder.rows.append(
                (seq, f"{t:.6f}", f"{sent:.6f}", f"{latency_ms:.3f}", status, kind, worker)
            )


_PERMUTATIONS: dict[tuple[int, int, int], np.ndarray] = {}


def _payload_index(seq: int, n: int, opts) -> int:
    if opts.payload_order == "cycle" or n == 1:
        return seq % n
    block = seq // 4096  # random draws by block so every worker picks the same body for seq
    key = (opts.payload_seed, n, block)
    if key not in _PERMUTATIONS:
        _PERMUTATIONS.clear()
        _PERMUTATIONS[key] = np.random.default_rng([opts.payload_seed, block]).integers(
            n, size=4096
        )
    return int(_PERMUTATIONS[key][seq % 4096])
