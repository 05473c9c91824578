"""What the end-to-end emulator tests share: a load test that starts on a minute boundary of the
local AWS's clock."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from tuner.emulator import LocalAws
from tuner.live.loadgen import LoadTestConfig, LoadTestResult, run_loadtest
from tuner.profiles.profile import Profile


def load_from_next_minute(
    aws: LocalAws,
    profile: Profile,
    env: dict[str, str],
    out_dir: Path,
    lead_real_s: float,
    **options: Any,
) -> tuple[float, LoadTestResult]:
    """Play ``profile`` against the local AWS's endpoint with profile time 0 on the first of its
    minute boundaries at least ``lead_real_s`` real seconds away (time for Locust to start). Its
    60-s datapoints start at its clock's epoch, the simulator's minutes at profile time 0: so
    both judge the same minutes. Returns that start (virtual epoch s) and the load test."""
    clock, speed = aws.clock, aws.config.speed
    start_v = clock.v0 + 60 * math.ceil((clock.now() - clock.v0 + lead_real_s * speed) / 60)
    result = run_loadtest(
        LoadTestConfig(
            profile=profile,
            endpoint=aws.config.endpoint,
            out_dir=out_dir,
            host=aws.url,
            speed=speed,
            env=env,
            start_at_epoch_s=clock.to_real(start_v),
            **options,
        ),
        progress=None,
    )
    return start_v, result
