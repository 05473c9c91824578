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

Every request is one row of ``--requests-csv`` (columns: see tuner/live/loadgen.py).

``tuner loadtest`` (and trials, calibration) pass ``--profile-content FILE`` instead of
``--profile``: the JSON of an already loaded profile (``Profile.to_content``, replays already
read), so the master rebuilds it with ``profile_from_content`` and parses no profile file.

Distributed (``--master`` plus ``--worker`` processes, on this host or others), everything goes
through Locust's own messages, so a worker needs only this file and the ``tuner`` package, no
profile and no shared folder:

- the master ships the profile's *content* (``Profile.to_content``: replays already read) with
  each worker's share (every N-th request of the schedule) in a ``tuner_plan`` message;
- each worker measures its clock's offset from the master's (``tuner_ping``/``tuner_pong``
  round trips, the one with the shortest round trip wins) and starts at the master's agreed
  start time, converted to its own clock;
- workers send their per-request rows back (``tuner_records``, about once a second, send times
  in the master's clock) and the master writes the one ``--requests-csv``; the offsets measured
  go to ``<stem>.workers.json`` beside it.

A worker on another host::

    locust -f locustfiles/sagemaker_endpoint.py --worker --master-host MASTER --master-port 5557
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
from tuner.profiles.profile import Profile, load_profile, profile_from_content
from tuner.records import REQUEST_COLUMNS

NAME = "InvokeEndpoint"
DEFAULT_PAYLOAD = b'{"inputs": "tuner load test"}'
# Round trips to the master per skew measurement; the shortest bounds the error best (NTP's rule).
SKEW_PINGS = 7
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
    g.add_argument(
        "--profile-content",
        default="",
        help="JSON of a loaded profile (Profile.to_content), instead of --profile",
    )
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


def _profile_content(path: str) -> Profile:
    """The profile whose content (Profile.to_content) the JSON file at ``path`` holds."""
    try:
        return profile_from_content(json.loads(Path(path).read_text(encoding="utf-8")))
    except (OSError, ValueError) as e:
        raise _Fatal(f"--profile-content {path}: not a profile's content: {e}") from None
    except ProfileError as e:
        raise _Fatal(f"--profile-content {path}: {e}") from None


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


class _Shipper:
    """A worker's recorder: sends its rows to the master about once a second."""

    def __init__(self, runner, index: int) -> None:
        self.runner, self.index = runner, index
        self.rows: list[tuple] = []
        self.closed = False
        self.flusher = gevent.spawn(self._loop)

    def _loop(self) -> None:
        while True:
            gevent.sleep(1.0)
            self.flush()

    def flush(self) -> None:
        rows, self.rows = self.rows, []
        if rows and not self.closed:
            self.runner.send_message("tuner_records", {"index": self.index, "rows": rows})

    def close(self) -> None:
        self.flusher.kill(block=False)
        self.flush()
        self.closed = True


class _Run:
    """What one Locust process knows about the current test: options, plan, records."""

    def __init__(self, environment) -> None:
        opts = environment.parsed_options
        self.env, self.opts = environment, opts
        self.profile: Profile | None = None
        if isinstance(environment.runner, WorkerRunner):
            # Locust does not forward its own options (--profile is one) to workers, and the file
            # may not exist on their host: the master's plan carries the profile's content.
            pass
        elif opts.profile_content:
            self.profile = _profile_content(opts.profile_content)
        elif not opts.profile:
            raise _Fatal("--profile is required (a traffic profile TOML)")
        else:
            try:
                self.profile = load_profile(opts.profile)
            except ProfileError as e:
                raise _Fatal(str(e)) from None
        if not opts.endpoint_name:
            raise _Fatal("--endpoint-name is required")
        if not (opts.speed > 0 and math.isfinite(opts.speed)):
            raise _Fatal(f"--speed must be > 0, got {opts.speed}")
        if opts.max_inflight < 1:
            raise _Fatal(f"--max-inflight must be >= 1, got {opts.max_inflight}")
        self.payloads = load_payloads(opts.payload)
        self.seed = None if opts.seed < 0 else opts.seed
        self.region = _region(opts)
        self.signer = _Signer(
            self.region, opts.content_type, opts.accept, opts.variant, not opts.sign_each_request
        )
        self.driver_taken = False
        self.recorder: _Recorder | _Shipper | None = None
        self.offset_s = 0.0
        """Master clock minus this process's clock (0 but on a worker)."""
        self.done_workers: dict[int, dict] = {}
        self.worker_count = 1
        self.t0 = 0.0

    def csv_path(self) -> Path:
        return Path(self.opts.requests_csv)


_RUN: _Run | None = None
# The master's plan for this worker: start time, share, profile content (kept across tests).
_PLAN: dict = {"data": None, "event": Event()}
# Answers to this worker's clock pings: (sent, master's time, received), worker clock but one.
_PONGS: dict = {"rows": [], "event": Event()}


@events.init.add_listener
def _on_init(environment, **_kw) -> None:
    runner = environment.runner
    if isinstance(runner, MasterRunner):
        runner.register_message("tuner_done", _on_worker_done)
        runner.register_message("tuner_records", _on_worker_records)
        runner.register_message("tuner_ping", _on_ping)
    if isinstance(runner, WorkerRunner):
        runner.register_message("tuner_plan", _on_plan)
        runner.register_message("tuner_pong", _on_pong)
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
    if run is not None and run.profile is not None and isinstance(runner, MasterRunner):
        workers = sorted(runner.clients.keys())
        # Time for every worker to receive its spawn, measure its clock and start its user; a
        # caller that lines the profile up with metric periods asks for a later start.
        run.t0 = max(time.time() + 2.0, run.opts.start_at)
        content = run.profile.to_content()
        run.recorder = _Recorder(run.csv_path())
        for i, client_id in enumerate(workers):
            plan = {"t0": run.t0, "index": i, "count": len(workers), "profile": content}
            runner.send_message("tuner_plan", plan, client_id=client_id)
        run.worker_count = len(workers)


def _on_plan(environment, msg, **_kw) -> None:
    _PLAN["data"] = msg.data
    _PLAN["event"].set()


def _on_ping(environment, msg, **_kw) -> None:
    data = {"k": msg.data["k"], "sent": msg.data["sent"], "master": time.time()}
    environment.runner.send_message("tuner_pong", data, client_id=msg.node_id)


def _on_pong(environment, msg, **_kw) -> None:
    _PONGS["rows"].append((msg.data["sent"], msg.data["master"], time.time()))
    _PONGS["event"].set()


def measure_offset(runner) -> tuple[float, float]:
    """(master clock - this clock, round trip) in seconds, from the fastest of a few pings.

    With a symmetric path the master read its clock halfway through the round trip, so the
    error is at most half the round trip (reported with the offset).
    """
    _PONGS["rows"] = []
    for k in range(SKEW_PINGS):
        _PONGS["event"].clear()
        runner.send_message("tuner_ping", {"k": k, "sent": time.time()})
        if not _PONGS["event"].wait(timeout=5):
            _die("no answer from the master to a clock ping within 5 s")
    sent, master, received = min(_PONGS["rows"], key=lambda r: r[2] - r[0])
    return master - (sent + received) / 2, received - sent


def _on_worker_records(environment, msg, **_kw) -> None:
    run = _RUN
    if run is not None and run.recorder is not None:
        run.recorder.rows.extend(tuple(row) for row in msg.data["rows"])


def _on_worker_done(environment, msg, **_kw) -> None:
    run = _RUN
    if run is None:
        return
    run.done_workers[msg.data["index"]] = {"worker": msg.node_id, **msg.data}
    if len(run.done_workers) >= run.worker_count:
        path = run.csv_path()
        workers = [run.done_workers[i] for i in sorted(run.done_workers)]
        path.with_name(f"{path.stem}.workers.json").write_text(
            json.dumps({"t0_epoch_s": run.t0, "workers": workers}, indent=2) + "\n"
        )
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
        runner = self.environment.runner
        rtt_s = 0.0
        if isinstance(runner, WorkerRunner):
            if not _PLAN["event"].wait(timeout=30):
                _die("no plan from the master within 30 s (is the master this locustfile's?)")
            plan = dict(_PLAN["data"])
            try:
                run.profile = profile_from_content(plan["profile"])
            except ProfileError as e:
                _die(str(e))
            run.offset_s, rtt_s = measure_offset(runner)
            plan["t0"] -= run.offset_s  # the agreed start, on this host's clock
            run.recorder = _Shipper(runner, plan["index"])
        else:
            plan = {"t0": max(time.time() + 0.2, run.opts.start_at), "index": 0, "count": 1}
            run.recorder = _Recorder(run.csv_path())
        late_s = time.time() - plan["t0"]
        if late_s > 0:
            log.warning(f"started {late_s:.3f} s after the agreed start time")
        self._play(run, plan)
        deadline = time.time() + run.opts.request_timeout + 5
        while self.inflight and time.time() < deadline:
            gevent.sleep(0.05)
        run.recorder.close()
        if isinstance(runner, WorkerRunner):
            done = {
                "index": plan["index"],
                "offset_s": run.offset_s,
                "rtt_s": rtt_s,
                "late_s": late_s,
            }
            runner.send_message("tuner_done", done)
        elif isinstance(runner, LocalRunner):
            gevent.spawn(_finish, self.environment)
        raise StopUser()

    def _play(self, run: _Run, plan: dict) -> None:
        profile, speed, t0 = run.profile, run.opts.speed, plan["t0"]
        assert profile is not None
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
                (
                    seq,
                    f"{t:.6f}",
                    f"{time.time() + run.offset_s:.6f}",
                    "",
                    0,
                    "inflight_cap",
                    worker,
                )
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
                (
                    seq,
                    f"{t:.6f}",
                    f"{sent + run.offset_s:.6f}",
                    f"{latency_ms:.3f}",
                    status,
                    kind,
                    worker,
                )
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
