"""Fixtures for the window tests: one live shmfs per module, a fresh directory per test."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.mounts import shmfs_mount
from tests.windows.helpers import dir_for_test


@pytest.fixture(scope="module")
def wmount() -> Iterator[Path]:
    """A size-limited shmfs (statfs then reports used blocks) shared by a module's tests."""
    with shmfs_mount("size=256m") as mnt:
        yield mnt


@pytest.fixture
def wdir(wmount: Path, request: pytest.FixtureRequest) -> Path:
    """A directory of its own on the module's mount for one test."""
    return dir_for_test(wmount, request.node.name)
