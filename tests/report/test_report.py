"""The comparison report: parsed HTML, Markdown, re-rendering, trials, and a headless browser."""

from __future__ import annotations

import base64
import json
import os
import shutil
import signal
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pandas as pd
import pytest

from tuner.cli import main
from tuner.policy.policy import ScalingPolicy

# A name with every character HTML treats specially: it must come out escaped, never raw.
NASTY = "spike <b>&\"q'</b>"


class Page(HTMLParser):
    """What a test needs from the page: images, links, scripts, cells and element texts by id."""

    def __init__(self, text: str) -> None:
        super().__init__(convert_charrefs=True)
        self.images: list[dict[str, str | None]] = []
        self.external: list[str] = []
        self.tags: list[str] = []
        self.cells: list[str] = []
        self.by_id: dict[str, str] = {}
        self._open: list[list] = []  # [id, tag, depth, text parts] of elements being read
        self._in_cell = False
        self._cell: list[str] = []
        self.feed(text)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        self.tags.append(tag)
        if tag == "img":
            self.images.append(a)
        for key in ("src", "href"):
            value = a.get(key) or ""
            if value and not value.startswith("data:"):
                self.external.append(f"{tag} {key}={value}")
        for item in self._open:
            if item[1] == tag:
                item[2] += 1
        if a.get("id") and tag != "img":
            self._open.append([a["id"], tag, 1, []])
        if tag == "td":
            self._in_cell, self._cell = True, []

    def handle_endtag(self, tag: str) -> None:
        if tag == "td":
            self.cells.append("".join(self._cell).strip())
            self._in_cell = False
        for item in list(self._open):
            if item[1] == tag:
                item[2] -= 1
                if item[2] == 0:
                    self.by_id[item[0]] = "".join(item[3])
                    self._open.remove(item)

    def handle_data(self, data: str) -> None:
        for item in self._open:
            item[3].append(data)
        if self._in_cell:
            self._cell.append(data)


def _write_profiles(folder: Path) -> list[Path]:
    steady = folder / "steady.toml"
    steady.write_text('name = "steady"\n[[segment]]\nhold = "40m"\nrps = 30\n')
    spike = folder / "spike.toml"
    spike.write_text(
        f'name = {json.dumps(NASTY)}\n[[segment]]\nhold = "10m"\nrps = 20\n'
        '[[segment]]\nramp = "2m"\nto_rps = 90\n[[segment]]\nhold = "15m"\nrps = 90\n'
        '[[segment]]\nhold = "15m"\nrps = 20\n'
    )
    return [steady, spike]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("report")
    steady, spike = _write_profiles(folder)
    grid = folder / "grid.toml"
    grid.write_text(
        "target_fractions = [0.4, 0.6, 0.8]\nscale_out_cooldowns_s = [60, 300]\n"
        "scale_in_cooldowns_s = [300, 900]\n"
    )
    out = folder / "run"
    code = main(
        [
            "tune",
            "--profile",
            str(steady),
            "--profile",
            str(spike),
            "--grid",
            str(grid),
            "--slo-p99-ms",
            "400",
            "--max-error-rate",
            "0.01",
            "--seeds",
            "2",
            "--out",
            str(out),
        ]
    )
    assert code == 0
    return out


def _page(run_dir: Path) -> Page:
    return Page((run_dir / "report.html").read_text(encoding="utf-8"))


def test_every_image_is_embedded_and_nothing_is_fetched(run_dir: Path) -> None:
    page = _page(run_dir)
    # Per profile: timeline, cost against SLO violation, heatmap.
    assert len(page.images) == 2 * 3
    for img in page.images:
        src = str(img["src"])
        assert src.startswith("data:image/png;base64,")
        assert base64.b64decode(src.split(",", 1)[1])[:8] == b"\x89PNG\r\n\x1a\n"
        assert img["alt"]
    assert page.external == []
    assert "script" not in page.tags and "link" not in page.tags


def test_every_candidate_appears_with_its_role(run_dir: Path) -> None:
    candidates = pd.read_csv(run_dir / "candidates.csv")
    # 82 minutes of demand at 20 rps/instance: p10 20 rps -> Min 1, median 30 rps -> Min 2,
    # peak 90 rps -> Min 5; Max = ceil(90 x 1.5 / 20) = 7. 3 targets x 2 x 2 cooldowns x 3 Mins,
    # plus AWS's rule of thumb (target 20 x 60 x 0.5 = 600, not in the grid).
    assert len(candidates) == 3 * 2 * 2 * 3 + 1
    assert sorted(set(candidates["min_capacity"])) == [1, 2, 5]
    assert set(candidates["max_capacity"]) == {7}
    page = _page(run_dir)
    for label in candidates["candidate"]:
        assert label in page.cells
    assert set(candidates["role"]) == {"recommended", "rule-of-thumb", "candidate"}
    rule = candidates[candidates["role"] == "rule-of-thumb"].iloc[0]
    assert rule["candidate"] == "t600-min1-max7-out300-in300"
    html = (run_dir / "report.html").read_text()
    assert "AWS rule of thumb" in html and "★" in html


