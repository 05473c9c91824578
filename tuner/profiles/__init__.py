"""Traffic profiles: TOML segments, a vectorised rate_at(t), and replays of recorded history."""

from tuner.profiles.profile import (
    NOISE_BLOCK_S,
    Noise,
    Profile,
    TrafficProfile,
    build_profile,
    profile_from_content,
)
from tuner.profiles.profile_file import load_profile, parse_profile
from tuner.profiles.replay import (
    TOKEN_TRACE_COLUMNS,
    format_duration,
    parse_duration,
    parse_rate,
    read_replay_csv,
    read_trace,
    replay_pieces,
    replay_tokens,
)
from tuner.profiles.tokens import (
    MAX_TOKENS,
    TokenDistribution,
    TokenSpec,
    prompt_text,
    stream_body,
)

__all__ = [
    "MAX_TOKENS",
    "NOISE_BLOCK_S",
    "Noise",
    "Profile",
    "TOKEN_TRACE_COLUMNS",
    "TokenDistribution",
    "TokenSpec",
    "TrafficProfile",
    "build_profile",
    "format_duration",
    "load_profile",
    "parse_duration",
    "parse_profile",
    "parse_rate",
    "profile_from_content",
    "prompt_text",
    "read_replay_csv",
    "read_trace",
    "replay_pieces",
    "replay_tokens",
    "stream_body",
]
