"""tuner report: re-render a run directory's report from its saved files."""

from __future__ import annotations

import argparse
from typing import Any

EPILOG = """\
examples:
  tuner report reports/launch
  tuner report reports/tune-20260101-120000

Reads manifest.json, candidates.csv, results.csv, recommendation.json, recommended.policy.json,
timelines/ and trials/ (nothing is simulated again) and writes report.html (self-contained:
images embedded, opens from disk) and report.md. Run it after live trials have added trials/ to
see measured against simulated, or after editing the saved data by hand.
"""


def register(sub: Any) -> argparse.ArgumentParser:
    p: argparse.ArgumentParser = sub.add_parser(
        "report",
        help="re-render report.html and report.md of a run directory",
        description="Render the comparison report of a `tuner tune` run directory from its "
        "saved CSV and JSON files.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("run_dir", metavar="RUN_DIR", help="a run directory written by `tuner tune`")
    return p


def run(args: argparse.Namespace) -> int:
    from tuner.report.render import write_report

    html_path, md_path = write_report(args.run_dir)
    print(f"report: {html_path}")
    print(f"        {md_path}")
    return 0
