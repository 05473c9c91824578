"""Token lengths of LLM requests: drawn from a distribution, or carried by a request trace.

A streaming load test sends LMI/TGI-style bodies::

    {"inputs": "<prompt of N words>", "parameters": {"max_new_tokens": M}, "stream": true}

where the prompt's words are its tokens. :class:`TokenSpec` says how N and M are drawn for
request ``seq``: ``fixed`` (every request the mean), ``lognormal`` (mean kept, ``sigma`` the
standard deviation of the log), or ``uniform`` (mean x [1 - spread, 1 + spread]); draws are
seeded per block of 4096 requests, so every Locust worker draws the same counts for a seq. A
profile that replays an Azure LLM trace carries per-request counts instead (``Profile.tokens``),
and request ``seq`` takes the trace's row ``seq`` (cycled when the profile asks for more).
"""

from __future__ import annotations

import enum
import json
import math
from dataclasses import dataclass

import numpy as np

from tuner.errors import ValidationError

_BLOCK = 4096
MAX_TOKENS = 1_000_000
"""Longest prompt or answer a request may ask for (tokens)."""


class TokenDistribution(enum.StrEnum):
    """How prompt and output lengths vary around their means."""

    FIXED = "fixed"
    LOGNORMAL = "lognormal"
    UNIFORM = "uniform"


@dataclass(frozen=True, kw_only=True)
class TokenSpec:
    """Prompt and output lengths of the requests of a streaming load test."""

    prompt_tokens: int = 512
    """Mean prompt length (words of ``inputs``)."""
    output_tokens: int = 256
    """Mean ``max_new_tokens``."""
    distribution: TokenDistribution = TokenDistribution.FIXED
    sigma: float = 0.5
    """lognormal: standard deviation of log(length); the mean stays the mean."""
    spread: float = 0.5
    """uniform: lengths fall in mean x [1 - spread, 1 + spread]."""
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("prompt_tokens", "output_tokens"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                flag = "--" + name.replace("_", "-")
                raise ValidationError(f"{flag} must be an integer >= 1, got {value!r}")
            if value > MAX_TOKENS:
                flag = "--" + name.replace("_", "-")
                raise ValidationError(f"{flag} must be at most {MAX_TOKENS}, got {value}")
        if not (math.isfinite(self.sigma) and 0 < self.sigma <= 3):
            raise ValidationError(f"--token-sigma must be in (0, 3], got {self.sigma:g}")
        if not (math.isfinite(self.spread) and 0 < self.spread < 1):
            raise ValidationError(f"--token-spread must be in (0, 1), got {self.spread:g}")

    def draw(self, seqs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(prompt, output) token counts of requests ``seqs``, each >= 1, seeded per block."""
        seqs = np.asarray(seqs, dtype=np.int64)
        if self.distribution is TokenDistribution.FIXED or not seqs.size:
            return (
                np.full(seqs.size, self.prompt_tokens, dtype=np.int64),
                np.full(seqs.size, self.output_tokens, dtype=np.int64),
            )
        prompt = np.empty(seqs.size, dtype=np.int64)
        output = np.empty(seqs.size, dtype=np.int64)
        for block in np.unique(seqs // _BLOCK).tolist():
            mine = seqs // _BLOCK == block
            rng = np.random.default_rng([self.seed, int(block)])
            k = seqs[mine] % _BLOCK
            if self.distribution is TokenDistribution.UNIFORM:
                u = rng.random((2, _BLOCK))[:, k]
                factor = 1 - self.spread + 2 * self.spread * u
            else:  # lognormal with the mean kept: E[exp(mu + sigma z)] = 1 when mu = -sigma^2/2
                z = rng.standard_normal((2, _BLOCK))[:, k]
                factor = np.exp(-(self.sigma**2) / 2 + self.sigma * z)
            prompt[mine] = _lengths(self.prompt_tokens * factor[0])
            output[mine] = _lengths(self.output_tokens * factor[1])
        return prompt, output


def _lengths(x: np.ndarray) -> np.ndarray:
    return np.asarray(np.clip(np.rint(x), 1, MAX_TOKENS), dtype=np.int64)


_PROMPTS: dict[int, str] = {}


def prompt_text(words: int) -> str:
    """A prompt of exactly ``words`` whitespace-separated words (cached by length)."""
    text = _PROMPTS.get(words)
    if text is None:
        if len(_PROMPTS) > 4096:
            _PROMPTS.clear()
        text = _PROMPTS[words] = " ".join(["tok"] * words)
    return text


def stream_body(prompt_tokens: int, output_tokens: int) -> bytes:
    """The request body asking for ``output_tokens`` tokens after a prompt of ``prompt_tokens``."""
    return json.dumps(
        {
            "inputs": prompt_text(prompt_tokens),
            "parameters": {"max_new_tokens": output_tokens},
            "stream": True,
        }
    ).encode()
