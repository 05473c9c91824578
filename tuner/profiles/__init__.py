"""Traffic profiles: TOML segments, a vectorised rate_at(t), and replays of recorded history."""

from tuner.profiles.profile import (
    NOISE_BLOCK_S,
    Noise,
    Profile,
    TrafficProfile,
    build_profile,
    load_profile,
    parse_profile,
)
from tuner.profiles.replay import (
    format_duration,
    parse_duration,
    parse_rate,
    read_replay_csv,
    replay_pieces,
)

__all__ = [
    "NOISE_BLOCK_S",
    "Noise",
    "Profile",
    "TrafficProfile",
    "build_profile",
    "format_duration",
    "load_profile",
    "parse_duration",
    "parse_profile",
    "parse_rate",
    "read_replay_csv",
    "replay_pieces",
]
