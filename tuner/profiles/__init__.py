"""Traffic profiles: TOML segments, a vectorised rate_at(t), and replays of recorded history."""

from tuner.profiles.profile import (
    NOISE_BLOCK_S,
    Noise,
    Profile,
    build_profile,
    load_profile,
    parse_profile,
)
from tuner.profiles.replay import (
    parse_duration,
    read_replay_csv,
)

__all__ = [
    "NOISE_BLOCK_S",
    "Noise",
    "Profile",
    "build_profile",
    "load_profile",
    "parse_duration",
    "parse_profile",
    "read_replay_csv",
]
