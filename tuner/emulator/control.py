"""The control plane: moto's WSGI app in this process, spoken to in AWS's own request shapes.

Clients' control-plane calls are handed to moto as they arrive (SigV4 credential scope picks the
service). The emulator itself also talks to moto through the public API shapes (JSON protocol,
a credential scope naming the service), never through moto's internal models, so a moto upgrade
cannot silently change what it reads. Every call holds one lock: moto's backends are not
thread-safe, and the control plane sees a handful of calls per second.
"""

from __future__ import annotations

import io
import json
import re
import sys
import threading
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from tuner.errors import AwsError

ACCOUNT_ID = "123456789012"
"""moto's default account: what dummy credentials map to."""
DUMMY_ACCESS_KEY = "testing"
DUMMY_SECRET_KEY = "testing"

_TARGET_PREFIX = {
    "application-autoscaling": ("AnyScaleFrontendService", "1.1"),
    "sagemaker": ("SageMaker", "1.1"),
    "monitoring": ("GraniteServiceVersion20100801", "1.0"),
}


@dataclass(frozen=True)
class HttpRequest:
    """One parsed HTTP request."""

    method: str
    path: str
    query: str
    headers: dict[str, str]
    """Lower-cased names."""
    body: bytes = b""

    @property
    def amz_target(self) -> str:
        return self.headers.get("x-amz-target", "")


@dataclass(frozen=True)
class HttpResponse:
    status: int
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""

    @classmethod
    def json(cls, status: int, doc: Any, content_type: str = "application/json") -> HttpResponse:
        return cls(status, [("Content-Type", content_type)], json.dumps(doc).encode())

    @classmethod
    def aws_error(cls, status: int, code: str, message: str, **extra: Any) -> HttpResponse:
        """An AWS JSON-protocol error (botocore reads the code from the header and __type)."""
        doc = {"__type": code, "message": message, "Message": message, **extra}
        return cls(
            status,
            [("Content-Type", "application/x-amz-json-1.1"), ("x-amzn-ErrorType", code)],
            json.dumps(doc).encode(),
        )

    def json_body(self) -> Any:
        return json.loads(self.body or b"{}")


# moto's Application Auto Scaling knows no inference components (its ScalableDimension enum stops
# at variants). Their targets, policies and actions are stored under a stand-in variant id and
# translated back in every answer, so clients and the autoscaler only ever see the real ids.
_IC_DIMENSION = "sagemaker:inference-component:DesiredCopyCount"
_VARIANT_DIMENSION = "sagemaker:variant:DesiredInstanceCount"
_STAND_IN = "endpoint/tuner-inference-component--{}/variant/DesiredCopyCount"
_STAND_IN_RE = re.compile(r"endpoint/tuner-inference-component--([^/\"]+)/variant/DesiredCopyCount")


def _to_moto(doc: Any) -> Any:
    """A request with inference-component ids in their stand-in form."""
    if isinstance(doc, dict):
        out = {k: _to_moto(v) for k, v in doc.items()}
        if out.get("ScalableDimension") == _IC_DIMENSION:
            out["ScalableDimension"] = _VARIANT_DIMENSION
        return out
    if isinstance(doc, list):
        return [_to_moto(v) for v in doc]
    if isinstance(doc, str) and doc.startswith("inference-component/"):
        return _STAND_IN.format(doc.split("/", 1)[1])
    return doc


def _from_moto(doc: Any) -> Any:
    """An answer with the stand-in ids turned back into inference-component ids."""
    if isinstance(doc, dict):
        stand_in = isinstance(doc.get("ResourceId"), str) and bool(
            _STAND_IN_RE.fullmatch(doc["ResourceId"])
        )
        out = {k: _from_moto(v) for k, v in doc.items()}
        if stand_in and out.get("ScalableDimension") == _VARIANT_DIMENSION:
            out["ScalableDimension"] = _IC_DIMENSION
        return out
    if isinstance(doc, list):
        return [_from_moto(v) for v in doc]
    if isinstance(doc, str) and "tuner-inference-component--" in doc:
        return _STAND_IN_RE.sub(lambda m: f"inference-component/{m.group(1)}", doc)
    return doc


def _translate(req: HttpRequest) -> HttpRequest | None:
    """The request for moto if it names an inference component, else None."""
    if b"inference-component" not in req.body:
        return None
    try:
        doc = json.loads(req.body)
    except ValueError:
        return None
    body = json.dumps(_to_moto(doc)).encode()
    return HttpRequest(req.method, req.path, req.query, req.headers, body)


