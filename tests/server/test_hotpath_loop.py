"""The first reader's loop in C (native/hotloop.c, ``Engine.serve``) inside the real
Session: bursts of hot requests with requests it must give back to Python in
their middle (other opcodes, requests the engine declines, malformed messages)
get exactly one reply each, the same replies as the Python loop gives
(``SHMFS_CLOOP=0``, the oracle), and the loop is really taken (its counters).

The session runs in its own process over a SOCK_SEQPACKET socketpair
(tests/reliability/session_driver), exactly as it serves /dev/fuse; a burst is
sent whole before any reply is read, so the C loop finds the next request
waiting and serves runs of them without returning to Python."""

from __future__ import annotations

import errno as E
import os
import struct

import pytest

from mount.server import hotpath
from tests.reliability import wire as W

pytestmark = pytest.mark.skipif(not hotpath.available(), reason="_hotpath not built")

STATFS = 17
BURST = 30  # requests in flight at once (well inside the socket buffers)
ROUNDS = 6


def rw_in(fh: int, off: int, size: int) -> bytes:
    return struct.pack("<QQIIQII", fh, off, size, 0, 0, os.O_RDWR, 0)


def _burst(ino: int, fh: int, base: int) -> list[tuple[int, bytes, str]]:
    """(unique, message, kind): hot requests with the others in between."""
    out: list[tuple[int, bytes, str]] = []
    u = base
    for i in range(BURST // 6):
        data = bytes([(base + i) & 0xFF]) * 700
        off = ((base + i) * 700) % 60000
        out += [
            (u, W.request(W.WRITE, u, ino, rw_in(fh, off, len(data)) + data), "hot"),
            (u + 1, W.request(W.GETATTR, u + 1, ino, bytes(16)), "hot"),
            (u + 2, W.request(STATFS, u + 2, 1), "python"),  # an opcode the loop returns
            (u + 3, W.request(W.READ, u + 3, ino, rw_in(fh + 99, 0, 10)), "declined"),
            (u + 4, W.request(W.GETATTR, u + 4, ino, bytes(4)), "declined"),  # short body
            (u + 5, W.request(W.READ, u + 5, ino, rw_in(fh, off, len(data))), "hot"),
        ]
        u += 6
    # malformed: a header whose length is not the message's; a message shorter than
    # a header (no unique to answer: no reply owed)
    out.append((u, W.request(W.GETATTR, u, ino, bytes(16), length=80), "garbage"))
    out.append((0, W.request(W.GETATTR, u + 1, ino, bytes(16))[:12], "garbage"))
    return out


def _run() -> tuple[dict[int, tuple[int, bytes]], dict, int]:
    """The bursts against a fresh session: every reply by unique (exactly one each),
    the final statistics, the number of hot requests sent."""
    replies: dict[int, tuple[int, bytes]] = {}
    hot = 0
    with W.served_session() as ch:
        c = ch.call(W.CREATE, 10, 1, struct.pack("<IIII", os.O_RDWR, 0o100644, 0, 0) + b"f\0")
        assert c.error == 0
        ino = struct.unpack_from("<Q", c.payload)[0]
        fh = struct.unpack_from("<Q", c.payload, 128)[0]
        for r in range(ROUNDS):
            msgs = _burst(ino, fh, 1000 + r * 100)
            for _, m, _ in msgs:
                ch.send(m)
            owed = {u for u, m, _ in msgs if W.owed_reply(m)}
            hot += sum(kind == "hot" for _, _, kind in msgs)
            # the probe (a GETATTR of the root, through the loop too) ends the burst
            got = ch.exchange(W.request(W.GETATTR, 999_999, 1, bytes(16)))
            got = [g for g in got if g.unique != 999_999]
            assert sorted(g.unique for g in got) == sorted(owed), "lost or duplicated"
            for g in got:
                replies[g.unique] = (g.error, g.payload)
    return replies, ch.final_stats, hot


def _comparable(replies: dict[int, tuple[int, bytes]]) -> dict[int, tuple[int, object]]:
    """Replies with their clock-dependent parts left out: GETATTR's attr (times) is
    compared by length; WRITE's, READ's, STATFS's and errors' bytes in full."""
    out: dict[int, tuple[int, object]] = {}
    for u, (err, payload) in replies.items():
        out[u] = (err, len(payload) if len(payload) == 104 else payload)
    return out


def test_the_c_loop_answers_bursts_exactly_as_the_python_loop(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SHMFS_CLOOP", "1")
    c_replies, c_stats, hot = _run()
    monkeypatch.setenv("SHMFS_CLOOP", "0")
    py_replies, py_stats, _ = _run()
    assert _comparable(c_replies) == _comparable(py_replies)
    # what the bursts must have produced, in both
    for u, (err, payload) in c_replies.items():
        if u % 100 % 6 == 2 and u < 999_000:  # STATFS: Python's
            assert err == 0 and len(payload) == 80
    assert any(err == -E.EBADF for err, _ in c_replies.values())
    assert any(err == -E.EINVAL for err, _ in c_replies.values())
    cl = c_stats["session"]["hotpath"]  # type: ignore[index]
    assert cl["cloop_entries"] > 0
    # every hot request was read and answered by the loop in C; every other one
    # (STATFS, the declined READ and GETATTR, the malformed, INIT, DESTROY) given back
    assert cl["cloop_served"] >= hot
    assert cl["cloop_returned"] >= ROUNDS * (3 * (BURST // 6) + 2)
    assert cl["errors"] == 0 and cl["write_errors"] == 0
    py = py_stats["session"]["hotpath"]  # type: ignore[index]
    assert py["cloop_entries"] == 0 and py["cloop_served"] == 0
    # the same requests counted per opcode: none handled twice, none skipped
    counts = {op: v["count"] for op, v in c_stats["session"]["requests"].items()}  # type: ignore[index]
    assert counts == {op: v["count"] for op, v in
                      py_stats["session"]["requests"].items()}  # type: ignore[index]
    assert c_stats["session"]["write_errors"] == 0  # type: ignore[index]
