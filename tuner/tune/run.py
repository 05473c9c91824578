"""A run directory in memory: what ``tuner tune`` decided and the evidence, read back from disk.

Layout of ``reports/<run-id>/`` (this module owns it: ``write_run`` and ``trial_folder``; the
report files are rendered from it by :mod:`tuner.report.render`)::

    manifest.json              inputs (paths + sha256), grid, seeds, objective, simulation
                               settings, capacity, versions, command line, created time
    candidates.csv             one row per candidate: role, rank, policy fields, aggregates over
                               profiles x seeds, pareto, meets_objective (see recommend.score)
    results.csv                one row per candidate x profile x seed (simulation summaries)
    recommendation.json        label, meets_objective, alternatives, reasons (sentences)
    recommended.policy.json    the policy file, ready for ``tuner apply``
    validation.json            held-out validation and stress of a history (or a note why none)
    timelines/<profile>/<candidate>.csv   simulated timelines of the plotted candidates
    trials/<candidate>__<profile>/timeline.csv   measured live by tuner.live.trial: t_s (profile
                                   seconds), instances_in_service, desired_capacity, invocations,
                                   errors, p99_latency_ms
    trials/<candidate>__<profile>/summary.json   trial facts; ``candidate`` and ``profile`` say
                                   what ran (else the folder name and the first profile)
    report.html, report.md     rendered from the files above (``tuner report RUN_DIR``)
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from tuner.errors import ValidationError
from tuner.policy.policy import ScalingPolicy
from tuner.tune.recommend import Recommendation

MANIFEST = "manifest.json"
CANDIDATES = "candidates.csv"
RESULTS = "results.csv"
RECOMMENDATION = "recommendation.json"
RECOMMENDED_POLICY = "recommended.policy.json"
TIMELINES = "timelines"
TRIALS = "trials"
VALIDATION = "validation.json"


def folder_name(name: str) -> str:
    """A profile or candidate name made safe as one path component."""
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._")
    return safe or "_"


def trial_folder(run_dir: Path, candidate: str, profile: str) -> Path:
    """``trials/<candidate>__<profile>/``: where one live trial's files go."""
    return Path(run_dir) / TRIALS / f"{candidate}__{folder_name(profile)}"


@dataclass(frozen=True)
class Trial:
    """One live trial: measured timeline and its summary."""

    label: str
    profile: str
    timeline: pd.DataFrame
    summary: dict[str, Any]


@dataclass(frozen=True, kw_only=True)
class Run:
    """Everything a report shows, as saved in a run directory."""

    path: Path
    manifest: dict[str, Any]
    candidates: pd.DataFrame
    results: pd.DataFrame
    recommendation: Recommendation
    recommended: ScalingPolicy
    timelines: dict[str, dict[str, pd.DataFrame]] = field(default_factory=dict)
    """profile name -> candidate label -> simulated timeline."""
    trials: dict[str, Trial] = field(default_factory=dict)
    """trials/ folder name -> trial (one per candidate and profile)."""
    validation: dict[str, Any] = field(default_factory=dict)
    """Held-out validation and stress (validation.json; empty for runs made before it)."""

    @property
    def profiles(self) -> list[str]:
        return [p["name"] for p in self.manifest.get("profiles", [])]

    @classmethod
    def load(cls, path: str | Path) -> Run:
        """Read a run directory; a missing or malformed file is an error naming it."""
        path = Path(path)
        if not path.is_dir():
            raise ValidationError(f"RUN_DIR must be a run directory, got {path} (not a folder)")
        manifest = _json(path / MANIFEST)
        candidates = _csv(path / CANDIDATES)
        results = _csv(path / RESULTS)
        recommendation = Recommendation.from_dict(_json(path / RECOMMENDATION))
        recommended = ScalingPolicy.load(path / RECOMMENDED_POLICY)
        timelines: dict[str, dict[str, pd.DataFrame]] = {}
        for profile in manifest.get("profiles", []):
            folder = path / TIMELINES / profile.get("folder", folder_name(profile["name"]))
            if folder.is_dir():
                timelines[profile["name"]] = {f.stem: _csv(f) for f in sorted(folder.glob("*.csv"))}
        trials: dict[str, Trial] = {}
        first = manifest["profiles"][0]["name"] if manifest.get("profiles") else ""
        for folder in sorted((path / TRIALS).glob("*/")):
            if (folder / "timeline.csv").is_file():
                summary = (
                    _json(folder / "summary.json") if (folder / "summary.json").is_file() else {}
                )
                label = str(summary.get("candidate", folder.name.split("__")[0]))
                trials[folder.name] = Trial(
                    label,
                    str(summary.get("profile", first)),
                    _csv(folder / "timeline.csv"),
                    summary,
                )
        validation = _json(path / VALIDATION) if (path / VALIDATION).is_file() else {}
        return cls(
            path=path,
            manifest=manifest,
            candidates=candidates,
            results=results,
            recommendation=recommendation,
            recommended=recommended,
            timelines=timelines,
            trials=trials,
            validation=validation,
        )


def _json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except OSError as e:
        raise ValidationError(
            f"{path}: cannot read ({e.strerror}); is this a run directory?"
        ) from e
    except json.JSONDecodeError as e:
        raise ValidationError(f"{path}: malformed JSON at line {e.lineno}: {e.msg}") from e


def _csv(path: Path) -> pd.DataFrame:
    try:
        return pd.read_csv(path)
    except FileNotFoundError as e:
        raise ValidationError(f"{path}: missing; is this a run directory?") from e
    except (OSError, ValueError) as e:
        raise ValidationError(f"{path}: cannot read CSV: {e}") from e


def write_run(run: Run) -> Path:
    """Save the run's data files (not the report) under ``run.path``."""
    path = run.path
    path.mkdir(parents=True, exist_ok=True)
    (path / MANIFEST).write_text(json.dumps(run.manifest, indent=2) + "\n", encoding="utf-8")
    run.candidates.to_csv(path / CANDIDATES, index=False)
    run.results.to_csv(path / RESULTS, index=False)
    (path / RECOMMENDATION).write_text(
        json.dumps(run.recommendation.to_dict(), indent=2) + "\n", encoding="utf-8"
    )
    run.recommended.save(path / RECOMMENDED_POLICY)
    if run.validation:
        (path / VALIDATION).write_text(
            json.dumps(run.validation, indent=2) + "\n", encoding="utf-8"
        )
    folders = {
        p["name"]: p.get("folder", folder_name(p["name"])) for p in run.manifest.get("profiles", [])
    }
    for profile, by_label in run.timelines.items():
        folder = path / TIMELINES / folders.get(profile, folder_name(profile))
        folder.mkdir(parents=True, exist_ok=True)
        for label, frame in by_label.items():
            frame.to_csv(folder / f"{folder_name(label)}.csv", index=False)
    return path
