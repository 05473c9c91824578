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

Streaming (``--stream``, InvokeEndpointWithResponseStream, token-timed rows): see
tuner/loadclient.py, which also holds the options, sample bodies, signing and rows.

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
import time
from pathlib import Path
from urllib.parse import quote

import numpy as np

from tuner.errors import ProfileError
from tuner.loadclient import (
    NAME,
    STREAM_NAME,
    BadOption,
    Run,
    add_options,
    default_host,
    die,
    error_kind,
    payload_index,
    request_row,
    stream_columns,
)
from tuner.profiles.profile import profile_from_content
from tuner.profiles.tokens import stream_body
from tuner.records import REQUEST_COLUMNS
from tuner.tokenstream import read_stream

# Round trips to the master per skew measurement; the shortest bounds the error best (NTP's rule).
SKEW_PINGS = 7
log = logging.getLogger("sagemaker_endpoint")
events.init_command_line_parser.add_listener(add_options)


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


_RUN: Run | None = None
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


def _check(environment) -> Run | None:
    """Validate the options into _RUN; headless or on a worker, a bad option exits 2."""
    global _RUN
    _RUN = None
    try:
        _RUN = Run(environment.parsed_options, worker=isinstance(environment.runner, WorkerRunner))
        if not environment.host and not isinstance(environment.runner, WorkerRunner):
            # On the master this reaches the workers with their spawn message.
            environment.host = default_host(_RUN.region)
        if environment.host:
            SageMakerEndpointUser.host = environment.host
    except BadOption as e:
        if environment.parsed_options.headless or isinstance(environment.runner, WorkerRunner):
            die(str(e))
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
            die("no answer from the master to a clock ping within 5 s")
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
                die("no plan from the master within 30 s (is the master this locustfile's?)")
            plan = dict(_PLAN["data"])
            try:
                run.profile = profile_from_content(plan["profile"])
            except ProfileError as e:
                die(str(e))
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

    def _play(self, run: Run, plan: dict) -> None:
        profile, speed, t0 = run.profile, run.opts.speed, plan["t0"]
        assert profile is not None
        index, count = plan["index"], plan["count"]
        action = "invocations-response-stream" if run.stream else "invocations"
        self.path = f"/endpoints/{quote(run.opts.endpoint_name, safe='')}/{action}"
        self.url = self.host.rstrip("/") + self.path
        window_s = max(1.0, 2.0 * speed)  # plan two real seconds of arrivals at a time
        seq0, start = 0, 0.0
        while start < profile.duration_s:
            times = profile.arrivals(start, start + window_s, seed=run.seed)
            seqs = np.arange(seq0, seq0 + times.size)
            seq0 += times.size
            start += window_s
            mine = seqs % count == index
            run.token_counts(seqs[mine])
            for seq, t in zip(seqs[mine].tolist(), times[mine].tolist(), strict=True):
                delay = t0 + t / speed - time.time()
                if delay > 0:
                    gevent.sleep(delay)
                elif seq % 16 == 0:
                    gevent.sleep(0)  # behind schedule: still let the request greenlets run
                self._launch(run, seq, t, index)

    def _launch(self, run: Run, seq: int, t: float, worker: int) -> None:
        if self.inflight >= run.opts.max_inflight:
            row = request_row(seq, t, time.time() + run.offset_s, "", 0, "inflight_cap", worker)
            run.recorder.rows.append(row)
            run.token_cache.pop(seq, None)
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
        gevent.spawn(self._invoke_stream if run.stream else self._invoke, run, seq, t, worker)

    def _invoke(self, run: Run, seq: int, t: float, worker: int) -> None:
        body = run.payloads[payload_index(seq, len(run.payloads), run.opts)]
        status, kind, latency_ms, sent = 0, "connection", float("nan"), time.time()
        try:
            headers = run.signer.headers(self.url, body)
            sent, began = time.time(), time.perf_counter()
            with self.client.request(
                "POST", self.path, data=body, headers=headers, name=NAME, catch_response=True
            ) as resp:
                latency_ms = (time.perf_counter() - began) * 1000
                status = int(resp.status_code or 0)
                kind = error_kind(status, resp)
                if kind:
                    resp.failure(kind)
                else:
                    resp.success()
        finally:
            self.inflight -= 1
            row = request_row(seq, t, sent + run.offset_s, latency_ms, status, kind, worker)
            run.recorder.rows.append(row)

    def _invoke_stream(self, run: Run, seq: int, t: float, worker: int) -> None:
        prompt, output = run.token_cache.pop(seq)
        body = stream_body(prompt, output)
        status, kind, latency_ms, sent = 0, "connection", float("nan"), time.time()
        stream = None
        try:
            headers = run.signer.headers(self.url, body)
            sent, began = time.time(), time.perf_counter()
            with self.client.request(
                "POST",
                self.path,
                data=body,
                headers=headers,
                name=STREAM_NAME,
                catch_response=True,
                stream=True,
            ) as resp:
                status = int(resp.status_code or 0)
                kind = error_kind(status, resp)
                raw = getattr(resp, "_response", None)
                if not kind and raw is not None:
                    # Read one event-stream message at a time as it arrives (geventhttpclient's
                    # read(n) returns once n body bytes are in, chunked encoding undone).
                    stream = read_stream(raw.read, began)
                    kind = stream.error
                latency_ms = (time.perf_counter() - began) * 1000
                # Locust's own stats: the time to the end of the stream, not to the headers.
                resp.request_meta["response_time"] = latency_ms
                if kind:
                    resp.failure(kind if stream is None else f"{kind}: {stream.message}")
                else:
                    resp.success()
        except Exception as e:  # a connection dropped mid-stream: the row says so
            if not kind:
                kind = "timeout" if "timeout" in type(e).__name__.lower() else "connection"
        finally:
            self.inflight -= 1
            streamed = stream_columns(stream, prompt)
            sent_s = sent + run.offset_s
            row = request_row(seq, t, sent_s, latency_ms, status, kind, worker, streamed)
            run.recorder.rows.append(row)
