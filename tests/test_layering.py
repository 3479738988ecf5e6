"""The layers import downward only (ARCHITECTURE.md): vmcore knows neither fsimpl
nor mount, and fsimpl never touches trio or the FUSE session."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

FORBIDDEN = {
    "vmcore": {"fsimpl", "mount", "trio"},
    "fsimpl": {"mount", "trio"},
}


def imported_roots(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    roots: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            roots.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            roots.add(node.module.split(".")[0])
    return roots


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_package_imports_only_downward(package: str) -> None:
    files = sorted((ROOT / package).rglob("*.py"))
    assert files, f"{package} has no modules"
    bad = {
        str(f.relative_to(ROOT)): sorted(imported_roots(f) & FORBIDDEN[package]) for f in files
    }
    bad = {k: v for k, v in bad.items() if v}
    assert not bad, f"upward imports: {bad}"


def test_checker_sees_an_upward_import(tmp_path: Path) -> None:
    f = tmp_path / "x.py"
    f.write_text("import trio\nfrom mount.server.session import Session\n")
    assert imported_roots(f) == {"trio", "mount"}


def test_fsimpl_does_not_open_dev_fuse() -> None:
    for f in (ROOT / "fsimpl").rglob("*.py"):
        assert "/dev/fuse" not in f.read_text(), f


#: inside mount/: which subpackages each may import (mount/__init__.py names them)
MOUNT_ALLOWED = {
    "wire": set(),
    "winapi": set(),
    "mounting": set(),
    "server": {"wire", "winapi", "mounting"},
    "cli": {"winapi", "mounting", "server"},
}


def mount_subpackages(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    subs: set[str] = set()
    for node in ast.walk(tree):
        names = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        for n in names:
            parts = n.split(".")
            if parts[0] == "mount" and len(parts) > 1 and parts[1] in MOUNT_ALLOWED:
                subs.add(parts[1])
    return subs


@pytest.mark.parametrize("sub", sorted(MOUNT_ALLOWED))
def test_mount_subpackages_import_only_what_they_need(sub: str) -> None:
    files = sorted((ROOT / "mount" / sub).rglob("*.py"))
    assert files, f"mount/{sub} has no modules"
    bad = {str(f.relative_to(ROOT)): sorted(mount_subpackages(f) - MOUNT_ALLOWED[sub] - {sub})
           for f in files}
    bad = {k: v for k, v in bad.items() if v}
    assert not bad, f"mount/{sub} reaches sideways: {bad}"


def test_winapi_needs_only_the_standard_library() -> None:
    # clients (C-like tools, the window scripts) import it without numpy, trio or fsimpl
    for f in (ROOT / "mount" / "winapi").rglob("*.py"):
        assert not imported_roots(f) & {"numpy", "trio", "fsimpl", "vmcore"}, f
