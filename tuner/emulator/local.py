"""LocalAws: the whole emulator in this process (server thread, autoscaler thread, moto plane).

>>> with LocalAws(EmulatorConfig(speed=20.0)) as aws:   # doctest: +SKIP
...     boto3.client("sagemaker-runtime", endpoint_url=aws.url).invoke_endpoint(...)
"""

from __future__ import annotations

import asyncio
import errno
import math
import socket
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from tuner.clock import VirtualClock
from tuner.emulator.api import ControlApi
from tuner.emulator.autoscaler import Autoscaler
from tuner.emulator.control import DUMMY_ACCESS_KEY, DUMMY_SECRET_KEY, MotoPlane
from tuner.emulator.endpoint import MAX_QUEUE, EmulatedEndpoint
from tuner.emulator.icapi import ComponentApi, Components
from tuner.emulator.server import HttpConnection, HttpLimits, Router
from tuner.emulator.service import InstanceModel
from tuner.emulator.streaming import StreamRoute
from tuner.emulator.tokens import LlmServerSpec
from tuner.errors import TunerError, ValidationError
from tuner.model.capacity import Capacity
from tuner.model.settings import SimulationSettings

HOST = "127.0.0.1"
# moto keeps its state in module-level backends: two emulators in one process would share it.
_ACTIVE = threading.Lock()


class EmulatorError(TunerError):
    """The emulator cannot start (port in use, another emulator running in this process)."""


@dataclass(frozen=True, kw_only=True)
class EmulatorConfig:
    """What ``tuner emulate`` starts; every time in it is virtual."""

    port: int = 0
    """TCP port on 127.0.0.1; 0 picks a free one."""
    speed: float = 1.0
    """Virtual seconds per real second."""
    endpoint: str = "demo-endpoint"
    variant: str = "AllTraffic"
    capacity: Capacity = field(default_factory=Capacity.default)
    instances: int = 1
    """Instances in service at start."""
    region: str = "us-east-1"
    metric_lag_s: float = 60.0
    """Datapoint visibility delay of the controller (as ``tuner simulate --metric-lag-s``)."""
    seed: int = 0
    """Seed of the service-time draws."""
    queue_cap: int = MAX_QUEUE
    """Hard cap on queued requests (memory bound under overload)."""
    http_limits: HttpLimits = field(default_factory=HttpLimits)
    """Body size, timeouts and connections a client may hold (malformed HTTP never harms)."""
    virtual_start_s: float | None = None
    """Virtual epoch seconds at start (whole minutes); None: the real start time, rounded down
    to a minute. Lets scheduled actions at a given time of day run within seconds."""
    llm: LlmServerSpec = field(default_factory=LlmServerSpec)
    """What a copy of every inference component serves (tokens/s, sequences, load times)."""
    inference_component: str | None = None
    """LLM mode: an inference component of this name on the endpoint, its copies in service
    at start (more can be created with CreateInferenceComponent)."""
    copies: int = 1
    """Copies of ``inference_component`` in service at start (0: scaled to zero)."""

    def __post_init__(self) -> None:
        if not 0 <= self.port <= 65535:
            raise ValidationError(f"port must be in 0..65535, got {self.port}")
        if not (math.isfinite(self.speed) and self.speed > 0):
            raise ValidationError(f"speed > 0 must hold, got {self.speed:g}")
        if self.instances < 1:
            raise ValidationError(f"instances >= 1 must hold, got {self.instances}")
        if not self.endpoint or "/" in self.endpoint:
            raise ValidationError(f"endpoint must be non-empty without '/', got {self.endpoint!r}")
        if not self.variant or "/" in self.variant:
            raise ValidationError(f"variant must be non-empty without '/', got {self.variant!r}")
        if self.queue_cap < 1:
            raise ValidationError(f"queue_cap >= 1 must hold, got {self.queue_cap}")
        if self.inference_component is not None and (
            not self.inference_component or "/" in self.inference_component
        ):
            raise ValidationError(
                f"inference component must be non-empty without '/', "
                f"got {self.inference_component!r}"
            )
        if not 0 <= self.copies <= self.llm.max_copies():
            raise ValidationError(
                f"copies must be in 0..{self.llm.max_copies()} (max_instances x "
                f"copies_per_instance), got {self.copies}"
            )
        if self.virtual_start_s is not None and self.virtual_start_s % 60:
            raise ValidationError(
                f"virtual start must be a whole minute, got {self.virtual_start_s:g} s"
            )


