"""A REMAP's INVALs queued before the remap is applied (winstep), in process.

With ``SHMFS_WINFAST_EARLY`` on (the default), the C engine queues a populating
REMAP's batch to its writer thread as soon as the INVAL messages are built, and
seals it (the STOREs with their data, the reply) once the page table and the page
cache are changed; the writer writes the INVALs meanwhile and waits for the seal.
These twins prove that this changes nothing the kernel receives: the same long
random sequence as tests/windows/test_winfast_twin.py, checked against the Python
path's bytes (notifications in order, then the reply) and state after every
operation, with the early queueing on (``1``: adaptive, it backs off after the
writer slept for a seal), always with the writer never spinning (``2``: it sleeps
for every seal it reaches, the condition-variable path), and off (``0``).
"""

from __future__ import annotations

import numpy as np
import pytest

from mount.server import winfast
from tests.windows.test_winfast_twin import NONBLOCK, P4, PAGES, POPULATE, Twin, _apply

pytestmark = pytest.mark.skipif(not winfast.available(),
                                reason="the C extension is not built (scripts/bootstrap.sh)")

@pytest.fixture(autouse=True, scope="module", params=["1", "0"], ids=["lean", "nolean"])
def winlean(request: pytest.FixtureRequest):
    """Every twin here with the engine's slot reads and cached array exports on (the
    default) and off (``SHMFS_WINLEAN=0``, winlean): the same bytes and state either
    way.  Module-scoped so that hypothesis' examples share it."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SHMFS_WINLEAN", request.param)
        yield request.param


def _sequence(seed: int, n: int) -> list[tuple]:
    """Remaps (mostly populating, 1-3 pages), window stores and launders, reads."""
    rng = np.random.default_rng(seed)
    ops: list[tuple] = []
    for _ in range(n):
        r = rng.random()
        page = int(rng.choice(PAGES))
        if r < 0.6:
            ops.append(("remap", page, int(rng.integers(0, 46)),
                        POPULATE if rng.random() < 0.85 else NONBLOCK,
                        int(rng.choice([1, 1, 1, 2, 3])) * P4, 0, 0, False))
        elif r < 0.75:
            ops.append(("read", page))
        elif r < 0.88:
            ops.append(("writeback", page, int(rng.integers(0, 256))))
        else:
            ops.append(("launder", page, int(rng.integers(0, 256))))
    return ops


@pytest.mark.parametrize("early", ["1", "2", "0"])
def test_early_invals_change_no_byte(monkeypatch: pytest.MonkeyPatch, early: str) -> None:
    """Every REMAP's messages and every piece of state as the Python path's; with the
    switch on, the INVAL-carrying batches went the early way (and with "2" the writer
    slept for seals), with it off none did."""
    monkeypatch.setenv("SHMFS_WINFAST_EARLY", early)
    a, b = Twin(native=True), Twin(native=False)
    native = 0
    try:
        for op in _sequence(7, 500):
            ra, rb = _apply(a, op), _apply(b, op)
            if op[0] in ("remap", "launder"):
                native += ra[0]
                assert ra[1] == rb[1], op
            else:
                a.fs.drain_events()
                b.fs.drain_events()
                assert ra == rb, op
            assert a.state() == b.state(), op
        st = a.engine.statistics()
    finally:
        a.close()
        b.close()
    assert native > 150, native
    ea = st["early"]
    assert ea["enabled"] == int(early), ea
    assert st["write_errors"] == 0, st
    if early == "0":
        assert ea["batches"] == 0 and ea["spins"] == 0, ea
    elif early == "1":
        # adaptive: after a sleep for a seal it queues the next 256 REMAPs whole, so
        # how many went early depends on timing; the first INVAL-carrying one did
        assert ea["batches"] >= 1, ea
    else:
        # "2": always, and never spinning; a populating remap over a cached page
        # carries an INVAL: most of them here
        assert ea["batches"] > 50, ea
        assert ea["batches"] <= st["remaps"], (ea, st["remaps"])
        # no spin: the writer sleeps unless the reader sealed between its unlock and
        # re-lock of the mutex (then no sleep), so sleeps <= spins
        assert ea["sleeps"] <= ea["spins"] and ea["backoffs"] == 0, ea
