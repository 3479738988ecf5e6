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


def _allowed_errors(request: pytest.FixtureRequest) -> str | None:
    """The regular expression of @pytest.mark.daemon_errors("..."): daemon log
    records it matches do not fail the test (tests/support/mounts.py)."""
    marker = request.node.get_closest_marker("daemon_errors")
    return marker.args[0] if marker else None


@pytest.fixture
def shmfs(request: pytest.FixtureRequest) -> Iterator[Path]:
    """A fresh shmfs for one test, with the test's shmfs_options marker; the test
    fails at teardown if the daemon logged an error it did not declare."""
    with shmfs_mount(_options(request), allow_errors=_allowed_errors(request)) as mnt:
        yield mnt


@pytest.fixture
def tmpfs(request: pytest.FixtureRequest) -> Iterator[Path]:
    """A fresh kernel tmpfs, mounted with the same options as the shmfs of the test."""
    with tmpfs_mount(_options(request)) as mnt:
        yield mnt
