"""Fixtures shared by every test: a fresh shmfs and a kernel tmpfs oracle."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.mounts import shmfs_mount, tmpfs_mount


def _options(request: pytest.FixtureRequest) -> str:
    """The -o options of @pytest.mark.shmfs_options("..."), for both sides."""
    marker = request.node.get_closest_marker("shmfs_options")
    return marker.args[0] if marker else ""


@pytest.fixture
def shmfs(request: pytest.FixtureRequest) -> Iterator[Path]:
    """A fresh shmfs for one test, with the test's shmfs_options marker."""
    with shmfs_mount(_options(request)) as mnt:
        yield mnt


@pytest.fixture
def tmpfs(request: pytest.FixtureRequest) -> Iterator[Path]:
    """A fresh kernel tmpfs, mounted with the same options as the shmfs of the test."""
    with tmpfs_mount(_options(request)) as mnt:
        yield mnt
