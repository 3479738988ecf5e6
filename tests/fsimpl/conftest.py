"""Fixtures for fsimpl unit tests: a fresh ShmFs on a real vmcore arena, with a
controllable clock so timestamp rules can be asserted without sleeping."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from fsimpl import Ctx, FsOptions, ShmFs
from fsimpl.backing import Backing
from vmcore.arena import Arena

ROOT = Ctx(uid=0, gid=0, pid=1)
USER = Ctx(uid=1000, gid=1000, pid=2)


class Clock:
    """A settable ns clock; tick() advances it so every change gets a new time."""

    def __init__(self) -> None:
        self.now = 1_700_000_000 * 10**9

    def __call__(self) -> int:
        return self.now

    def tick(self, ns: int = 1000) -> int:
        self.now += ns
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def arena() -> Iterator[Arena]:
    a = Arena(segment_bytes=4 << 20, name="fsimpl-test")
    yield a
    a.close()


@pytest.fixture
def make_fs(arena: Arena, clock: Clock) -> Callable[..., ShmFs]:
    def make(**opts: int) -> ShmFs:
        o = FsOptions(**opts)
        return ShmFs(o, backing=Backing(0, arena=arena), clock=clock)

    return make


@pytest.fixture
def fs(make_fs: Callable[..., ShmFs]) -> ShmFs:
    return make_fs()
