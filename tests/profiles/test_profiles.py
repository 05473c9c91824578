"""Traffic profiles: rates and counts against hand calculations, replay, validation."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.conftest import TRACES
from tuner.errors import ProfileError
from tuner.profiles.profile_file import load_profile, parse_profile
from tuner.profiles.replay import parse_duration

ROOT = Path(__file__).resolve().parents[2]
READY = ROOT / "locustfiles" / "profiles"


def _p(*segments, **top):
    return parse_profile({"name": "t", "segment": list(segments), **top})


def test_hold_ramp_counts_match_hand_integrals():
    p = _p({"hold": "2m", "rps": 10}, {"ramp": "1m", "to_rps": 70}, {"hold": "30s", "rps": 4})
    assert p.duration_s == 210
    # 600 + 600; the ramp 10 -> 70 over 60 s is 60 * 40 = 2400; the half minute 30 * 4 = 120.
    assert p.counts(60) == pytest.approx([600, 600, 2400, 120])
    assert p.counts(30) == pytest.approx([300, 300, 300, 300, 30 * 25, 30 * 55, 120])
    assert p.rate_at(np.array([-1, 0, 119.99, 150, 209.9, 210])) == pytest.approx(
        [0, 10, 10, 40, 4, 0]
    )
    assert p.total_requests == pytest.approx(3720)


def test_ramp_starts_from_previous_rate_unless_told():
    p = _p(
        {"hold": "1m", "rps": 30},
        {"ramp": "1m", "to_rps": 0},
        {"ramp": "1m", "from_rps": 6, "to_rps": 6},
    )
    assert p.counts(60) == pytest.approx([1800, 900, 360])


def test_spike_shape():
    p = _p(
        {
            "spike": "10m",
            "baseline_rps": 10,
            "peak_rps": 110,
            "at": "1m",
            "rise": "1m",
            "hold": "2m",
            "fall": "1m",
        }
    )
    assert p.rate_at(np.array([30, 90, 150, 200, 270, 330, 400])) == pytest.approx(
        [10, 10 + 100 * 0.5, 110, 110, 110 - 100 * 0.5, 10, 10]
    )
    # baseline 600/min; rise and fall average 60 rps; hold 110 rps.
    assert p.counts(60)[:6] == pytest.approx([600, 3600, 6600, 6600, 3600, 600])


def test_sine_is_diurnal_and_integrates_exactly():
    p = _p({"sine": "24h", "min_rps": 5, "max_rps": 65})
    assert p.rate_at(np.array([0.0, 6 * 3600, 12 * 3600])) == pytest.approx([5, 35, 65])
    assert p.total_requests == pytest.approx(35 * 86400)
    # Exact integral over the first quarter: 5*T/4 + 30*(T/4 - T/(2 pi)).
    q = 86400 / 4
    assert p.counts(q)[0] == pytest.approx(5 * q + 30 * (q - 86400 / (2 * np.pi)))
    assert p.peak_rps == pytest.approx(65, rel=1e-6)


def test_deterministic_arrivals_follow_integral_within_one_per_window():
    p = _p(
        {"hold": "1m", "rps": 7.3},
        {"ramp": "2m", "to_rps": 120},
        {"sine": "3m", "min_rps": 2, "max_rps": 50},
    )
    a = p.arrivals(0, p.duration_s)
    assert np.all(np.diff(a) > 0)
    for period in (60, 10, 7):
        edges = np.arange(0, p.duration_s + period, period)
        binned = np.histogram(a, bins=edges)[0]
        assert np.abs(binned - p.counts(period)).max() < 1
    # Windows stitch into the same schedule.
    cuts = [0, 0.37, 61, 100.5, 359.99, p.duration_s]
    parts = [p.arrivals(lo, hi) for lo, hi in zip(cuts, cuts[1:], strict=False)]
    assert np.array_equal(np.concatenate(parts), a)
    assert p.arrivals(-50, 0).size == 0 and p.arrivals(p.duration_s, 1e9).size == 0


def test_poisson_noise_is_seeded_and_consistent_with_counts():
    p = _p(
        {"hold": "10m", "rps": 50},
        {"sine": "20m", "min_rps": 5, "max_rps": 80},
        noise="poisson",
        seed=9,
    )
    a = p.arrivals(0, p.duration_s)
    assert np.array_equal(a, p.arrivals(0, p.duration_s, seed=9))
    assert not np.array_equal(a, p.arrivals(0, p.duration_s, seed=10))
    stitched = np.concatenate([p.arrivals(0, 123.4), p.arrivals(123.4, 900), p.arrivals(900, 1800)])
    assert np.array_equal(stitched, a)
    binned = np.histogram(a, bins=np.arange(0, 1860, 60))[0]
    assert np.array_equal(binned, p.counts(60))
    assert np.array_equal(p.counts(60, seed=3), p.counts(60, seed=3))
    exact = _p({"hold": "10m", "rps": 50}, {"sine": "20m", "min_rps": 5, "max_rps": 80}).counts(60)
    # Poisson: the total is within 4 sigma of the expectation, and minutes are not all exact.
    assert abs(a.size - exact.sum()) < 4 * np.sqrt(exact.sum())
    assert np.abs(binned - exact).max() >= 1
    assert p.counts(7).dtype == float and np.all(p.counts(7) == np.round(p.counts(7)))


def _write_csv(path: Path, rows: list[tuple[str, float]]) -> Path:
    path.write_text("timestamp,invocations\n" + "".join(f"{t},{c}\n" for t, c in rows))
    return path


def test_replay_spreads_counts_fills_gaps_and_scales(tmp_path):
    # 5-minute counts; 00:10 is missing; 00:20:20 is off the grid (belongs to 00:20).
    rows = [
        ("2025-01-01T00:00:00Z", 300),
        ("2025-01-01T00:05:00Z", 600),
        ("2025-01-01T00:15:00Z", 1200),
        ("2025-01-01T00:20:20Z", 300),
    ]
    _write_csv(tmp_path / "h.csv", rows)
    p = parse_profile({"name": "r", "segment": [{"replay": "h.csv"}]}, base_dir=tmp_path)
    assert p.duration_s == 25 * 60
    assert p.counts(300) == pytest.approx([300, 600, 900, 1200, 300])  # gap: the mean of 600, 1200
    assert p.rate_at(np.array([10.0, 299.0, 310.0])) == pytest.approx([1, 1, 2])
    z = parse_profile(
        {"name": "r", "segment": [{"replay": "h.csv", "gaps": "zero"}]}, base_dir=tmp_path
    )
    assert z.counts(300)[2] == 0
    fast = parse_profile(
        {"name": "r", "segment": [{"replay": "h.csv", "time_scale": 0.1, "rate_scale": 3}]},
        base_dir=tmp_path,
    )
    # time_scale shortens the time axis and keeps rates; rate_scale multiplies them.
    assert fast.duration_s == pytest.approx(150)
    assert fast.rate_at(np.array([10.0, 40.0])) == pytest.approx([3, 6])
    assert fast.counts(30) == pytest.approx([90, 180, 270, 360, 90])
    peak = parse_profile(
        {"name": "r", "segment": [{"replay": "h.csv", "peak_rps": 8}]}, base_dir=tmp_path
    )
    assert peak.peak_rps == pytest.approx(8)
    win = parse_profile(
        {
            "name": "r",
            "segment": [{"replay": "h.csv", "start": "2025-01-01T00:07:30Z", "limit": "10m"}],
        },
        base_dir=tmp_path,
    )
    assert win.duration_s == 600
    assert win.counts(150) == pytest.approx([300, 450, 450, 600])


def test_replay_of_a_real_trace_keeps_its_volume():
    p = load_profile(READY / "replay-sample.toml")
    assert p.duration_s == 90 * 60
    csv = np.loadtxt(READY / "sample-history.csv", delimiter=",", skiprows=1, usecols=1)
    # sample-history: 179 rows over 180 minutes, one gap interpolated; x2 rate, x0.5 time.
    gap = (csv[94] + csv[95]) / 2  # minute 95 is missing: the mean of minutes 94 and 96
    assert p.total_requests == pytest.approx(2 * 0.5 * (csv.sum() + gap), rel=1e-12)
    assert p.counts(30)[95] == pytest.approx(2 * 0.5 * gap)
    if not (TRACES / "nyc_taxi.csv").is_file():
        pytest.skip(f"{TRACES} is not there (../shared beside the checkout)")
    taxi = parse_profile(
        {"name": "taxi", "segment": [{"replay": str(TRACES / "nyc_taxi.csv"), "limit": "7d"}]}
    )
    assert taxi.duration_s == 7 * 86400
    first_week = np.loadtxt(
        TRACES / "nyc_taxi.csv", delimiter=",", skiprows=1, usecols=1, dtype=str
    )
    assert taxi.total_requests == pytest.approx(first_week[: 7 * 48].astype(float).sum())


@pytest.mark.parametrize(
    ("data", "needle"),
    [
        ({"name": "x", "segment": [{"hold": "1m", "rps": 1}], "colour": 1}, "unknown key 'colour'"),
        ({"segment": [{"hold": "1m", "rps": 1, "to_rps": 3}]}, "segment[1]: unknown key 'to_rps'"),
        ({"segment": [{"hold": "1m", "rps": -2}]}, "segment[1].rps: rate must be >= 0, got -2"),
        ({"segment": [{"hold": "0s", "rps": 1}]}, "segment[1].hold: duration must be > 0"),
        ({"segment": [{"hold": "ten minutes", "rps": 1}]}, "segment[1].hold: must be a duration"),
        ({"segment": [{"hold": "1m", "rps": "fast"}]}, "segment[1].rps: must be a number"),
        ({"segment": [{"wait": "1m"}]}, "segment[1]: needs one of the keys"),
        ({"segment": []}, "at least one [[segment]]"),
        ({"segment": [{"hold": "1m", "rps": 1}], "noise": "gauss"}, "noise must be"),
        (
            {"segment": [{"spike": "2m", "peak_rps": 5, "rise": "1m", "hold": "1m", "fall": "1m"}]},
            "at + rise + hold + fall <= spike must hold, got 3m > 2m",
        ),
        ({"segment": [{"sine": "1h", "min_rps": 9, "max_rps": 2}]}, "min_rps <= max_rps"),
        ({"segment": [{"replay": "nope.csv"}]}, "nope.csv: replay CSV not found"),
        (
            {"segment": [{"replay": "h.csv", "time_scale": 0}]},
            "segment[1].time_scale: must be a number > 0",
        ),
    ],
    ids=[
        "top-key",
        "seg-key",
        "negative",
        "zero-dur",
        "bad-dur",
        "bad-rate",
        "no-kind",
        "no-segments",
        "noise",
        "spike-fit",
        "sine-order",
        "csv-missing",
        "time-scale",
    ],
)
def test_validation_names_field_and_rule(tmp_path, data, needle):
    _write_csv(tmp_path / "h.csv", [("2025-01-01T00:00:00Z", 1), ("2025-01-01T00:01:00Z", 2)])
    with pytest.raises(ProfileError) as e:
        parse_profile(data, base_dir=tmp_path, source="p.toml")
    assert needle in str(e.value)
    assert str(e.value).startswith(("p.toml", str(tmp_path)))
    assert "\n" not in str(e.value)


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        ("when,count\n1,2\n", "needs columns timestamp,invocations"),
        ("timestamp,invocations\n2025-01-01T00:00:00Z,4\nyesterday,5\n", "line 3: timestamp"),
        (
            "timestamp,invocations\n2025-01-01T00:00:00Z,4\n2025-01-01T00:01:00Z,-5\n",
            "line 3: invocations must be a number >= 0",
        ),
        ("timestamp,invocations\n", "no rows"),
        ("timestamp,invocations\n2025-01-01T00:00:00Z,4\n", "needs 2 rows"),
    ],
    ids=["columns", "timestamp", "negative", "empty", "one-row"],
)
def test_malformed_replay_csv(tmp_path, body, needle):
    (tmp_path / "h.csv").write_text(body)
    with pytest.raises(ProfileError, match="h.csv") as e:
        parse_profile({"segment": [{"replay": "h.csv"}]}, base_dir=tmp_path)
    assert needle in str(e.value)


def test_load_profile_reports_file_problems(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("name = 'x'\n[[segment]\nhold=1\n")
    with pytest.raises(ProfileError, match="bad.toml: not valid TOML"):
        load_profile(bad)
    with pytest.raises(ProfileError, match="missing.toml: cannot read"):
        load_profile(tmp_path / "missing.toml")
    ok = tmp_path / "unnamed.toml"
    ok.write_text('[[segment]]\nhold = "1m"\nrps = 2\n')
    assert load_profile(ok).name == "unnamed"


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("90s", 90),
        ("15m", 900),
        ("2h", 7200),
        ("1h30m", 5400),
        ("1.5d", 129600),
        (45, 45),
        ("250ms", 0.25),
    ],
)
def test_parse_duration(text, seconds):
    assert parse_duration(text, "x") == pytest.approx(seconds)


def test_ready_profiles_load_and_have_their_shape():
    names = {p.stem for p in READY.glob("*.toml")}
    assert {
        "steady",
        "step-up",
        "flash-spike",
        "launch-day",
        "diurnal-24h",
        "replay-sample",
    } <= names
    launch = load_profile(READY / "launch-day.toml")
    per_min = launch.counts(60, seed=None)
    # Baseline 10 rps, plateau 120 rps, second wave peaks at 200 rps (Poisson around them).
    assert abs(per_min[5] - 600) < 5 * np.sqrt(600)
    assert abs(per_min[30] - 7200) < 5 * np.sqrt(7200)
    assert launch.peak_rps == pytest.approx(200)
    assert load_profile(READY / "diurnal-24h.toml").duration_s == 86400
    assert load_profile(READY / "step-up.toml").counts(600) == pytest.approx(
        [6000, 12000, 24000, 48000]
    )
