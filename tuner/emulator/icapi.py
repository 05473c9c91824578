"""Inference components of the emulated endpoint, and the control-plane calls moto lacks for them.

sagemaker ``CreateInferenceComponent``, ``DescribeInferenceComponent``,
``UpdateInferenceComponent`` / ``UpdateInferenceComponentRuntimeConfig`` (CopyCount),
``DeleteInferenceComponent`` and ``ListInferenceComponents`` are answered here in the botocore
model's shapes; Application Auto Scaling calls on ``inference-component/<name>`` go to moto (see
``control.py`` for the id translation), after which the component's scaler re-reads at once, and
``DescribeScalingActivities`` for a component comes from its scaler's activity log.

Copies asked for by CreateInferenceComponent or an update load like a scale-out (copy load
time, plus an instance boot when managed instance scaling must add one); the component is
``Creating`` until the first are in service. ``LocalAws`` creates its configured component with
its copies already in service, as it does the variant's instances.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from tuner.clock import VirtualClock
from tuner.emulator.components import ComponentRuntime, InstancePool
from tuner.emulator.control import ACCOUNT_ID, HttpRequest, HttpResponse, MotoPlane
from tuner.emulator.endpoint import EmulatedEndpoint
from tuner.emulator.icscaler import ComponentScaler
from tuner.emulator.tokens import LlmServerSpec
from tuner.errors import TunerError, ValidationError
from tuner.model.settings import SimulationSettings
from tuner.policy.policy import ScalingPolicy

_SM = "SageMaker."
_AAS = "AnyScaleFrontendService."
_REFRESH = {
    _AAS + "PutScalingPolicy",
    _AAS + "DeleteScalingPolicy",
    _AAS + "DeregisterScalableTarget",
    _AAS + "RegisterScalableTarget",
}
_MAX_COPIES = 10_000


@dataclass
class Component:
    """One inference component: its runtime (event loop), scaler (thread) and description."""

    name: str
    variant: str
    runtime: ComponentRuntime
    scaler: ComponentScaler
    specification: dict[str, Any]
    created_v: float
    modified_v: float
    stop: threading.Event = field(default_factory=threading.Event)
    thread: threading.Thread | None = None
    served: bool = False
    """Some copy has been in service (Creating until then)."""


class Components:
    """The endpoint's inference components (created by the API or at start)."""

    def __init__(
        self,
        plane: MotoPlane,
        endpoint: EmulatedEndpoint,
        spec: LlmServerSpec,
        loop: asyncio.AbstractEventLoop,
        clock: VirtualClock,
        *,
        settings: SimulationSettings,
        log: Callable[[str], None] = lambda line: None,
    ) -> None:
        self.plane = plane
        self.endpoint = endpoint
        self.spec = spec
        self.clock = clock
        self.pool = InstancePool(spec, clock)
        self._loop = loop
        self._settings = settings
        self._log = log
        self._items: dict[str, Component] = {}
        self._lock = threading.Lock()

    def get(self, name: str) -> Component | None:
        return self._items.get(name)

    def names(self) -> list[str]:
        return sorted(self._items)

    def arn(self, name: str) -> str:
        return f"arn:aws:sagemaker:{self.plane.region}:{ACCOUNT_ID}:inference-component/{name}"

    def create(
        self,
        name: str,
        copies: int,
        *,
        variant: str | None = None,
        specification: dict[str, Any] | None = None,
        loaded: bool = False,
    ) -> Component:
        """A component with ``copies`` copies: in service now (``loaded``) or loading."""
        if not name or "/" in name:
            raise ValidationError(f"component name must be non-empty without '/': {name!r}")
        if not 0 <= copies <= _MAX_COPIES:
            raise ValidationError(f"CopyCount must be in 0..{_MAX_COPIES}, got {copies}")
        with self._lock:
            if name in self._items:
                raise ValidationError(
                    f'Cannot create already existing inference component "{self.arn(name)}".'
                )
            start = copies if loaded else 0
            runtime = ComponentRuntime(name, self.spec, self.clock, self._loop, copies=start)
            scaler = ComponentScaler(
                self.plane,
                self.endpoint,
                runtime,
                self.pool,
                self._loop,
                self.clock,
                copies=start,
                settings=self._settings,
                log=self._log,
            )
            if loaded:
                self.pool.settle()
            now = self.clock.now()
            item = Component(
                name,
                variant or self.endpoint.variant,
                runtime,
                scaler,
                specification or {},
                now,
                now,
                served=loaded and copies > 0,
            )
            self._items[name] = item
        if copies and not loaded:
            scaler.set_desired_by_hand(copies)
        item.thread = threading.Thread(
            target=scaler.run, args=(item.stop,), name=f"tuner-ic-{name}", daemon=True
        )
        item.thread.start()
        return item

    def set_copies(self, name: str, copies: int) -> None:
        item = self._need(name)
        if not isinstance(copies, int) or isinstance(copies, bool):
            raise ValidationError(f"CopyCount must be an integer, got {copies!r}")
        if not 0 <= copies <= _MAX_COPIES:
            raise ValidationError(f"CopyCount must be in 0..{_MAX_COPIES}, got {copies}")
        item.scaler.set_desired_by_hand(copies)
        item.modified_v = self.clock.now()

    def delete(self, name: str) -> None:
        with self._lock:
            item = self._items.pop(name, None)
        if item is None:
            raise ValidationError(f'Could not find inference component "{self.arn(name)}".')
        self._halt(item)

    def stop_all(self) -> None:
        with self._lock:
            items = list(self._items.values())
            self._items.clear()
        for item in items:
            self._halt(item)

    def _halt(self, item: Component) -> None:
        item.stop.set()
        if item.thread is not None:
            item.thread.join(timeout=30)
        self.pool.set_copies(item.name, 0)
        if not self._loop.is_closed():
            self._loop.call_soon_threadsafe(item.runtime.close)

    def _need(self, name: str) -> Component:
        item = self._items.get(name)
        if item is None:
            raise ValidationError(f'Could not find inference component "{self.arn(name)}".')
        return item

    # -- descriptions --------------------------------------------------------------------------

    def status(self, item: Component) -> str:
        view = item.scaler.view()
        if item.runtime.in_service > 0 or (view.desired == 0 and item.served):
            item.served = True
        if not item.served:
            return "Creating"
        return "Updating" if view.status == "Updating" else "InService"

    def describe(self, name: str) -> dict[str, Any]:
        item = self._need(name)
        view = item.scaler.view()
        return {
            **self._summary(item),
            "Specification": item.specification,
            "RuntimeConfig": {
                "DesiredCopyCount": view.desired,
                "CurrentCopyCount": item.runtime.in_service,
            },
        }

    def _summary(self, item: Component) -> dict[str, Any]:
        return {
            "InferenceComponentName": item.name,
            "InferenceComponentArn": self.arn(item.name),
            "EndpointName": self.endpoint.name,
            "EndpointArn": f"arn:aws:sagemaker:{self.plane.region}:{ACCOUNT_ID}:endpoint/"
            f"{self.endpoint.name}",
            "VariantName": item.variant,
            "InferenceComponentStatus": self.status(item),
            "CreationTime": item.created_v,
            "LastModifiedTime": item.modified_v,
        }

    def listing(self, params: dict[str, Any]) -> dict[str, Any]:
        items = sorted(self._items.values(), key=lambda i: i.created_v)
        out = []
        for item in items:
            summary = self._summary(item)
            if params.get("EndpointNameEquals") not in (None, summary["EndpointName"]):
                continue
            if params.get("VariantNameEquals") not in (None, item.variant):
                continue
            if params.get("NameContains", "") not in item.name:
                continue
            if params.get("StatusEquals") not in (None, summary["InferenceComponentStatus"]):
                continue
            out.append(summary)
        if params.get("SortOrder") == "Descending":
            out.reverse()
        limit = params.get("MaxResults")
        return {"InferenceComponents": out[:limit] if isinstance(limit, int) else out}


