"""What a run used and how (manifest.json): inputs with hashes, grid, objective, simulation
settings, capacity, versions and the command line."""

from __future__ import annotations

import hashlib
import platform
from collections.abc import Sequence
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tuner.tune.run import folder_name

if TYPE_CHECKING:
    from tuner.tune.pipeline import Tuning


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def versions() -> dict[str, str]:
    """Versions of tuner, Python and the libraries that shape the numbers."""
    from tuner import __version__

    out = {"tuner": __version__, "python": platform.python_version()}
    for dist in ("numpy", "pandas", "matplotlib", "boto3"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = "not installed"
    return out


def manifest(
    tuning: Tuning,
    out: Path,
    *,
    profile_paths: Sequence[Path | None],
    capacity_path: Path | None = None,
    grid_path: Path | None = None,
    command: str = "",
    endpoint: str | None = None,
    variant: str | None = None,
    current_note: str = "",
    created: datetime | None = None,
) -> dict[str, Any]:
    """What the run used and how: inputs with hashes, grid, objective, versions, command line."""
    created = created or datetime.now(UTC).replace(microsecond=0)
    objective, settings = tuning.objective, tuning.settings
    return {
        "run_id": out.name,
        "created": created.isoformat().replace("+00:00", "Z"),
        "command": command,
        "out": str(out),
        "profiles": [
            {
                "name": p.name,
                "path": str(path) if path else None,
                "sha256": _sha256(path) if path else "",
                "duration_s": p.duration_s,
                "folder": folder_name(p.name),
            }
            for p, path in zip(tuning.profiles, profile_paths, strict=True)
        ],
        "capacity": {
            "path": str(capacity_path) if capacity_path else "default",
            "sha256": _sha256(capacity_path) if capacity_path else "",
            **tuning.capacity.to_dict(),
        },
        "grid": {
            "path": str(grid_path) if grid_path else None,
            "sha256": _sha256(grid_path) if grid_path else "",
            "candidates": len(tuning.policies),
            "min_capacities_used": list(tuning.min_capacities),
            "max_capacities_used": list(tuning.max_capacities),
            **tuning.grid.to_dict(),
            "step_companions": tuning.companions.to_dict() if tuning.companions else None,
        },
        "objective": {
            "slo_p99_ms": objective.slo_p99_ms,
            "max_error_rate": objective.max_error_rate,
            "max_slo_violation": objective.max_slo_violation,
            "margin": objective.margin,
            **(
                {
                    "slo_ttft_p99_ms": objective.slo_ttft_p99_ms,
                    "slo_itl_p99_ms": objective.slo_itl_p99_ms,
                }
                if objective.slo_ttft_p99_ms is not None
                else {}
            ),
        },
        "simulation": {
            "seeds": list(settings.seeds),
            "boot_s": settings.boot_s,
            "metric_lag_s": settings.metric_lag_s,
            "boot_jitter_s": settings.boot_jitter_s,
            "timeline_seed": settings.seeds[0],
            "monthly_cost": "mean billed instances over the profile x 730 h x "
            "hourly_usd; mean over profiles",
        },
        "scheduled_floors": None
        if tuning.rhythm is None
        else {
            "busy_window": tuning.rhythm.description,
            "daily_autocorrelation": round(tuning.rhythm.daily_autocorrelation, 4),
            "weekly_autocorrelation": round(tuning.rhythm.weekly_autocorrelation, 4),
        },
        "endpoint": endpoint,
        "variant": variant if endpoint else None,
        "current_policy": tuning.current.to_dict() if tuning.current else None,
        "current_policy_note": current_note or None,
        "versions": versions(),
    }
