"""``Engine.spin(fd, ns)`` (native/hotloop.c): the readers' spin with the GIL released
(docs/decisions.md, "Clone readers stay up through mixed traffic and spin after each
request"). It says whether the fd became readable, reads nothing, and lets other
Python threads run while it spins -- which a spin in Python (select.poll's poll(0)
in a loop) does not do for the length of the spin.

No timing assertion: the spins are long (0.3 s) so that "another thread ran during
it" and "it came back with the fd readable" are about what happened, not how fast."""

from __future__ import annotations

import os
import threading

import pytest

from fsimpl import FsOptions, ShmFs
from mount.server import hotpath
from mount.server.ops import Operations, OpsConfig

pytestmark = pytest.mark.skipif(not hotpath.available(), reason="_hotpath not built")

LONG_NS = 300_000_000


@pytest.fixture
def engine() -> object:
    fs = ShmFs(FsOptions(size_bytes=64 << 12, nr_inodes=16, mode=0o1777))
    ops = Operations(fs, OpsConfig(generation=7))
    cfg = ops.config
    e = hotpath.engine(fs, cfg.attr_timeout, cfg.entry_timeout, ops.generation,
                       cfg.negative_timeout, ops._errors, cfg.keep_cache)
    assert e is not None
    return e


def test_spin_says_readable_and_reads_nothing(engine: object) -> None:
    r, w = os.pipe2(os.O_NONBLOCK)
    try:
        os.write(w, b"abc")
        assert engine.spin(r, LONG_NS) is True  # type: ignore[attr-defined]
        assert os.read(r, 10) == b"abc"  # still there: the spin only looked
    finally:
        os.close(r)
        os.close(w)


def test_spin_runs_out_on_an_empty_fd(engine: object) -> None:
    r, w = os.pipe2(os.O_NONBLOCK)
    try:
        assert engine.spin(r, 1_000_000) is False  # type: ignore[attr-defined]
        assert engine.spin(r, -5) is False  # type: ignore[attr-defined]  # one look
    finally:
        os.close(r)
        os.close(w)


def test_spin_releases_the_gil_and_sees_a_write_made_meanwhile(engine: object) -> None:
    """Another Python thread runs while the spin goes on: it writes to the pipe, and
    the spin returns True (readable) -- with the GIL held by the spin, the writer
    could not run until the spin had run out and returned False."""
    r, w = os.pipe2(os.O_NONBLOCK)
    started = threading.Event()

    def writer() -> None:
        started.wait()
        os.write(w, b"x")

    t = threading.Thread(target=writer)
    t.start()
    try:
        started.set()
        # the writer needs the GIL to return from wait() and call os.write
        assert engine.spin(r, 10 * LONG_NS) is True  # type: ignore[attr-defined]
    finally:
        t.join()
        os.close(r)
        os.close(w)


def test_spin_refuses_bad_arguments(engine: object) -> None:
    with pytest.raises(ValueError):
        engine.spin(-1, 10)  # type: ignore[attr-defined]
    with pytest.raises(TypeError):
        engine.spin(0)  # type: ignore[attr-defined]
