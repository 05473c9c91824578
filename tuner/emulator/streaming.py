"""InvokeEndpointWithResponseStream: ``POST /endpoints/{ep}/invocations-response-stream``.

The answer is 200 with ``Content-Type: application/vnd.amazon.eventstream`` and
``X-Amzn-SageMaker-Content-Type: application/jsonlines``, sent with chunked transfer encoding;
each chunk is one event-stream PayloadPart (:func:`tuner.eventstream.payload_part`) holding the
JSON lines of the tokens emitted together (``{"token": {"text": " tok"}}``, one per token). The
first chunk goes out when the first token is due, so a client's time to first byte is TTFT.

Before streaming starts, failures are SageMaker's runtime errors: 400 ValidationError for an
unknown endpoint or component, a missing component header on an endpoint with several, and no
copy in service ("Inference Component has no capacity to process this request..."); 424
ModelError for a malformed body or a request that waited past the timeout; 429 when the queue is
full. The ``X-Amzn-SageMaker-Inference-Component`` header names the component; without it an
endpoint with exactly one component serves from that one. ``InvokeEndpoint`` with that header is
served by the component too, answered in one piece once the last token is generated
(``{"generated_text": ...}``).
"""

from __future__ import annotations

import json
from collections.abc import Callable

from tuner import eventstream
from tuner.clock import VirtualClock
from tuner.emulator.components import Refusal
from tuner.emulator.control import ACCOUNT_ID, HttpRequest, HttpResponse
from tuner.emulator.framing import ChunkedWriter, runtime_error, timeout_error
from tuner.emulator.icapi import Components
from tuner.emulator.server import OpenStream, Reply
from tuner.emulator.tokens import TOKEN_LINE, parse_generation
from tuner.errors import ValidationError

COMPONENT_HEADER = "x-amzn-sagemaker-inference-component"
SERVER_TTFT_HEADER = "X-Tuner-Server-Ttft-Ms"
"""The emulator's own TTFT of a streamed answer: virtual ms from the request's arrival to its
first token's write (real ms = this / speed), to check a client's TTFT against."""
NO_CAPACITY_MESSAGE = (
    "Inference Component has no capacity to process this request. ApplicationAutoScaling may be "
    "in-progress (if configured) or try to increase the capacity by invoking "
    "UpdateInferenceComponentRuntimeConfig API."
)


class StreamAnswer:
    """One request's answer: an error before the first token, else the token stream."""

    __slots__ = (
        "_reply",
        "_open",
        "_request_id",
        "_endpoint",
        "_variant",
        "_writer",
        "_n",
        "_clock",
        "_arrival_v",
    )

    def __init__(
        self,
        reply: Reply,
        open_stream: OpenStream | None,
        request_id: str,
        endpoint: str,
        variant: str,
        clock: VirtualClock,
    ) -> None:
        self._reply = reply
        self._open = open_stream
        self._request_id = request_id
        self._endpoint = endpoint
        self._variant = variant
        self._writer: ChunkedWriter | None = None
        self._n = 0
        self._clock = clock
        self._arrival_v = clock.now()

    @property
    def closed(self) -> bool:
        return self._writer is not None and self._writer.closed

    def refuse(self, why: Refusal) -> None:
        rid = self._request_id
        if why is Refusal.NO_CAPACITY:
            self._reply(runtime_error(400, "ValidationError", NO_CAPACITY_MESSAGE, rid))
        elif why is Refusal.THROTTLED:
            self._reply(runtime_error(429, "ThrottlingException", "Rate exceeded", rid))
        else:
            self._reply(timeout_error(self._endpoint, rid))

    def tokens(self, n: int) -> None:
        self._n += n
        if self._open is None:  # InvokeEndpoint: the whole text when the last token is out
            return
        if self._writer is None:
            ttft_ms = (self._clock.now() - self._arrival_v) * 1000.0
            self._writer = self._open(
                200,
                [
                    ("Content-Type", eventstream.CONTENT_TYPE),
                    ("X-Amzn-SageMaker-Content-Type", "application/jsonlines"),
                    ("x-Amzn-Invoked-Production-Variant", self._variant),
                    ("x-amzn-RequestId", self._request_id),
                    (SERVER_TTFT_HEADER, f"{ttft_ms:.3f}"),
                ],
            )
        self._writer.write(eventstream.payload_part(TOKEN_LINE * n))

    def end(self) -> None:
        if self._open is None and self._n:
            body = json.dumps({"generated_text": " tok" * self._n}).encode()
            headers = [
                ("Content-Type", "application/json"),
                ("x-Amzn-Invoked-Production-Variant", self._variant),
                ("x-amzn-RequestId", self._request_id),
            ]
            self._reply(HttpResponse(200, headers, body))
            return
        if self._writer is None:  # ended before any token (the component was deleted)
            self._reply(
                runtime_error(
                    424,
                    "ModelError",
                    "Received server error (500) from primary: the model stopped",
                    self._request_id,
                )
            )
            return
        self._writer.end()


class StreamRoute:
    """The router's handler for the streaming route (event loop thread)."""

    def __init__(self, components: Components, request_id: Callable[[], str]) -> None:
        self.components = components
        self._request_id = request_id

    def __call__(
        self, endpoint: str, req: HttpRequest, reply: Reply, open_stream: OpenStream | None
    ) -> None:
        comps = self.components
        rid = self._request_id()
        if endpoint != comps.endpoint.name:
            msg = f"Endpoint {endpoint} of account {ACCOUNT_ID} not found."
            reply(runtime_error(400, "ValidationError", msg, rid))
            return
        name = req.headers.get(COMPONENT_HEADER)
        if name is None:
            names = comps.names()
            if len(names) != 1:
                reply(
                    runtime_error(
                        400,
                        "ValidationError",
                        "Inference Component Name header is required for endpoints to which you "
                        "plan to deploy inference components. Please include Inference Component "
                        "Name header or consider using SageMaker models.",
                        rid,
                    )
                )
                return
            name = names[0]
        item = comps.get(name)
        if item is None:
            msg = f"Inference Component {name} not found for endpoint {endpoint}."
            reply(runtime_error(400, "ValidationError", msg, rid))
            return
        try:
            prompt, new_tokens = parse_generation(req.body)
        except ValidationError as e:
            reply(_model_error(str(e), rid))
            return
        answer = StreamAnswer(reply, open_stream, rid, endpoint, item.variant, comps.clock)
        item.runtime.invoke(prompt, new_tokens, answer)


def _model_error(message: str, request_id: str) -> HttpResponse:
    original = json.dumps({"error": message})
    return runtime_error(
        424,
        "ModelError",
        f'Received client error (400) from primary with message "{original}". See the logs.',
        request_id,
        OriginalStatusCode=400,
        OriginalMessage=original,
    )
