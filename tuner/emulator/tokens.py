"""The token-throughput service model of one inference-component copy (an LLM server).

A simple continuous-batching model [MODEL], with every parameter in :class:`LlmServerSpec`:

- a copy runs at most ``max_concurrent_sequences`` sequences at once; a request beyond that waits
  in the component's FIFO queue and fails after ``timeout_ms`` (SageMaker's 424 invocation
  timeout), as the variant path does;
- when a request starts on a copy that then runs c sequences (itself included), its prompt is
  prefilled at ``prefill_tokens_per_s / (1 + prefill_contention x (c - 1))`` tokens/s, so
  TTFT = queue wait + prompt_tokens / that rate (the first token comes out with the prefill);
- each sequence then decodes at ``decode_tokens_per_s / (1 + decode_contention x (c - 1))``
  tokens/s, c the sequences on its copy when each token is emitted: the inter-token latency
  ITL(c) = (1 + decode_contention x (c - 1)) / decode_tokens_per_s. The copy's total output
  rate c / ITL(c) grows with c but less than linearly, as batching on one GPU does.

Defaults: an 8B model (Llama 3.1 8B, 16-bit weights) on ml.g6.2xlarge (one NVIDIA L4, 300 GB/s):
about 30 tokens/s for one sequence (16 GB of weights read per token), prefill in the low
thousands of tokens/s (512 tokens in ~0.2 s), 8 sequences per copy; a copy loads in 258 s (AWS's
published scale-out figure with container caching) and a copy needing a new instance takes
525 s (the published figure without caching): instance boot 267 s + copy load 258 s.

Request tokens (contract of issue #16): prompt tokens = whitespace-separated words of
``inputs``; the server generates exactly ``parameters.max_new_tokens`` tokens.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from tuner.errors import ValidationError

DEFAULT_MAX_NEW_TOKENS = 256
MAX_NEW_TOKENS_LIMIT = 32_768
TOKEN_LINE = b'{"token": {"text": " tok"}}\n'
"""One generated token as a JSON line of the response stream (LMI/TGI style)."""


@dataclass(frozen=True, kw_only=True)
class LlmServerSpec:
    """What one copy of the model serves, and how copies and instances come and go."""

    prefill_tokens_per_s: float = 2500.0
    prefill_contention: float = 0.3
    """Prefill slows by this fraction per other sequence on the copy."""
    decode_tokens_per_s: float = 30.0
    """Tokens/s of a sequence decoding alone on its copy."""
    decode_contention: float = 0.15
    """ITL grows by this fraction per other sequence on the copy."""
    max_concurrent_sequences: int = 8
    copies_per_instance: int = 1
    copy_load_s: float = 258.0
    """Virtual seconds from placing a copy on a running instance to serving."""
    instance_boot_s: float = 267.0
    """Virtual seconds to boot an instance that managed instance scaling adds."""
    min_instances: int = 0
    """ManagedInstanceScaling MinInstanceCount: instances kept even with no copy."""
    max_instances: int = 4
    """ManagedInstanceScaling MaxInstanceCount: copies beyond max x copies_per_instance wait."""
    timeout_ms: float = 60_000.0
    """A request still queued this long fails (424 ModelError, as the invocation timeout)."""
    queue_cap: int = 2000
    """Queued requests per component beyond which new ones are throttled (429)."""
    instance_type: str = "ml.g6.2xlarge"
    hourly_usd: float = 0.9776

    def __post_init__(self) -> None:
        positive = {
            "prefill_tokens_per_s": self.prefill_tokens_per_s,
            "decode_tokens_per_s": self.decode_tokens_per_s,
            "timeout_ms": self.timeout_ms,
        }
        for name, value in positive.items():
            if not (math.isfinite(value) and value > 0):
                raise ValidationError(f"LLM spec: {name} > 0 must hold, got {value:g}")
        non_negative = {
            "prefill_contention": self.prefill_contention,
            "decode_contention": self.decode_contention,
            "copy_load_s": self.copy_load_s,
            "instance_boot_s": self.instance_boot_s,
            "hourly_usd": self.hourly_usd,
        }
        for name, value in non_negative.items():
            if not (math.isfinite(value) and value >= 0):
                raise ValidationError(f"LLM spec: {name} >= 0 must hold, got {value:g}")
        for name, n, low in (
            ("max_concurrent_sequences", self.max_concurrent_sequences, 1),
            ("copies_per_instance", self.copies_per_instance, 1),
            ("min_instances", self.min_instances, 0),
            ("max_instances", self.max_instances, 1),
            ("queue_cap", self.queue_cap, 1),
        ):
            if not isinstance(n, int) or isinstance(n, bool) or n < low:
                raise ValidationError(f"LLM spec: {name} must be an integer >= {low}, got {n!r}")
        if self.min_instances > self.max_instances:
            raise ValidationError(
                f"LLM spec: min_instances <= max_instances must hold, "
                f"got {self.min_instances} > {self.max_instances}"
            )

    # -- the service model -----------------------------------------------------------------------

    def ttft_s(self, prompt_tokens: int, sequences: int) -> float:
        """Prefill time of a prompt started on a copy that then runs ``sequences`` sequences."""
        c = max(1, sequences)
        rate = self.prefill_tokens_per_s / (1.0 + self.prefill_contention * (c - 1))
        return max(0, prompt_tokens) / rate

    def itl_s(self, sequences: int) -> float:
        """Time between two tokens of a sequence on a copy running ``sequences`` sequences."""
        c = max(1, sequences)
        return (1.0 + self.decode_contention * (c - 1)) / self.decode_tokens_per_s

    def max_copies(self) -> int:
        """Copies the endpoint can place: MaxInstanceCount x copies per instance."""
        return self.max_instances * self.copies_per_instance

    def capacity_doc(
        self,
        *,
        prompt_tokens: int = 512,
        output_tokens: int = 256,
        concurrency: tuple[int, ...] | None = None,
    ) -> dict[str, Any]:
        """What a perfect calibration of this copy would write: the token-aware capacity file
        of issue #16 (``kind: llm``), TTFT and ITL at each concurrency from this model (no
        spread: p50 = p99), the limits and load times as configured."""
        top = self.max_concurrent_sequences
        points = concurrency or tuple(sorted({c for c in (1, 2, 4, top) if c <= top}))
        return {
            "kind": "llm",
            "instance_type": self.instance_type,
            "hourly_usd": self.hourly_usd,
            "copies_per_instance": self.copies_per_instance,
            "instance_boot_s": self.instance_boot_s,
            "copy_load_s": self.copy_load_s,
            "max_concurrency_per_copy": self.max_concurrent_sequences,
            "timeout_ms": self.timeout_ms,
            "prompt_tokens": prompt_tokens,
            "output_tokens": output_tokens,
            "ttft_ms": [
                {"concurrency": c, "p50": t, "p99": t}
                for c in points
                for t in [round(self.ttft_s(prompt_tokens, c) * 1000.0, 3)]
            ],
            "itl_ms": [
                {"concurrency": c, "p50": t, "p99": t}
                for c in points
                for t in [round(self.itl_s(c) * 1000.0, 3)]
            ],
        }

    # -- files -----------------------------------------------------------------------------------

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, doc: Any, *, where: str = "LLM spec") -> LlmServerSpec:
        if not isinstance(doc, dict):
            raise ValidationError(f"{where}: a JSON object is required")
        known = {f.name: f.type for f in fields(cls)}
        unknown = sorted(set(doc) - set(known))
        if unknown:
            raise ValidationError(
                f"{where}: unknown field {unknown[0]!r} (known: {', '.join(sorted(known))})"
            )
        values: dict[str, Any] = {}
        for name, value in doc.items():
            kind = known[name]
            if kind == "str":
                if not isinstance(value, str) or not value:
                    raise ValidationError(f"{where}: {name} must be a non-empty string")
            elif kind == "int":
                if not isinstance(value, int) or isinstance(value, bool):
                    raise ValidationError(f"{where}: {name} must be an integer, got {value!r}")
            elif not isinstance(value, int | float) or isinstance(value, bool):
                raise ValidationError(f"{where}: {name} must be a number, got {value!r}")
            else:
                value = float(value)
            values[name] = value
        return cls(**values)

    @classmethod
    def load(cls, path: str | Path) -> LlmServerSpec:
        """Read a JSON file of LlmServerSpec fields (any subset; the rest keep their defaults)."""
        try:
            text = Path(path).read_text()
        except OSError as e:
            raise ValidationError(f"cannot read LLM spec {path}: {e.strerror}") from None
        try:
            doc = json.loads(text)
        except ValueError as e:
            raise ValidationError(f"LLM spec {path} is not JSON: {e}") from None
        return cls.from_json(doc, where=f"LLM spec {path}")


def parse_generation(body: bytes) -> tuple[int, int]:
    """(prompt tokens, tokens to generate) of a request body; ValidationError if malformed."""
    try:
        doc = json.loads(body or b"null")
    except ValueError:
        raise ValidationError("request body is not JSON") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("inputs"), str):
        raise ValidationError('request body must be a JSON object with a string "inputs"')
    params = doc.get("parameters") or {}
    if not isinstance(params, dict):
        raise ValidationError('"parameters" must be a JSON object')
    n = params.get("max_new_tokens", DEFAULT_MAX_NEW_TOKENS)
    if not isinstance(n, int) or isinstance(n, bool) or not 1 <= n <= MAX_NEW_TOKENS_LIMIT:
        raise ValidationError(
            f'"max_new_tokens" must be an integer in 1..{MAX_NEW_TOKENS_LIMIT}, got {n!r}'
        )
    return len(doc["inputs"].split()), n
