"""FUSE_IOCTLs and READ/WRITEs handed by the first reader's loop in C (native/hotloop.c)
to the window engine (native/winfast.c) inside the real Session: bursts of IOCTLs the
engine declines -- foreign commands (ENOTTY, answered by the loop itself once the
engine declined them), window commands on a file that is not a
window, malformed and truncated ones, garbage sizes -- between hot requests get
exactly one reply each, the same replies and the same statistics as with
``SHMFS_CLOOP_IOCTL=0`` (the oracle: every IOCTL goes back to Python as before), the
engine's decline counter counts each decline once (the C loop's offer, not again in
Python), and the daemon survives all of them.

The session runs in its own process over a SOCK_SEQPACKET socketpair
(tests/reliability/session_driver) as in tests/server/test_hotpath_loop.py; a burst
is sent whole before any reply is read, so the C loop finds the next request waiting.
That window REMAPs themselves are answered in the loop (a counter) and stay exact is
tests/windows/test_window_loop.py's, on a live mount."""

from __future__ import annotations

import errno as E
import os
import struct

import pytest

from mount.server import hotpath, winfast
from tests.reliability import wire as W

pytestmark = pytest.mark.skipif(not (hotpath.available() and winfast.available()),
                                reason="_hotpath or _winfast not built")

TCGETS = 0x5401
REMAP, MPROTECT, QUERY, REMAPV, INFO = 0x40205302, 0x40185303, 0xE0205305, 0xFFF0530A, 0x80305306
ROUNDS = 4


def ioctl_in(fh: int, cmd: int, data: bytes = b"", *, in_size: int | None = None,
             out_size: int = 0, flags: int = 0) -> bytes:
    """struct fuse_ioctl_in and its input data."""
    n = len(data) if in_size is None else in_size
    return struct.pack("<QIIQII", fh, flags, cmd, 0, n, out_size) + data


def rw_in(fh: int, off: int, size: int) -> bytes:
    return struct.pack("<QQIIQII", fh, off, size, 0, 0, os.O_RDWR, 0)


def _burst(ino: int, fh: int, base: int) -> list[tuple[int, bytes]]:
    """(unique, message): hot requests with IOCTLs of every declined kind between."""
    remap = struct.pack("<QQQII", 0, 4096, 3, 0, 0x8000)
    ioctls = [
        ioctl_in(fh, TCGETS, out_size=60),  # not shmfs's: ENOTTY
        ioctl_in(fh, REMAP, remap),  # a window command on a plain file
        ioctl_in(fh, REMAP, remap[:16], in_size=32),  # truncated: the codec's EINVAL
        ioctl_in(fh, REMAP + (8 << 16), remap + bytes(8)),  # wrong size in the command
        ioctl_in(fh + 77, REMAP, remap),  # a handle that does not exist
        ioctl_in(fh, MPROTECT, struct.pack("<QQII", 0, 4096, 1, 0)),
        ioctl_in(fh, QUERY, struct.pack("<QIIII", 0, 4, 0, 0, 0) + bytes(12), out_size=4096),
        ioctl_in(fh, REMAPV, struct.pack("<IIII", 600, 0, 0, 0), out_size=16),
        ioctl_in(fh, INFO, out_size=48),
        ioctl_in(fh, REMAP, remap, flags=1 << 4),  # FUSE_IOCTL_DIR on a file
    ]
    out: list[tuple[int, bytes]] = []
    u = base
    for i, body in enumerate(ioctls):
        data = bytes([(base + i) & 0xFF]) * 300
        off = ((base + i) * 300) % 30000
        out += [
            (u, W.request(W.WRITE, u, ino, rw_in(fh, off, len(data)) + data)),
            (u + 1, W.request(W.IOCTL, u + 1, ino, body)),
            (u + 2, W.request(W.READ, u + 2, ino, rw_in(fh, off, len(data)))),
            (u + 3, W.request(W.GETATTR, u + 3, ino, bytes(16))),
        ]
        u += 4
    # an IOCTL too short for its fuse_ioctl_in, one whose header lies about its length
    out.append((u, W.request(W.IOCTL, u, ino, bytes(8))))
    out.append((u + 1, W.request(W.IOCTL, u + 1, ino, ioctl_in(fh, TCGETS), length=200)))
    return out


def _run() -> tuple[dict[int, tuple[int, bytes]], dict]:
    """The bursts against a fresh session: every reply by unique (exactly one each)
    and the final statistics."""
    replies: dict[int, tuple[int, bytes]] = {}
    with W.served_session() as ch:
        ino, fh = ch.create(10)
        for r in range(ROUNDS):
            msgs = _burst(ino, fh, 1000 + r * 100)
            for _, m in msgs:
                ch.send(m)
            owed = {u for u, m in msgs if W.owed_reply(m)}
            got = ch.exchange(W.request(W.GETATTR, 999_999, 1, bytes(16)))
            got = [g for g in got if g.unique not in (999_999, 0)]
            assert sorted(g.unique for g in got) == sorted(owed), "lost or duplicated"
            for g in got:
                replies[g.unique] = (g.error, g.payload)
    return replies, ch.final_stats


