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
        # what the locustfile imports from the package, after Locust's gevent patch
        ("tuner.loadclient", ("tuner.emulator", "matplotlib", "locust", "gevent", "pandas")),
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


def _module_name(path: Path) -> str:
    return ".".join(path.relative_to(REPO).with_suffix("").parts)


def _imported_names(tree: ast.Module) -> dict[str, str]:
    """Names a module binds by ``from tuner... import`` (at any depth), to where they came from."""
    names: dict[str, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("tuner"):
            for alias in node.names:
                names[alias.asname or alias.name] = node.module
    return names


def _declared_all(tree: ast.Module) -> set[str]:
    for node in tree.body:
        if isinstance(node, ast.Assign | ast.AnnAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            if any(isinstance(t, ast.Name) and t.id == "__all__" for t in targets):
                value = node.value
                if isinstance(value, ast.List | ast.Tuple):
                    return {e.value for e in value.elts if isinstance(e, ast.Constant)}
    return set()


def _re_exports(paths: list[Path]) -> list[str]:
    """Names a plain module (not a package ``__init__``) passes on from another module: imported
    ``as`` the same name, listed in its ``__all__``, or imported from it by another module."""
    trees = {_module_name(p): ast.parse(p.read_text(encoding="utf-8")) for p in paths}
    plain = {m for m, p in zip(trees, paths, strict=True) if p.name != "__init__.py"}
    bound = {m: _imported_names(trees[m]) for m in plain}
    bad = []
    for module in sorted(plain):
        tree = trees[module]
        for node in tree.body:
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("tuner"):
                for alias in node.names:
                    if alias.asname == alias.name:
                        bad.append(f"{module}: re-exports {alias.name} from {node.module}")
        for name in sorted(_declared_all(tree) & set(bound[module])):
            bad.append(f"{module}: re-exports {name} from {bound[module][name]} in __all__")
    for module, tree in sorted(trees.items()):
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module in plain:
                for alias in node.names:
                    origin = bound[node.module].get(alias.name)
                    if origin is not None:
                        bad.append(
                            f"{module}: imports {alias.name} from {node.module}, "
                            f"whose home is {origin}"
                        )
    return bad


def _all_python_files() -> list[Path]:
    return sorted(
        [*PACKAGE.rglob("*.py"), *(REPO / "locustfiles").glob("*.py"), *REPO.glob("tests/**/*.py")]
    )


def test_no_plain_module_re_exports_a_name():
    """Each name is imported from the one module that defines it (or its package): the policy
    split once left Comparison, MetricType, ScalingSnapshot... importable from their old homes."""
    assert _re_exports(_all_python_files()) == []


def test_the_re_export_checker_can_fail(tmp_path: Path):
    """Three ways to pass a name on, each flagged; a package ``__init__`` may re-export."""
    home = PACKAGE / "policy" / "_layout_home.py"
    user = PACKAGE / "policy" / "_layout_user.py"
    home.write_text(
        "from tuner.policy.alarm import Comparison as Comparison\n"
        "from tuner.policy.tracking import MetricType\n"
        "from tuner.policy.resource import Resource\n"
        '__all__ = ["MetricType"]\n',
        encoding="utf-8",
    )
    user.write_text("from tuner.policy._layout_home import Resource\n", encoding="utf-8")
    try:
        found = _re_exports([home, user, PACKAGE / "policy" / "__init__.py"])
    finally:
        home.unlink()
        user.unlink()
    assert found == [
        "tuner.policy._layout_home: re-exports Comparison from tuner.policy.alarm",
        "tuner.policy._layout_home: re-exports MetricType from tuner.policy.tracking in __all__",
        "tuner.policy._layout_user: imports Resource from tuner.policy._layout_home, "
        "whose home is tuner.policy.resource",
    ]