def test_recommended_policy_shown_equals_the_file(run_dir: Path) -> None:
    page = _page(run_dir)
    shown = json.loads(page.by_id["recommended-policy"])
    assert shown == json.loads((run_dir / "recommended.policy.json").read_text())
    policy = ScalingPolicy.load(run_dir / "recommended.policy.json")
    rank1 = pd.read_csv(run_dir / "candidates.csv").iloc[0]
    assert policy.label == rank1["candidate"]
    recommendation = json.loads((run_dir / "recommendation.json").read_text())
    assert recommendation["label"] == policy.label
    # The values table and the apply snippets carry the same numbers.
    cells = page.cells
    i = cells.index("TargetValue")
    assert cells[i + 1].startswith(f"{policy.target_value:g} ")
    assert cells[cells.index("MinCapacity") + 1] == str(policy.min_capacity)
    section = page.by_id["recommendation"]
    assert f'"TargetValue": {policy.target_value}' in section
    assert "aws application-autoscaling put-scaling-policy" in section
    assert "AWS::ApplicationAutoScaling::ScalingPolicy" in section
    assert 'resource "aws_appautoscaling_policy"' in section


def test_text_from_inputs_is_escaped(run_dir: Path, tmp_path: Path) -> None:
    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy)
    manifest = json.loads((copy / "manifest.json").read_text())
    manifest["endpoint"] = "<img src=x onerror=alert(1)>"
    (copy / "manifest.json").write_text(json.dumps(manifest))
    assert main(["report", str(copy)]) == 0
    html = (copy / "report.html").read_text()
    assert NASTY not in html and "<img src=x" not in html
    assert "spike &lt;b&gt;&amp;&quot;q&#x27;&lt;/b&gt;" in html
    assert "&lt;img src=x onerror=alert(1)&gt;" in html
    page = Page(html)
    assert page.external == []
    assert len(page.images) == 6
    # Markdown renders inline HTML, so names are entities there too, outside code blocks.
    md = (copy / "report.md").read_text()
    prose = "".join(md.split("```")[::2])
    assert NASTY not in prose and "<img src=x" not in prose
    assert "spike &lt;b&gt;&amp;\"q'&lt;/b&gt;" in md


def test_report_command_reproduces_the_same_files(
    run_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy)
    (copy / "report.html").unlink()
    (copy / "report.md").unlink()
    assert main(["report", str(copy)]) == 0
    assert "report.html" in capsys.readouterr().out
    assert (copy / "report.html").read_bytes() == (run_dir / "report.html").read_bytes()
    assert (copy / "report.md").read_bytes() == (run_dir / "report.md").read_bytes()


def test_markdown_leads_with_the_recommendation(run_dir: Path) -> None:
    md = (run_dir / "report.md").read_text()
    label = json.loads((run_dir / "recommendation.json").read_text())["label"]
    assert md.startswith(f"# Scaling policy recommendation: {label}")
    assert (
        md.index("## Why this policy") < md.index("## How to apply it") < md.index("## Candidates")
    )
    assert "```sh\naws application-autoscaling register-scalable-target" in md
    assert f"tuner apply {run_dir}/recommended.policy.json --endpoint ENDPOINT_NAME" in md
    assert "| Version numpy |" in md and "| Version matplotlib |" in md
    header = next(line for line in md.splitlines() if line.startswith("| Candidate |"))
    assert "Monthly cost" in header and "Pareto" in header


