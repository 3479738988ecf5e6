"""Fixtures for the remap_file_pages preload tests: the library and the C programs
of tests/rfp built with cc (as the kernel's selftests are built), into a
world-readable directory so that an unprivileged user can run them too."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
PROGRAMS = ("rows", "bufcache", "threads", "secure")


@pytest.fixture(scope="session")
def rfp_bin() -> Iterator[Path]:
    """A directory holding the built test programs (rows, bufcache, threads, secure);
    the preload library is (re)built in place by preload/build.sh first."""
    if shutil.which(os.environ.get("CC", "cc")) is None:
        pytest.fail("no C compiler: the tests/rfp programs and the preload library need cc")
    subprocess.run([str(ROOT / "preload" / "build.sh"),
                    str(Path(sys.prefix) / "lib" / "libshmfs_rfp.so")], check=True)
    out = Path(tempfile.mkdtemp(prefix="shmfs-rfp-bin-"))
    out.chmod(0o755)
    try:
        for name in PROGRAMS:
            subprocess.run([os.environ.get("CC", "cc"), "-O2", "-Wall", "-Wextra", "-Werror",
                            "-Wno-unused-result", "-o", str(out / name), str(HERE / f"{name}.c"),
                            "-lpthread"], check=True)
        yield out
    finally:
        shutil.rmtree(out, ignore_errors=True)


def shmfs_cmd() -> list[str]:
    """The `shmfs` command of this checkout (the console script of the venv)."""
    return [str(Path(sys.prefix) / "bin" / "shmfs")]
