"""Fixtures for the window tests: one live shmfs per module, a fresh directory per test."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.mounts import shmfs_mount


@pytest.fixture(scope="module")
def wmount() -> Iterator[Path]:
    """A size-limited shmfs (statfs then reports used blocks) shared by a module's tests."""
    with shmfs_mount("size=256m") as mnt:
        yield mnt


@pytest.fixture
def wdir(wmount: Path, request: pytest.FixtureRequest) -> Path:
    """A directory of its own on the module's mount for one test."""
    d = wmount / re.sub(r"[^A-Za-z0-9_]+", "_", request.node.name)[:100]
    d.mkdir()
    return d
