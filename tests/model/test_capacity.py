"""The capacity file and the per-period serving model, against hand calculations."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tuner.errors import CapacityError
from tuner.model.capacity import Capacity, LatencyPoint, serve_period, slow_share

DESIGN_EXAMPLE = {
    "instance_type": "ml.m5.xlarge",
    "hourly_usd": 0.23,
    "boot_s": 300,
    "max_rps_per_instance": 20.0,
    "timeout_ms": 60000,
    "latency_ms": [{"rps": 5, "p50": 40, "p99": 80}, {"rps": 20, "p50": 60, "p99": 150}],
}


def test_design_example_loads_saves_and_is_the_default(tmp_path):
    path = tmp_path / "capacity.json"
    path.write_text(json.dumps(DESIGN_EXAMPLE))
    cap = Capacity.load(path)
    assert cap == Capacity.default()
    assert cap.latency == (LatencyPoint(5, 40, 80), LatencyPoint(20, 60, 150))
    out = cap.save(tmp_path / "again.json")
    assert json.loads(out.read_text()) == json.loads(json.dumps(DESIGN_EXAMPLE)) | {
        "boot_s": 300.0,
        "timeout_ms": 60000.0,
    }
    assert Capacity.load(out) == cap


def test_only_latency_is_required():
    cap = Capacity.from_dict({"latency_ms": [{"rps": 10, "p50": 30, "p99": 90}]})
    assert (cap.hourly_usd, cap.boot_s, cap.max_rps_per_instance) == (0.23, 300, 20.0)


@pytest.mark.parametrize(
    "change, message",
    [
        ({"colour": "red"}, "unknown key 'colour'"),
        ({"hourly_usd": -1}, "hourly_usd >= 0 must hold, got -1"),
        ({"boot_s": "300"}, "boot_s must be a number"),
        ({"max_rps_per_instance": 0}, "max_rps_per_instance > 0 must hold, got 0"),
        ({"timeout_ms": float("nan")}, "timeout_ms > 0 must hold"),
        ({"latency_ms": []}, "at least one point"),
        ({"latency_ms": [{"rps": 5, "p50": 40}]}, r"latency_ms\[0\].p99 is required"),
        ({"latency_ms": [{"rps": 5, "p50": 90, "p99": 80}]}, "p50 <= p99 must hold, got 90 > 80"),
        (
            {"latency_ms": [{"rps": 5, "p50": 40, "p99": 80}, {"rps": 5, "p50": 50, "p99": 90}]},
            r"latency_ms\[1\].rps must increase",
        ),
        ({"latency_ms": [{"rps": 5, "p50": 40, "p99": 80, "p90": 70}]}, "unknown key 'p90'"),
    ],
    ids=lambda v: v if isinstance(v, str) else None,
)
def test_bad_capacity_files_name_the_file_field_and_rule(tmp_path, change, message):
    path = tmp_path / "cap.json"
    path.write_text(json.dumps(DESIGN_EXAMPLE | change))
    with pytest.raises(CapacityError, match=message) as info:
        Capacity.load(path)
    assert str(info.value).startswith(str(path))


def test_unreadable_and_malformed_files(tmp_path):
    with pytest.raises(CapacityError, match="cannot read capacity file"):
        Capacity.load(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{")
    with pytest.raises(CapacityError, match="malformed JSON at line 1"):
        Capacity.load(bad)


def test_latency_is_interpolated_and_flat_beyond_the_ends():
    cap = Capacity.default()
    p50, p99 = cap.latency_ms_at(np.array([0.0, 5.0, 12.5, 20.0, 200.0]))
    assert p50.tolist() == [40, 40, 50, 60, 60]
    assert p99.tolist() == [80, 80, 115, 150, 150]
    assert cap.p99_at_max_ms == 150


def test_serving_queues_then_fails_past_the_timeout():
    cap = Capacity.default()  # 20 rps each, 60-s timeout
    # 2 instances for 60 s serve 2,400; the queue holds 2 x 20 x 60 = 2,400.
    out = serve_period(
        cap, np.array([1200.0, 3000.0, 9000.0]), np.array([2, 2, 2]), np.array([0.0, 0.0, 0.0]), 60
    )
    assert out.served.tolist() == [1200, 2400, 2400]
    assert out.queue_end.tolist() == [0, 600, 2400]
    assert out.failed.tolist() == [0, 0, 4200]
    # 10 rps each: the curve's 46.67 / 103.3 ms; a 600-request queue at 40 rps waits 15 s.
    assert out.p50_ms[0] == pytest.approx(40 + 20 * 5 / 15)
    assert out.p99_ms[0] == pytest.approx(80 + 70 * 5 / 15)
    assert out.p50_ms[1] == pytest.approx(60 + 7500)
    assert out.p99_ms[1] == pytest.approx(150 + 15000)
    assert out.p99_ms[2] == 60000  # nobody waits longer than the timeout
    # in flight per instance: 10 rps x 46.67 ms; then 20 x 60 ms + the queue over 2 instances
    assert out.concurrency_per_instance[0] == pytest.approx(10 * (40 + 20 * 5 / 15) / 1000)
    assert out.concurrency_per_instance[1] == pytest.approx(20 * 0.06 + 300)


def test_serving_drains_a_carried_queue_and_fails_everything_without_instances():
    cap = Capacity.default()
    out = serve_period(cap, np.array([600.0, 50.0]), np.array([1, 0]), np.array([300.0, 0.0]), 60)
    assert out.served.tolist() == [900, 0]
    assert out.queue_end.tolist() == [0, 0]
    assert out.failed.tolist() == [0, 50]
    assert np.isnan(out.p99_ms[1])
    # 900 served = 15 rps: p50 = 40 + 20 x 10/15; the carried 300 wait on average 150 / 20 rps
    assert out.p50_ms[0] == pytest.approx(40 + 20 * 10 / 15 + 7500)


def test_slow_share_is_one_percent_at_the_p99_and_half_at_the_p50():
    share = slow_share(np.array([40.0, 40.0, 40.0, 50.0]), np.array([80.0, 80.0, 80.0, 50.0]), 80.0)
    assert share[0] == pytest.approx(0.01, rel=1e-4)
    assert slow_share(np.array([40.0]), np.array([80.0]), 40.0)[0] == pytest.approx(0.5)
    assert share[3] == 0.0  # a step at 50 ms < 80
    assert slow_share(np.array([90.0]), np.array([90.0]), 80.0)[0] == 1.0