def _reset_moto(account: str, region: str) -> None:
    """Forget what a previous emulator in this process left in moto's global backends."""
    from moto.applicationautoscaling.models import applicationautoscaling_backends
    from moto.cloudwatch.models import cloudwatch_backends
    from moto.sagemaker.models import sagemaker_backends

    for backends in (applicationautoscaling_backends, cloudwatch_backends, sagemaker_backends):
        backends[account][region].reset()


class MotoPlane:
    """moto's control plane, called in process through its WSGI app."""

    def __init__(self, region: str, port: int = 0) -> None:
        from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app

        self.region = region
        self.port = port
        self._app = DomainDispatcherApplication(create_backend_app)
        self.lock = threading.Lock()
        _reset_moto(ACCOUNT_ID, region)

    def forward(self, req: HttpRequest) -> HttpResponse:
        """Hand a client's request to moto (inference-component ids translated both ways)."""
        if not req.amz_target.startswith("AnyScaleFrontendService."):
            return self._forward(req)
        resp = self._forward(_translate(req) or req)
        if b"tuner-inference-component--" not in resp.body:
            return resp
        body = json.dumps(_from_moto(json.loads(resp.body))).encode()
        return HttpResponse(resp.status, resp.headers, body)

    def _forward(self, req: HttpRequest) -> HttpResponse:
        environ = self._environ(req)
        status_line: list[str] = []
        out_headers: list[tuple[str, str]] = []

        def start_response(
            status: str, headers: list[tuple[str, str]], exc_info: Any = None
        ) -> Callable[[bytes], None]:
            status_line.append(status)
            out_headers[:] = headers
            return lambda data: None

        with self.lock:
            chunks: Iterable[bytes] = self._app(environ, start_response)
            try:
                body = b"".join(chunks)
            finally:
                close = getattr(chunks, "close", None)
                if close is not None:
                    close()
        skip = {"content-length", "connection", "transfer-encoding", "server", "date"}
        headers = [(k, v) for k, v in out_headers if k.lower() not in skip]
        return HttpResponse(int(status_line[0].split()[0]), headers, body)

    def call(self, service: str, action: str, params: dict[str, Any]) -> dict[str, Any]:
        """One JSON-protocol API call made by the emulator itself; AWS errors raise AwsError."""
        prefix, version = _TARGET_PREFIX[service]
        scope = f"{DUMMY_ACCESS_KEY}/20000101/{self.region}/{service}/aws4_request"
        headers = {
            "host": f"127.0.0.1:{self.port}",
            "content-type": f"application/x-amz-json-{version}",
            "x-amz-target": f"{prefix}.{action}",
            "authorization": f"AWS4-HMAC-SHA256 Credential={scope}, SignedHeaders=host, "
            "Signature=0",
        }
        if service == "monitoring":
            headers["x-amzn-query-mode"] = "true"
        body = json.dumps(params, default=_json_default).encode()
        resp = self.forward(HttpRequest("POST", "/", "", headers, body))
        doc = resp.json_body() if resp.body else {}
        if resp.status >= 300:
            code = doc.get("__type", "").split("#")[-1] or str(resp.status)
            raise AwsError(f"{service} {action}: {code}: {doc.get('message', doc)}")
        return doc

    def _environ(self, req: HttpRequest) -> dict[str, Any]:
        from urllib.parse import unquote

        environ: dict[str, Any] = {
            "REQUEST_METHOD": req.method,
            "SCRIPT_NAME": "",
            "PATH_INFO": unquote(req.path),
            "QUERY_STRING": req.query,
            "SERVER_NAME": "127.0.0.1",
            "SERVER_PORT": str(self.port),
            "SERVER_PROTOCOL": "HTTP/1.1",
            "REMOTE_ADDR": "127.0.0.1",
            "wsgi.version": (1, 0),
            "wsgi.url_scheme": "http",
            "wsgi.input": io.BytesIO(req.body),
            "wsgi.errors": sys.stderr,
            "wsgi.multithread": True,
            "wsgi.multiprocess": False,
            "wsgi.run_once": False,
            "CONTENT_LENGTH": str(len(req.body)),
        }
        for name, value in req.headers.items():
            if name == "content-type":
                environ["CONTENT_TYPE"] = value
            elif name != "content-length":
                environ["HTTP_" + name.upper().replace("-", "_")] = value
        environ.setdefault("CONTENT_TYPE", "")
        environ.setdefault("HTTP_HOST", f"127.0.0.1:{self.port}")
        return environ

    # -- the emulated endpoint's resources -------------------------------------------------------

    def create_endpoint(
        self, endpoint: str, variant: str, instances: int, instance_type: str
    ) -> str:
        """Model, endpoint config and endpoint, so DescribeEndpoint shows the emulated one."""
        model = f"{endpoint}-model"
        config = f"{endpoint}-config"
        role = f"arn:aws:iam::{ACCOUNT_ID}:role/tuner-emulator"
        image = f"{ACCOUNT_ID}.dkr.ecr.{self.region}.amazonaws.com/tuner-emulated-model:latest"
        self.call(
            "sagemaker",
            "CreateModel",
            {"ModelName": model, "ExecutionRoleArn": role, "PrimaryContainer": {"Image": image}},
        )

        def create_config(instance_type: str) -> None:
            self.call(
                "sagemaker",
                "CreateEndpointConfig",
                {
                    "EndpointConfigName": config,
                    "ProductionVariants": [
                        {
                            "VariantName": variant,
                            "ModelName": model,
                            "InitialInstanceCount": instances,
                            "InstanceType": instance_type,
                            "InitialVariantWeight": 1.0,
                        }
                    ],
                },
            )

        try:
            create_config(instance_type)
        except AwsError as e:
            # moto knows only an older list of instance types (no ml.g5, ml.inf2, ...); the
            # type is a label here, the capacity file is what the endpoint emulates.
            if "instanceType" not in str(e):
                raise
            create_config(FALLBACK_INSTANCE_TYPE)
        doc = self.call(
            "sagemaker", "CreateEndpoint", {"EndpointName": endpoint, "EndpointConfigName": config}
        )
        return str(doc.get("EndpointArn", ""))

    def put_metric_data(self, namespace: str, datums: list[dict[str, Any]]) -> None:
        for i in range(0, len(datums), 500):
            self.call(
                "monitoring",
                "PutMetricData",
                {"Namespace": namespace, "MetricData": datums[i : i + 500]},
            )

    def scalable_target(self, resource_id: str, dimension: str) -> dict[str, Any] | None:
        doc = self.call(
            "application-autoscaling",
            "DescribeScalableTargets",
            {
                "ServiceNamespace": "sagemaker",
                "ResourceIds": [resource_id],
                "ScalableDimension": dimension,
            },
        )
        targets = doc.get("ScalableTargets", [])
        return targets[0] if targets else None

    def scheduled_actions(self, resource_id: str, dimension: str) -> list[dict[str, Any]]:
        doc = self.call(
            "application-autoscaling",
            "DescribeScheduledActions",
            {
                "ServiceNamespace": "sagemaker",
                "ResourceId": resource_id,
                "ScalableDimension": dimension,
            },
        )
        return [
            a
            for a in doc.get("ScheduledActions", [])
            if a.get("ResourceId") == resource_id and a.get("ScalableDimension") == dimension
        ]

    def set_range(self, resource_id: str, dimension: str, low: int, high: int) -> None:
        """RegisterScalableTarget with a new MinCapacity/MaxCapacity (what a scheduled action
        does to the target; DescribeScalableTargets shows the new range afterwards)."""
        self.call(
            "application-autoscaling",
            "RegisterScalableTarget",
            {
                "ServiceNamespace": "sagemaker",
                "ResourceId": resource_id,
                "ScalableDimension": dimension,
                "MinCapacity": low,
                "MaxCapacity": high,
            },
        )

    def scaling_policies(self, resource_id: str, dimension: str) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        token: str | None = None
        while True:
            params: dict[str, Any] = {
                "ServiceNamespace": "sagemaker",
                "ResourceId": resource_id,
                "ScalableDimension": dimension,
            }
            if token:
                params["NextToken"] = token
            doc = self.call("application-autoscaling", "DescribeScalingPolicies", params)
            out.extend(doc.get("ScalingPolicies", []))
            token = doc.get("NextToken")
            if not token:
                return out

    def metric_alarms(self) -> list[dict[str, Any]]:
        """Every CloudWatch metric alarm (step policies act through them)."""
        out: list[dict[str, Any]] = []
        token: str | None = None
        while True:
            params: dict[str, Any] = {"AlarmTypes": ["MetricAlarm"]}
            if token:
                params["NextToken"] = token
            doc = self.call("monitoring", "DescribeAlarms", params)
            out.extend(doc.get("MetricAlarms", []))
            token = doc.get("NextToken")
            if not token:
                return out


FALLBACK_INSTANCE_TYPE = "ml.m5.xlarge"


def _json_default(value: Any) -> Any:
    from datetime import datetime

    if isinstance(value, datetime):
        return value.timestamp()
    raise TypeError(f"not JSON serialisable: {value!r}")


def new_request_id() -> str:
    return str(uuid.uuid4())