def test_trials_are_plotted_against_the_simulation(run_dir: Path, tmp_path: Path) -> None:
    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy)
    label = json.loads((copy / "recommendation.json").read_text())["label"]
    sim = pd.read_csv(copy / "timelines" / "steady" / f"{label}.csv")
    # A trial that ran one instance more than simulated, with higher latency, and 7 errors.
    measured = pd.DataFrame(
        {
            "t_s": sim["t_s"],
            "instances_in_service": sim["instances_in_service"] + 1,
            "desired_capacity": sim["desired_capacity"] + 1,
            "invocations": sim["invocations"],
            "errors": [7] + [0] * (len(sim) - 1),
            "p99_latency_ms": sim["p99_latency_ms"] * 2,
        }
    )
    trial = copy / "trials" / f"{label}__steady"
    trial.mkdir(parents=True)
    measured.to_csv(trial / "timeline.csv", index=False)
    # CloudWatch counted 450 requests more than the trial sent: flagged (issue 12).
    summary = {"profile": "steady", "candidate": label, "sent": 1000}
    summary |= {"cloudwatch_invocations": 1450.0, "invocations_mismatch": 0.45}
    summary["traffic_warning"] = "foreign traffic or lost requests"
    (trial / "summary.json").write_text(json.dumps(summary))
    assert main(["report", str(copy)]) == 0
    page = _page(copy)
    assert len(page.images) == 6 + 1
    assert "Live trials: measured against simulated" in page.by_id["trials"]
    n_sim = sim["instances_in_service"].mean()
    assert f"{n_sim + 1:.2f} / {n_sim:.2f}" in page.cells
    assert f"7 / {sim['errors'].sum():,.0f}" in page.cells
    assert "1,450 / 1,000 (45.0% apart: foreign traffic or lost requests)" in page.cells
    md = (copy / "report.md").read_text()
    assert "1,450 / 1,000 (45.0% apart: foreign traffic or lost requests)" in md


def test_report_on_a_folder_that_is_not_a_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["report", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "manifest.json: cannot read" in err and "is this a run directory?" in err


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
needs_chromium = pytest.mark.skipif(
    CHROMIUM is None,
    reason="Debian's chromium is not installed (apt-get install chromium; .ci/run installs it)",
)


def _browse(page: Path, tmp_path: Path) -> tuple[Path, list[str]]:
    """Screenshot a page in headless Chromium; return the PNG and every console message."""
    shot = tmp_path / "shot.png"
    cmd = [
        str(CHROMIUM),
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--disable-quic",
        f"--user-data-dir={tmp_path / 'chrome'}",
        f"--screenshot={shot}",
        "--window-size=1280,2000",
        "--enable-logging=stderr",
        "--v=0",
        page.resolve().as_uri(),
    ]
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
    )
    try:
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    # Chromium logs every console message, uncaught exception and CSP violation as CONSOLE.
    return shot, [line for line in err.splitlines() if ":CONSOLE" in line]


@needs_chromium
def test_page_renders_in_headless_chromium_without_errors(run_dir: Path, tmp_path: Path) -> None:
    from matplotlib import image

    shot, console = _browse(run_dir / "report.html", tmp_path)
    assert console == []
    pixels = image.imread(shot)[..., :3]
    assert pixels.shape[:2] == (2000, 1280)
    ink = (pixels < 0.9).any(axis=2).mean()
    assert ink > 0.05, f"only {ink:.1%} of the screenshot is not white"
    # The recommendation box is drawn in its green border colour (#009E73).
    green = (abs(pixels - [0, 158 / 255, 115 / 255]) < 0.08).all(axis=2).sum()
    assert green > 500


@needs_chromium
def test_browser_check_catches_a_broken_page(tmp_path: Path) -> None:
    bad = tmp_path / "bad.html"
    bad.write_text(
        "<!DOCTYPE html><html><body><h1>x</h1><script>undefinedFunction()</script></body></html>"
    )
    _, console = _browse(bad, tmp_path)
    assert any("Uncaught ReferenceError" in line for line in console)


def test_long_timelines_are_drawn_in_buckets_that_keep_the_peaks() -> None:
    from tuner.report.plots import MAX_POINTS, _bucket_s, _thin

    n = 20_160  # 14 days of one-minute periods
    df = pd.DataFrame(
        {
            "t_s": [60 * k for k in range(n)],
            "demand_rps": [10.0] * n,
            "instances_in_service": [1] * n,
            "desired_capacity": [1] * n,
            "p99_latency_ms": [80.0] * n,
        }
    )
    df.loc[5000, ["instances_in_service", "p99_latency_ms"]] = [7, 60_000.0]
    bucket_s = _bucket_s(df)
    assert bucket_s == 14 * 60  # ceil(20160 / 1500) = 14 periods per bucket
    thin = _thin(df, bucket_s)
    assert len(thin) == n // 14 <= MAX_POINTS
    assert thin["instances_in_service"].max() == 7 and thin["p99_latency_ms"].max() == 60_000
    assert thin["demand_rps"].mean() == pytest.approx(10.0)
    assert _bucket_s(df.head(MAX_POINTS)) == 0
