"""The load generator's client side, shared by the locustfile's processes: its options, sample
bodies, SigV4 signing, the per-request row and the failure kind of an answer.

The locustfile (``locustfiles/sagemaker_endpoint.py``) imports this after Locust has patched the
process with gevent; nothing here imports gevent or Locust, and botocore is imported here only
after that patch (the locustfile imports this module last). Light like :mod:`tuner.records`:
numpy, botocore and the profile/token modules only.

Streaming (``--stream``): requests go to ``POST {host}/endpoints/{name}/
invocations-response-stream`` (InvokeEndpointWithResponseStream; ``--inference-component`` adds
the ``X-Amzn-SageMaker-Inference-Component`` header) with LMI/TGI bodies whose prompt and
``max_new_tokens`` come from the profile's request trace, else from ``--prompt-tokens``,
``--output-tokens`` and ``--token-dist`` (tuner/profiles/tokens.py). The event-stream answer is
read one message at a time as it arrives (tuner/tokenstream.py): each row gets TTFT, ITL mean
and p99, prompt and output tokens; latency_ms is the time to the end of the stream.
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from pathlib import Path
from typing import Any

import botocore.session
import numpy as np
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest

from tuner.errors import ProfileError, ValidationError
from tuner.profiles.profile import Profile, profile_from_content
from tuner.profiles.profile_file import load_profile
from tuner.profiles.tokens import TokenDistribution, TokenSpec
from tuner.tokenstream import StreamStats

NAME = "InvokeEndpoint"
STREAM_NAME = "InvokeEndpointWithResponseStream"
NO_STREAM = ("", "", "", "", "")  # the streaming columns of a row that is not a stream
DEFAULT_PAYLOAD = b'{"inputs": "tuner load test"}'


def request_row(
    seq: int,
    t: float,
    sent_epoch_s: float,
    latency_ms: float | str,
    status: int,
    kind: str,
    worker: int,
    streamed: tuple[Any, ...] = NO_STREAM,
) -> tuple[Any, ...]:
    """One row of requests.csv (:data:`tuner.records.REQUEST_COLUMNS`); ``latency_ms`` "" for
    a request never sent."""
    latency = latency_ms if isinstance(latency_ms, str) else f"{latency_ms:.3f}"
    return (seq, f"{t:.6f}", f"{sent_epoch_s:.6f}", latency, status, kind, worker, *streamed)


def stream_columns(stream: StreamStats | None, prompt: int) -> tuple[Any, ...]:
    """The streaming columns of a streamed request's row (empty where nothing was measured)."""
    if stream is None:
        return ("", "", "", prompt, "")
    timed = (stream.ttft_ms, stream.itl_mean_ms, stream.itl_p99_ms)
    return (*(f"{v:.3f}".replace("nan", "") for v in timed), prompt, stream.output_tokens)


def add_options(parser: Any) -> None:
    """The locustfile's options, added to Locust's own parser."""
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
    g.add_argument("--stream", action="store_true", help="InvokeEndpointWithResponseStream")
    g.add_argument("--inference-component", default="", help="inference component (header)")
    g.add_argument("--prompt-tokens", type=int, default=512, help="--stream: mean prompt words")
    g.add_argument("--output-tokens", type=int, default=256, help="--stream: mean max_new_tokens")
    g.add_argument(
        "--token-dist",
        default="fixed",
        choices=[d.value for d in TokenDistribution],
        help="--stream: how lengths vary (fixed, lognormal with --token-sigma, uniform with "
        "--token-spread)",
    )
    g.add_argument("--token-sigma", type=float, default=0.5, help="lognormal sigma of log")
    g.add_argument("--token-spread", type=float, default=0.5, help="uniform: mean x [1-s, 1+s]")
    g.add_argument("--token-seed", type=int, default=0, help="seed of the token lengths")
    g.add_argument(
        "--sign-each-request",
        action="store_true",
        help="compute every signature afresh (default: identical bodies share one per second)",
    )


class BadOption(Exception):
    """A bad option: one line, exit 2."""


def die(message: str) -> None:
    """Exit 2 with one line: a bad option in a headless Locust process or on a worker."""
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
            raise BadOption(f"--payload: folder {p} has no sample files")
        return [f.read_bytes() for f in files]
    if not p.is_file():
        raise BadOption(f"--payload: file not found: {p}")
    bodies = []
    for n, line in enumerate(p.read_bytes().splitlines(), 1):
        if line.strip():
            try:
                json.loads(line)
            except ValueError:
                raise BadOption(f"--payload: {p} line {n}: not valid JSON") from None
            bodies.append(line.strip())
    if not bodies:
        raise BadOption(f"--payload: {p} has no payload lines")
    return bodies


def profile_content_file(path: str) -> Profile:
    """The profile whose content (Profile.to_content) the JSON file at ``path`` holds."""
    try:
        return profile_from_content(json.loads(Path(path).read_text(encoding="utf-8")))
    except (OSError, ValueError) as e:
        raise BadOption(f"--profile-content {path}: not a profile's content: {e}") from None
    except ProfileError as e:
        raise BadOption(f"--profile-content {path}: {e}") from None