def _comparable(replies: dict[int, tuple[int, bytes]]) -> dict[int, tuple[int, object]]:
    """GETATTR's attr (times) compared by length, everything else in full."""
    return {u: (err, len(p) if len(p) == 104 else p) for u, (err, p) in replies.items()}


def test_declined_ioctls_between_hot_requests_are_answered_once_as_before(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SHMFS_CLOOP", "1")
    monkeypatch.setenv("SHMFS_CLOOP_IOCTL", "1")
    c_replies, c_stats = _run()
    monkeypatch.setenv("SHMFS_CLOOP_IOCTL", "0")
    py_replies, py_stats = _run()
    assert _comparable(c_replies) == _comparable(py_replies)
    ioctl_errs = {err for u, (err, _) in c_replies.items() if u % 4 == 1 and u < 999_000}
    assert -E.ENOTTY in ioctl_errs and -E.EINVAL in ioctl_errs
    cs, ps = c_stats["session"], py_stats["session"]  # type: ignore[index]
    # the same requests counted per opcode (none handled twice, none skipped), the
    # same notifications (none), the same decline count in the engine: each IOCTL
    # offered once, by the C loop in the first run, by Python in the second
    assert {op: v["count"] for op, v in cs["requests"].items()} == {
        op: v["count"] for op, v in ps["requests"].items()}
    # the driver keys them by number; the three malformed ones a round are not counted
    assert cs["requests"][str(W.IOCTL)]["count"] == ROUNDS * 9
    assert cs["notifications"] == ps["notifications"]
    assert cs["winfast"]["declined"] == ps["winfast"]["declined"] == ROUNDS * 12
    assert cs["write_errors"] == 0 == ps["write_errors"]
    hp = cs["hotpath"]
    # the IOCTLs given back to Python, or answered ENOTTY by the loop (below)
    assert hp["cloop_returned"] + hp["cloop_enotty"] >= ROUNDS * 12
    assert hp["cloop_window"] == 0  # none of them was the engine's
    # foreign commands (TCGETS) the loop answers ENOTTY itself, counted in ops' errors
    # as Operations._failed counts them: the same error counts in both runs
    assert hp["cloop_enotty"] > 0 and ps["hotpath"]["cloop_enotty"] == 0
    assert c_stats["ops"]["errors"] == py_stats["ops"]["errors"]  # type: ignore[index]
    assert c_stats["ops"]["errors"]["ENOTTY"] >= ROUNDS  # type: ignore[index]
    assert hp["errors"] == 0 and hp["write_errors"] == 0
    assert ps["hotpath"]["cloop_window"] == 0


def test_a_request_returned_after_a_declined_window_offer_is_offered_again(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A small WRITE the loop offers the window engine (declined: a plain file) and then
    answers itself, followed in the same loop call by a WRITE too large for the loop
    (given back to Python): that second WRITE was never offered, so Python's _handle
    must offer it to ``_native_io`` -- the loop's "already declined" mark belongs to the
    request it was set for only (hotloop.c's ``offered``, reset per request)."""
    monkeypatch.setenv("SHMFS_CLOOP", "1")
    monkeypatch.setenv("SHMFS_CLOOP_IOCTL", "1")
    monkeypatch.setenv("SHMFS_DRIVER_COUNT", "_native_io")
    rounds = 6
    with W.served_session() as ch:
        ino, fh = ch.create(10)
        # an IOCTL makes the window engine (Session._native), so the loop offers it
        # READs and WRITEs from then on
        r = ch.call(W.IOCTL, 10, ino, ioctl_in(fh, TCGETS, out_size=60))
        assert r.error == -E.ENOTTY
        big = b"B" * (100 << 10)
        owed = set()
        for i in range(rounds):
            u = 100 + 2 * i
            ch.send(W.request(W.WRITE, u, ino, rw_in(fh, 0, 300) + b"s" * 300))
            ch.send(W.request(W.WRITE, u + 1, ino, rw_in(fh, 4096, len(big)) + big))
            owed |= {u, u + 1}
        got = ch.exchange(W.request(W.GETATTR, 999_999, 1, bytes(16)))
        got = [g for g in got if g.unique not in (999_999, 0)]
        assert sorted(g.unique for g in got) == sorted(owed)
        assert all(g.error == 0 for g in got)
        sizes = {g.unique: struct.unpack_from("<I", g.payload)[0] for g in got}
        assert all(sizes[100 + 2 * i + 1] == len(big) for i in range(rounds))
    st = ch.final_stats
    # every large WRITE reached Python's _native_io (the small ones may too, when the
    # loop was not running as they came: at least the large ones)
    assert st["calls"]["_native_io"] >= rounds, st["calls"]
    assert st["session"]["hotpath"]["cloop_returned"] >= rounds
