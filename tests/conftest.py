"""Fixtures shared by every test: a fresh shmfs and a kernel tmpfs oracle."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.mounts import shmfs_mount, tmpfs_mount


@pytest.fixture
def shmfs(request: pytest.FixtureRequest) -> Iterator[Path]:
    """A fresh shmfs for one test; options via @pytest.mark.parametrize indirect or marker."""
    marker = request.node.get_closest_marker("shmfs_options")
    options = marker.args[0] if marker else ""
    with shmfs_mount(options) as mnt:
        yield mnt


@pytest.fixture
def tmpfs(request: pytest.FixtureRequest) -> Iterator[Path]:
    """A fresh kernel tmpfs, mounted with the same options as the shmfs of the test."""
    marker = request.node.get_closest_marker("shmfs_options")
    options = marker.args[0] if marker else ""
    with tmpfs_mount(options) as mnt:
        yield mnt
