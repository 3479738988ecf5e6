"""Fixtures shared by the pager tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from vmcore import Arena


@pytest.fixture
def arena() -> Iterator[Arena]:
    """A small arena (1 MiB segments, so tests cross segment boundaries early)."""
    a = Arena(segment_bytes=1 << 20)
    yield a
    a.close()
