"""Derived profiles: content shipped to Locust workers, windows, rate scaling, TOML round trips."""

from __future__ import annotations

import json
import tomllib

import numpy as np
import pytest

from tests.conftest import REPO
from tuner.errors import ValidationError
from tuner.profiles import load_profile, parse_profile, profile_from_content
from tuner.profiles.window import scaled, to_toml, window

READY = REPO / "locustfiles" / "profiles"
NAMES = ["flash-spike", "diurnal-24h", "launch-day", "replay-sample"]


@pytest.mark.parametrize("name", NAMES, ids=NAMES)
def test_content_survives_json_and_rebuilds_the_same_profile(name: str) -> None:
    profile = load_profile(READY / f"{name}.toml")
    # What a Locust master sends is plain data: through JSON (msgpack is no richer) and back.
    again = profile_from_content(json.loads(json.dumps(profile.to_content())))
    assert (again.name, again.noise, again.seed) == (profile.name, profile.noise, profile.seed)
    assert again.duration_s == profile.duration_s
    assert np.array_equal(again.arrivals(0, 600, seed=3), profile.arrivals(0, 600, seed=3))
    assert np.allclose(again.counts(60), profile.counts(60))


@pytest.mark.parametrize("name", NAMES, ids=NAMES)
def test_toml_reads_back_to_the_same_rates(name: str) -> None:
    profile = load_profile(READY / f"{name}.toml")
    again = parse_profile(tomllib.loads(to_toml(profile)))
    t = np.linspace(0, profile.duration_s, 997, endpoint=False)
    assert np.allclose(again.rate_at(t), profile.rate_at(t))


@pytest.mark.parametrize("name", NAMES, ids=NAMES)
def test_a_window_plays_that_part_of_the_profile(name: str) -> None:
    profile = load_profile(READY / f"{name}.toml")
    start, length = profile.duration_s / 3, profile.duration_s / 4
    part = window(profile, start, length)
    t = np.linspace(0, length, 501, endpoint=False)
    assert part.duration_s == pytest.approx(length)
    assert np.allclose(part.rate_at(t), profile.rate_at(start + t))
    expected = profile.cumulative(start + length) - profile.cumulative(start)
    assert part.total_requests == pytest.approx(float(expected))


def test_a_window_past_the_end_is_clipped_and_a_bad_start_refused() -> None:
    profile = load_profile(READY / "flash-spike.toml")
    assert window(profile, 1500, 3600).duration_s == 300
    with pytest.raises(ValidationError, match="window start must be in"):
        window(profile, 1800, 60)


def test_scaling_multiplies_every_rate_and_keeps_the_shape() -> None:
    profile = load_profile(READY / "diurnal-24h.toml")
    half = scaled(profile, 0.5)
    t = np.linspace(0, profile.duration_s, 301, endpoint=False)
    assert np.allclose(half.rate_at(t), 0.5 * profile.rate_at(t))
    assert half.peak_rps == pytest.approx(profile.peak_rps / 2)
    with pytest.raises(ValidationError, match="rate factor > 0 must hold"):
        scaled(profile, 0)