def _listen(port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        # No SO_REUSEADDR on purpose beyond the default: another live listener must be an error.
        sock.bind((HOST, port))
        sock.listen(1024)
    except OSError as e:
        sock.close()
        if e.errno == errno.EADDRINUSE:
            raise EmulatorError(
                f"port {port} on {HOST} is in use: choose another --port (0 picks a free one)"
            ) from e
        raise EmulatorError(f"cannot listen on {HOST}:{port}: {e.strerror}") from e
    sock.setblocking(False)
    return sock


class LocalAws:
    """A running local AWS: ``url``, ``env``, ``clock``; use as a context manager or start/stop."""

    def __init__(self, config: EmulatorConfig | None = None, *, log: Any = None) -> None:
        self.config = config or EmulatorConfig()
        self._log = log or (lambda line: None)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: threading.Thread | None = None
        self._scaler_thread: threading.Thread | None = None
        self._server: asyncio.AbstractServer | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._stop = threading.Event()
        self._holding = False
        self._router: Router | None = None
        self._sock: socket.socket | None = None
        self.port = 0
        self.clock: VirtualClock
        self.endpoint: EmulatedEndpoint
        self.autoscaler: Autoscaler
        self.components: Components | None = None

    # -- lifecycle -----------------------------------------------------------------------------

    def __enter__(self) -> LocalAws:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> LocalAws:
        """Bind, create the endpoint in the control plane, start serving and scaling."""
        if not _ACTIVE.acquire(blocking=False):
            raise EmulatorError(
                "another local AWS is running in this process (moto state is global)"
            )
        self._holding = True
        try:
            self._start()
        except BaseException:
            self.stop()
            raise
        return self

    def _start(self) -> None:
        cfg = self.config
        model = InstanceModel.from_capacity(cfg.capacity)
        sock = self._sock = _listen(cfg.port)  # first: a port in use fails before anything starts
        loop = self._loop = asyncio.new_event_loop()
        self._loop_thread = threading.Thread(
            target=loop.run_forever, name="tuner-emulator-http", daemon=True
        )
        self._loop_thread.start()
        self._executor = ThreadPoolExecutor(max_workers=4, thread_name_prefix="tuner-emulator-aws")
        plane = MotoPlane(cfg.region)
        self.clock = VirtualClock(speed=cfg.speed, virtual_epoch_s=cfg.virtual_start_s)
        self.endpoint = EmulatedEndpoint(
            cfg.endpoint,
            cfg.variant,
            model,
            self.clock,
            loop,
            instances=cfg.instances,
            seed=cfg.seed,
            queue_cap=cfg.queue_cap,
        )
        self.autoscaler = Autoscaler(
            plane,
            self.endpoint,
            loop,
            self.clock,
            instances=cfg.instances,
            capacity=cfg.capacity,
            settings=SimulationSettings(metric_lag_s=cfg.metric_lag_s),
            log=self._log,
        )
        components = self.components = Components(
            plane,
            self.endpoint,
            cfg.llm,
            loop,
            self.clock,
            settings=SimulationSettings(metric_lag_s=cfg.metric_lag_s),
            log=self._log,
        )
        api = ComponentApi(ControlApi(plane, self.autoscaler, self.clock), components)
        documents = {
            "status": self.status,
            "timeline": self.timeline,
            "components": self.components_document,
        }
        router = self._router = Router(
            self.endpoint,
            self.clock,
            api,
            documents,
            loop,
            self._executor,
            region=cfg.region,
            limits=cfg.http_limits,
        )
        router.streams = StreamRoute(components, router.request_id)
        self._server = asyncio.run_coroutine_threadsafe(
            loop.create_server(lambda: HttpConnection(router), sock=sock), loop
        ).result(timeout=10)
        self._sock = None  # the server owns it now
        self.port = int(self._server.sockets[0].getsockname()[1])
        plane.port = self.port
        plane.create_endpoint(cfg.endpoint, cfg.variant, cfg.instances, cfg.capacity.instance_type)
        if cfg.inference_component is not None:
            components.create(cfg.inference_component, cfg.copies, loaded=True)
        self._scaler_thread = threading.Thread(
            target=self.autoscaler.run,
            args=(self._stop,),
            name="tuner-emulator-scaler",
            daemon=True,
        )
        self._scaler_thread.start()

    def stop(self) -> None:
        """Stop serving and scaling; threads joined, port freed. Safe to call twice."""
        self._stop.set()
        if self.components is not None:
            self.components.stop_all()
            self.components = None
        if self._scaler_thread is not None:
            self._scaler_thread.join(timeout=30)
            self._scaler_thread = None
        loop = self._loop
        if loop is not None and self._server is not None:
            server = self._server
            self._server = None

            async def _close() -> None:
                server.close()
                # Server.close() leaves accepted connections open: close them ourselves.
                for conn in list(self._router.connections if self._router else ()):
                    conn.close()
                await server.wait_closed()

            asyncio.run_coroutine_threadsafe(_close(), loop).result(timeout=10)
        if self._sock is not None:
            self._sock.close()
            self._sock = None
        if self._executor is not None:
            self._executor.shutdown(wait=True, cancel_futures=True)
            self._executor = None
        if loop is not None:
            loop.call_soon_threadsafe(loop.stop)
            if self._loop_thread is not None:
                self._loop_thread.join(timeout=10)
            self._loop_thread = None
            loop.close()
            self._loop = None
        if self._holding:
            self._holding = False
            _ACTIVE.release()

    # -- what clients need ---------------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    @property
    def env(self) -> dict[str, str]:
        """Environment for boto3, the AWS CLI and Locust to use this local AWS."""
        return {
            "AWS_ENDPOINT_URL": self.url,
            "AWS_ACCESS_KEY_ID": DUMMY_ACCESS_KEY,
            "AWS_SECRET_ACCESS_KEY": DUMMY_SECRET_KEY,
            "AWS_DEFAULT_REGION": self.config.region,
            "AWS_REGION": self.config.region,
        }

    def timeline(self) -> dict[str, Any]:
        """The ``/_tuner/timeline`` document: instances per 10-s step, in virtual time.

        ``rows``: [start virtual epoch s, instances in service, desired] for each step, as they
        are after the decisions at its start (the convention of ``timeline.csv``).
        """
        rows = [[t, n, d] for t, n, d, _ in list(self.autoscaler.history)]
        return {"step_s": 10, "virtual_epoch_s": self.clock.v0, "rows": rows}

    def status(self) -> dict[str, Any]:
        """The ``/_tuner/status`` document: clock, instances, queue."""
        view = self.autoscaler.view()
        ep = self.endpoint
        return {
            "virtual_now_s": self.clock.now(),
            "virtual_elapsed_s": self.clock.elapsed_s(),
            "endpoint": ep.name,
            "variant": ep.variant,
            "endpoint_status": view.status,
            "instances_in_service": view.current,
            "desired_instances": view.desired,
            "slots_per_instance": ep.model.slots,
            "busy": ep.busy,
            "queued": ep.queued,
            "invocations_total": ep.total_invocations,
            "scaling_activities": len(self.autoscaler.activities),
            "inference_components": self.component_status(),
        }

    def component_timeline(self, name: str) -> dict[str, Any]:
        """An inference component's copies per 10-s step (as ``timeline()`` for instances).

        ``rows``: [start virtual epoch s, copies in service, desired copies, instances running on
        the endpoint] for each step, as they are after the decisions at its start.
        """
        comps = self.components
        item = comps.get(name) if comps is not None else None
        if item is None:
            raise ValidationError(f"no inference component {name!r} on the local AWS")
        scaler = item.scaler
        rows = [[t, n, d, scaler.instances_at.get(t, 0)] for t, n, d, _ in list(scaler.history)]
        return {"step_s": 10, "virtual_epoch_s": self.clock.v0, "rows": rows}

    def components_document(self) -> dict[str, Any]:
        """The ``/_tuner/components`` document: status and timeline of every component."""
        comps = self.components
        names = comps.names() if comps is not None else []
        return {
            **self.component_status(),
            "timelines": {n: self.component_timeline(n)["rows"] for n in names},
        }

    def component_status(self) -> dict[str, Any]:
        """Per inference component: copies desired and in service, sequences, queue; and the
        endpoint's instances under managed instance scaling."""
        comps = self.components
        if comps is None:
            return {}
        out: dict[str, Any] = {}
        for name in comps.names():
            item = comps.get(name)
            if item is None:
                continue
            view = item.scaler.view()
            rt = item.runtime
            out[name] = {
                "status": comps.status(item),
                "desired_copies": view.desired,
                "copies_in_service": rt.in_service,
                "active_sequences": rt.active,
                "queued": rt.queued,
                "invocations_total": rt.total_invocations,
                "no_capacity_failures_total": rt.no_capacity_total,
            }
        running, booting = comps.pool.instances()
        return {"components": out, "instances_running": running, "instances_booting": booting}
