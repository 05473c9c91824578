"""The token-aware capacity file: the example loads, round-trips, and bad fields are one line."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tuner.errors import CapacityError
from tuner.model.llm_capacity import LlmCapacity, is_llm_capacity

EXAMPLE = Path(__file__).parents[2] / "examples" / "llm-capacity.json"


def test_example_file_loads_and_round_trips(tmp_path):
    cap = LlmCapacity.load(EXAMPLE)
    assert cap == LlmCapacity.default()
    assert (cap.instance_type, cap.copy_load_s, cap.instance_boot_s) == ("ml.g6.2xlarge", 258, 300)
    assert is_llm_capacity(EXAMPLE)
    back = LlmCapacity.load(cap.save(tmp_path / "c.json"))
    assert back == cap and back.to_dict() == json.loads(EXAMPLE.read_text())


def test_curves_are_linear_between_points_and_flat_beyond():
    cap = LlmCapacity.default()
    p50, p99 = cap.ttft_ms_at(np.array([0.0, 1.0, 2.5, 6.0, 8.0, 20.0]))
    assert p50.tolist() == [200, 200, 275, 525, 700, 700]
    assert p99.tolist() == [300, 300, 450, 950, 1300, 1300]
    assert cap.itl_ms_at(np.array([6.0]))[1].tolist() == [85.0]
    assert (cap.ttft_p99_at_max_ms, cap.itl_p99_at_max_ms) == (1300.0, 95.0)


def test_other_token_counts_scale_ttft_and_the_duration():
    cap = LlmCapacity.default().with_tokens(1024, 128)
    assert cap.ttft_ms_at(np.array([1.0]))[0].tolist() == [400.0]
    assert cap.duration_s_at(np.array([1.0])).tolist() == pytest.approx([0.4 + 127 * 0.055])
    same = LlmCapacity.default()
    assert same.with_tokens(None, None) is same and same.with_tokens(512, 256) is same


def test_instances_within_managed_instance_scaling():
    cap = LlmCapacity(
        copies_per_instance=3,
        min_instances=1,
        max_instances=2,
        ttft=LlmCapacity.default().ttft,
        itl=LlmCapacity.default().itl,
    )
    assert cap.instances_for(np.array([0, 1, 3, 4, 6, 9])).tolist() == [1, 1, 1, 2, 2, 2]
    assert cap.max_copies == 6


@pytest.mark.parametrize(
    "change, message",
    [
        ({"kind": "rps"}, "kind must be 'llm' for an LLM capacity, got 'rps'"),
        ({"copy_load_s": -1}, "copy_load_s >= 0 must hold, got -1"),
        ({"copies_per_instance": 1.5}, "copies_per_instance must be a whole number, got 1.5"),
        ({"max_concurrency_per_copy": 0}, "max_concurrency_per_copy > 0 must hold, got 0"),
        ({"output_tokens": "many"}, "output_tokens must be a number, got 'many'"),
        ({"timeout_ms": 1e9}, "timeout_ms <= 3.6e+06 (an hour) must hold, got 1e+09"),
        ({"ttft_ms": []}, "ttft_ms must be a non-empty list of {concurrency, p50, p99}"),
        (
            {"itl_ms": [{"concurrency": 1, "p50": 30, "p99": 20}]},
            "itl_ms[0]: p50 <= p99 must hold, got 30 > 20",
        ),
        (
            {
                "ttft_ms": [
                    {"concurrency": 2, "p50": 1, "p99": 2},
                    {"concurrency": 2, "p50": 1, "p99": 2},
                ]
            },
            "ttft_ms[1].concurrency must increase along the curve, got 2 after 2",
        ),
        ({"ttft_ms": [{"concurrency": 1, "p50": 1}]}, "ttft_ms[0].p99 is required"),
        ({"max_instances": 0}, "max_instances > 0 must hold, got 0"),
        ({"min_instances": 3, "max_instances": 2}, "min_instances <= max_instances must hold"),
        ({"boot_s": 3}, "unknown key 'boot_s'"),
    ],
)
def test_bad_fields_are_one_clear_line(tmp_path, change, message):
    data = {**json.loads(EXAMPLE.read_text()), **change}
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(data))
    with pytest.raises(CapacityError) as e:
        LlmCapacity.load(path)
    text = str(e.value)
    assert text.startswith(f"{path}: ") and message in text and "\n" not in text


def test_missing_field_is_named(tmp_path):
    data = json.loads(EXAMPLE.read_text())
    del data["copy_load_s"]
    with pytest.raises(CapacityError, match="copy_load_s is required in an LLM capacity file"):
        LlmCapacity.from_dict(data)