class ComponentApi:
    """The control-plane handler: component calls answered here, the rest to ``inner``."""

    def __init__(self, inner: Callable[[HttpRequest], HttpResponse], components: Components):
        self.inner = inner
        self.components = components

    def __call__(self, req: HttpRequest) -> HttpResponse:
        target = req.amz_target
        is_ic = "InferenceComponent" in target and target.startswith(_SM)
        if not is_ic and not (target.startswith(_AAS) and b"inference-component/" in req.body):
            return self.inner(req)
        try:
            params: dict[str, Any] = json.loads(req.body or b"{}")
        except ValueError:
            return HttpResponse.aws_error(400, "SerializationException", "malformed JSON body")
        try:
            if is_ic:
                return self._component_call(target[len(_SM) :], params)
            return self._scaling_call(target, params, req)
        except TunerError as e:
            return HttpResponse.aws_error(400, "ValidationException", str(e))

    def _component_call(self, action: str, params: dict[str, Any]) -> HttpResponse:
        comps = self.components
        name = str(params.get("InferenceComponentName", ""))
        if action == "CreateInferenceComponent":
            ep = params.get("EndpointName")
            if ep != comps.endpoint.name:
                raise ValidationError(
                    f'Could not find endpoint "arn:aws:sagemaker:{comps.plane.region}:'
                    f'{ACCOUNT_ID}:endpoint/{ep}".'
                )
            copies = (params.get("RuntimeConfig") or {}).get("CopyCount", 1)
            if not isinstance(copies, int) or isinstance(copies, bool):
                raise ValidationError(f"RuntimeConfig.CopyCount must be an integer, got {copies!r}")
            comps.create(
                name,
                copies,
                variant=params.get("VariantName"),
                specification=params.get("Specification") or {},
            )
            return _ok({"InferenceComponentArn": comps.arn(name)})
        if action == "DescribeInferenceComponent":
            return _ok(comps.describe(name))
        if action == "ListInferenceComponents":
            return _ok(comps.listing(params))
        if action == "DeleteInferenceComponent":
            comps.delete(name)
            return _ok({})
        if action in ("UpdateInferenceComponent", "UpdateInferenceComponentRuntimeConfig"):
            key = "DesiredRuntimeConfig" if action.endswith("RuntimeConfig") else "RuntimeConfig"
            config = params.get(key)
            if config is not None:
                comps.set_copies(name, config.get("CopyCount"))
            elif comps.get(name) is None:
                comps.describe(name)  # the not-found error
            item = comps.get(name)
            if item is not None and params.get("Specification"):
                item.specification = params["Specification"]
            return _ok({"InferenceComponentArn": comps.arn(name)})
        return HttpResponse.aws_error(400, "UnknownOperationException", f"{action} is not emulated")

    def _scaling_call(self, target: str, params: dict[str, Any], req: HttpRequest) -> HttpResponse:
        rid = str(params.get("ResourceId", ""))
        ours = rid.startswith("inference-component/")
        item = self.components.get(rid.split("/", 1)[1]) if ours else None
        if target == _AAS + "DescribeScalingActivities" and item is not None:
            doc = item.scaler.activities.describe(params, self.components.clock.now())
            return HttpResponse.json(200, doc, "application/x-amz-json-1.1")
        if target == _AAS + "RegisterScalableTarget":
            lo, hi = params.get("MinCapacity"), params.get("MaxCapacity")
            if isinstance(lo, int) and isinstance(hi, int) and lo > hi:
                raise ValidationError(
                    f"Minimum capacity cannot be greater than maximum capacity ({lo} > {hi})"
                )
        if target == _AAS + "PutScalingPolicy" and params.get("PolicyType") == (
            "TargetTrackingScaling"
        ):
            dim = str(params.get("ScalableDimension", ""))
            registered = self.components.plane.scalable_target(rid, dim)
            if registered is not None:  # else moto answers ObjectNotFoundException
                ScalingPolicy.from_aws(registered, params)  # PolicyError: 400 as AWS answers
        resp = self.inner(req)
        if resp.status < 300 and target in _REFRESH and item is not None:
            item.scaler.refresh()
        return resp


def _ok(doc: dict[str, Any]) -> HttpResponse:
    return HttpResponse.json(200, doc, "application/x-amz-json-1.1")
