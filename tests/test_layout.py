"""The layout's promises: live code loads no emulator, plotting or Locust, and no module takes
another module's private names."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO

PACKAGE = REPO / "tuner"


@pytest.mark.parametrize(
    ("module", "forbidden"),
    [
        ("tuner.live", ("tuner.emulator", "matplotlib", "locust", "gevent")),
        ("tuner.live.trial", ("tuner.emulator", "matplotlib", "locust", "gevent")),
        ("tuner.live.calibration", ("tuner.emulator", "matplotlib", "locust", "gevent")),
        ("tuner.tune", ("tuner.emulator", "matplotlib", "locust", "boto3", "botocore")),
        ("tuner.model", ("tuner.emulator", "matplotlib", "locust", "boto3", "botocore")),
        ("tuner.policy", ("tuner.emulator", "matplotlib", "locust", "boto3", "botocore")),
        ("tuner.profiles", ("tuner.emulator", "matplotlib", "locust", "boto3", "botocore")),
        ("tuner.cli", ("tuner.emulator", "matplotlib", "locust", "boto3", "pandas")),
    ],
    ids=lambda v: v if isinstance(v, str) else "",
)
def test_importing_a_package_loads_only_what_it_needs(module: str, forbidden: tuple[str, ...]):
    code = (
        f"import sys, {module}\n"
        f"bad = sorted(m for m in sys.modules if m.split('.')[0] in {forbidden!r} "
        f"or any(m == f or m.startswith(f + '.') for f in {forbidden!r}))\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "", f"importing {module} loaded {out.stdout.strip()}"


def _private_imports(path: Path) -> list[str]:
    """``from tuner.x import _name`` (or ``tuner.x._mod``) where x is not this module's own."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    here = ".".join(path.relative_to(REPO).with_suffix("").parts)
    bad = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("tuner"):
            if node.module == here:
                continue
            private_module = any(part.startswith("_") for part in node.module.split("."))
            for alias in node.names:
                if alias.name.startswith("_") and alias.name != "__version__":
                    bad.append(f"{here}: from {node.module} import {alias.name}")
            if private_module and not node.module.startswith("tuner.commands._"):
                bad.append(f"{here}: from {node.module} import ...")
    return bad


def test_no_module_imports_another_modules_private_names():
    files = [*PACKAGE.rglob("*.py"), *(REPO / "locustfiles").glob("*.py")]
    assert len(files) > 50
    bad = [line for f in sorted(files) for line in _private_imports(f)]
    assert bad == []


def test_the_checker_finds_a_private_import(tmp_path: Path):
    """The AST check above can fail: it flags a private name taken from another module."""
    probe = PACKAGE / "profiles" / "_layout_probe.py"
    probe.write_text("from tuner.profiles.replay import _fmt\n", encoding="utf-8")
    try:
        assert _private_imports(probe) == [
            "tuner.profiles._layout_probe: from tuner.profiles.replay import _fmt"
        ]
    finally:
        probe.unlink()


def test_each_public_name_has_one_home():
    """A name re-exported by a package is defined in one of its modules, never imported twice
    from two packages' public surfaces (Grid, Resource, ScheduledAction had two homes)."""
    import importlib

    homes: dict[str, set[str]] = {}
    for package in ("policy", "profiles", "model", "tune", "live", "aws", "emulator"):
        mod = importlib.import_module(f"tuner.{package}")
        for name in getattr(mod, "__all__", []):
            obj = getattr(mod, name)
            origin = getattr(obj, "__module__", None)
            if isinstance(obj, type) or callable(obj):
                homes.setdefault(name, set()).add(str(origin))
    shared = {name: sorted(mods) for name, mods in homes.items() if len(mods) > 1}
    assert shared == {}