def region_of(opts: Any) -> str:
    session = botocore.session.get_session()
    region = (
        opts.region
        or os.environ.get("AWS_REGION")
        or os.environ.get("AWS_DEFAULT_REGION")
        or session.get_config_variable("region")
    )
    if not region:
        raise BadOption("no AWS region: pass --region or set AWS_REGION (e.g. us-east-1)")
    return region


def default_host(region: str) -> str:
    return (
        os.environ.get("AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME")
        or os.environ.get("AWS_ENDPOINT_URL")
        or f"https://runtime.sagemaker.{region}.amazonaws.com"
    )


class Signer:
    """SigV4 headers for one InvokeEndpoint call (botocore's signer, standard credential chain).

    SigV4 has no nonce: the signature is a function of credentials, the X-Amz-Date second and
    the request. So identical bodies within one second reuse one signature, exactly what
    botocore would compute again (AWS accepts the same signed request for minutes); signing was
    a third of the generator's CPU. ``reuse=False`` signs every request afresh.
    """

    def __init__(
        self,
        region: str,
        content_type: str,
        accept: str,
        variant: str,
        reuse: bool = True,
        component: str = "",
    ) -> None:
        creds = botocore.session.get_session().get_credentials()
        if creds is None:
            raise BadOption(
                "no AWS credentials: set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or a profile"
            )
        self.creds, self.region = creds, region
        self.base = {"Content-Type": content_type, "Accept": accept}
        if variant:
            self.base["X-Amzn-SageMaker-Target-Variant"] = variant
        if component:
            self.base["X-Amzn-SageMaker-Inference-Component"] = component
        self.frozen: Any = None
        self.auth: SigV4Auth | None = None
        self.reuse, self.second = reuse, -1
        self.memo: dict[bytes, dict[str, str]] = {}

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


class Run:
    """What one Locust process knows about the current test: options, plan, records."""

    def __init__(self, opts: Any, *, worker: bool) -> None:
        self.opts = opts
        self.profile: Profile | None = None
        if worker:
            # Locust does not forward its own options (--profile is one) to workers, and the file
            # may not exist on their host: the master's plan carries the profile's content.
            pass
        elif opts.profile_content:
            self.profile = profile_content_file(opts.profile_content)
        elif not opts.profile:
            raise BadOption("--profile is required (a traffic profile TOML)")
        else:
            try:
                self.profile = load_profile(opts.profile)
            except ProfileError as e:
                raise BadOption(str(e)) from None
        if not opts.endpoint_name:
            raise BadOption("--endpoint-name is required")
        if not (opts.speed > 0 and math.isfinite(opts.speed)):
            raise BadOption(f"--speed must be > 0, got {opts.speed}")
        if opts.max_inflight < 1:
            raise BadOption(f"--max-inflight must be >= 1, got {opts.max_inflight}")
        self.payloads = load_payloads(opts.payload)
        self.seed = None if opts.seed < 0 else opts.seed
        self.region = region_of(opts)
        self.stream = bool(opts.stream)
        try:
            self.tokens = TokenSpec(
                prompt_tokens=opts.prompt_tokens,
                output_tokens=opts.output_tokens,
                distribution=TokenDistribution(opts.token_dist),
                sigma=opts.token_sigma,
                spread=opts.token_spread,
                seed=opts.token_seed,
            )
        except ValidationError as e:
            raise BadOption(str(e)) from None
        accept = "application/vnd.amazon.eventstream" if self.stream else opts.accept
        self.signer = Signer(
            self.region,
            opts.content_type,
            accept,
            opts.variant,
            not opts.sign_each_request,
            opts.inference_component,
        )
        self.driver_taken = False
        self.recorder: Any = None
        """Where rows go: the locustfile's CSV recorder, or a worker's shipper to the master."""
        self.offset_s = 0.0
        """Master clock minus this process's clock (0 but on a worker)."""
        self.done_workers: dict[int, dict[str, Any]] = {}
        self.worker_count = 1
        self.t0 = 0.0
        self.token_cache: dict[int, tuple[int, int]] = {}

    def token_counts(self, seqs: np.ndarray) -> None:
        """Draw the (prompt, output) tokens of the coming requests ``seqs`` once, in bulk."""
        if not self.stream or not seqs.size:
            return
        assert self.profile is not None
        if self.profile.has_tokens:
            prompt, output = self.profile.tokens_for(seqs)
        else:
            prompt, output = self.tokens.draw(seqs)
        pairs = zip(prompt.tolist(), np.maximum(output, 1).tolist(), strict=True)
        self.token_cache.update(zip(seqs.tolist(), pairs, strict=True))

    def csv_path(self) -> Path:
        return Path(self.opts.requests_csv)


def error_kind(status: int, resp: Any) -> str:
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
    if status == 400 and b"no capacity" in (resp.content or b"").lower():
        # An inference component at zero copies: "Inference Component has no capacity to process
        # this request" (a ValidationError; CloudWatch counts it as NoCapacityInvocationFailures).
        return "no_capacity"
    return "server_error" if status >= 500 else "client_error"


_PERMUTATIONS: dict[tuple[int, int, int], np.ndarray] = {}


def payload_index(seq: int, n: int, opts: Any) -> int:
    """Which of n sample bodies request ``seq`` sends (--payload-order cycle or random)."""
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
