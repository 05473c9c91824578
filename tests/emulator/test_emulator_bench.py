"""Emulator benchmarks (`make bench`): invocations per second served, memory under 10x overload.

The emulator runs as `tuner emulate` in its own process, the open-loop driver
(`python -m tuner.emulator.client`) in another, as a user would run them. Figures are printed;
they depend on the machine and on what else runs on it (a shared 2-core box is noisy).
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.benchmark

FAST = {  # fast service times: 2 ms median, so the server, not the model, is the limit
    "instance_type": "ml.c5.xlarge",
    "boot_s": 60,
    "max_rps_per_instance": 1000.0,
    "timeout_ms": 2000,
    "latency_ms": [{"rps": 1, "p50": 2, "p99": 5}],
}
OVERLOAD = {  # one instance sustaining 100 rps; a 10x overload is 1,000 rps
    "instance_type": "ml.m5.large",
    "boot_s": 300,
    "max_rps_per_instance": 100.0,
    "timeout_ms": 2000,
    "latency_ms": [{"rps": 10, "p50": 10, "p99": 30}, {"rps": 100, "p50": 20, "p99": 60}],
}


def _emulate(tmp_path: Path, capacity: dict[str, Any], env: dict[str, str], *args: str) -> Any:
    path = tmp_path / "capacity.json"
    path.write_text(json.dumps(capacity))
    proc = subprocess.Popen(
        [sys.executable, "-m", "tuner", "emulate", "--port", "0", "--capacity", str(path),
         "--progress-s", "0", *args],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env,
    )  # fmt: skip
    assert proc.stdout is not None
    url = ""
    for line in proc.stdout:
        if line.startswith("AWS_ENDPOINT_URL="):
            url = line.strip().split("=", 1)[1]
        if line.startswith("# stop with"):
            return proc, url
    proc.kill()
    raise AssertionError("tuner emulate did not start")


def _drive(
    url: str, rate: float, seconds: float, env: dict[str, str], processes: int = 1
) -> dict[str, Any]:
    """Open-loop load from ``processes`` driver processes sharing ``rate``; merged summary."""
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tuner.emulator.client",
                url,
                "--endpoint",
                "demo-endpoint",
                "--rate",
                str(rate / processes),
                "--seconds",
                str(seconds),
            ],
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )  # fmt: skip
        for _ in range(processes)
    ]
    outs = [json.loads(p.communicate(timeout=seconds + 180)[0]) for p in procs]
    statuses: dict[str, int] = {}
    for o in outs:
        for k, v in o["statuses"].items():
            statuses[k] = statuses.get(k, 0) + v
    return {
        "sent": sum(o["sent"] for o in outs),
        "wall_s": max(o["wall_s"] for o in outs),
        "statuses": statuses,
        "p50_ms": max((o["p50_ms"] or 0) for o in outs),
        "p99_ms": max((o["p99_ms"] or 0) for o in outs),
    }


def _cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _rss_mb(pid: int, key: str = "VmRSS") -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _stop(proc: Any) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def _children_cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def test_bench_invocations_per_second(tmp_path: Path, subprocess_env: dict[str, str]) -> None:
    proc, url = _emulate(tmp_path, FAST, subprocess_env, "--instances", "8")
    try:
        _drive(url, 200, 2, subprocess_env)  # warm up
        print("\nemulator throughput (open loop, fast service times, 8 instances x 1000 rps,")
        print("two driver processes; p50/p99 are the worse of the two):")
        print(" offered/s  served/s   ok%   p50 ms   p99 ms  emulator CPU%  us/inv  driver CPU%")
        best, per_inv = 0.0, []
        for rate in (1000, 2000, 3000, 4000, 5000, 6000):
            cpu0, kids0, t0 = _cpu_s(proc.pid), _children_cpu_s(), time.monotonic()
            r = _drive(url, rate, 5, subprocess_env, processes=2)
            wall = time.monotonic() - t0
            cpu_s = _cpu_s(proc.pid) - cpu0
            driver = (_children_cpu_s() - kids0) / wall
            ok = r["statuses"].get("200", 0)
            served = ok / max(r["wall_s"], 1e-9)
            ok_share = ok / r["sent"]
            us = 1e6 * cpu_s / max(1, r["sent"])
            per_inv.append(us)
            print(
                f" {rate:9.0f} {served:9.0f} {100 * ok_share:5.1f} {r['p50_ms'] or 0:8.1f} "
                f"{r['p99_ms'] or 0:8.1f} {100 * cpu_s / wall:13.0f} {us:7.0f} {100 * driver:11.0f}"
            )
            if ok_share >= 0.99 and (r["p99_ms"] or 0) <= 250:  # sustained, not just queued
                best = max(best, served)
            assert sum(r["statuses"].values()) == r["sent"]
        print(
            f"sustained (>= 99% success, p99 <= 250 ms): {best:.0f} invocations/s (goal >= 2,000/s)"
        )
        print(f"ratio to goal: {best / 2000:.2f}")
        us = sorted(per_inv)[len(per_inv) // 2]
        print(
            f"emulator CPU per invocation (median): {us:.0f} us, i.e. about {1e6 / us:.0f}/s "
            "on one free core; the driver is Python too and shares the machine"
        )
    finally:
        _stop(proc)


def test_bench_memory_under_10x_overload(tmp_path: Path, subprocess_env: dict[str, str]) -> None:
    proc, url = _emulate(tmp_path, OVERLOAD, subprocess_env, "--instances", "1")
    samples: list[tuple[float, float]] = []
    stop = threading.Event()

    def sample() -> None:
        t0 = time.monotonic()
        while not stop.wait(0.25):
            samples.append((time.monotonic() - t0, _rss_mb(proc.pid)))

    try:
        base = _drive(url, 80, 5, subprocess_env)  # 0.8x: all served
        rss_base = _rss_mb(proc.pid)
        sampler = threading.Thread(target=sample)
        sampler.start()
        over = _drive(url, 1000, 20, subprocess_env)  # 10x for 20 s
        stop.set()
        sampler.join()
        peak = _rss_mb(proc.pid, "VmHWM")
        half = len(samples) // 2
        first = max(m for _, m in samples[:half])
        second = max(m for _, m in samples[half:])
        print("\nemulator memory under a 10x overload (1 instance of 100 rps, 1,000 rps offered):")
        print(f"  at 0.8x load: statuses {base['statuses']}, RSS {rss_base:.1f} MB")
        print(f"  at 10x load for 20 s: statuses {over['statuses']}")
        print(f"  RSS max first half {first:.1f} MB, second half {second:.1f} MB (flat if equal)")
        print(f"  peak RSS (VmHWM) {peak:.1f} MB; growth over baseline {peak - rss_base:.1f} MB")
        assert over["statuses"].get("429", 0) > 0  # the bounded queue refused the excess
    finally:
        stop.set()
        _stop(proc)
