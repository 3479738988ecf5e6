"""The oracle shared by the compat tests that compare workloads' summaries."""

from __future__ import annotations

import pytest

from tests.compat.oracle import tmpfs_summaries


@pytest.fixture(scope="module")
def oracle() -> dict[str, dict[str, object]]:
    """Every workload's summary on one kernel tmpfs."""
    return tmpfs_summaries()
