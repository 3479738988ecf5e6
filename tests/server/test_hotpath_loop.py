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
        ino, fh = ch.create(10)
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


def test_the_gil_kept_across_a_burst_changes_no_reply(monkeypatch: pytest.MonkeyPatch) -> None:
    """The loop keeps the GIL from one request to the next one it finds waiting (issue
    15, appends2: released only when a read finds nothing, or after CLOOP_HOLD_NS):
    the same bursts give the same replies and per-opcode counts as with the GIL
    released around every read (SHMFS_CLOOP_HOLD=0), and the requests of a burst after
    its first really were read with the GIL kept (``cloop_gil_kept``)."""
    monkeypatch.setenv("SHMFS_CLOOP", "1")
    monkeypatch.setenv("SHMFS_CLOOP_HOLD", "1")
    kept_replies, kept_stats, hot = _run()
    monkeypatch.setenv("SHMFS_CLOOP_HOLD", "0")
    rel_replies, rel_stats, _ = _run()
    assert _comparable(kept_replies) == _comparable(rel_replies)
    kept = kept_stats["session"]["hotpath"]  # type: ignore[index]
    rel = rel_stats["session"]["hotpath"]  # type: ignore[index]
    assert kept["cloop_served"] >= hot and rel["cloop_served"] >= hot
    # a burst's requests are all in the socket before the loop reads the second one
    assert kept["cloop_gil_kept"] > 0
    assert rel["cloop_gil_kept"] == 0
    counts = {op: v["count"] for op, v in kept_stats["session"]["requests"].items()}  # type: ignore[index]
    assert counts == {op: v["count"] for op, v in
                      rel_stats["session"]["requests"].items()}  # type: ignore[index]


FATTR_MODE, FATTR_SIZE = 1 << 0, 1 << 3


def setattr_in(valid: int, *, size: int = 0, mode: int = 0) -> bytes:
    """struct fuse_setattr_in (88 bytes)."""
    return struct.pack("<IIQQQQQQIIIIIIII", valid, 0, 0, size, 0, 0, 0, 0, 0, 0, 0, mode,
                       0, 0, 0, 0)


KILL_SUIDGID = 4  # fuse_write_in.write_flags: the writer lacks CAP_FSETID


def _appends_with_python_between() -> tuple[bytes, list[tuple[int, bytes]], dict]:
    """Bursts of O_APPEND WRITEs (4 KiB and 512 B, through the loop in C, each with
    KILL_SUIDGID as the kernel sends it) with a truncate and a chmod (SETATTR: Python's)
    between two of them, all sent before any reply is read: the file's bytes, every
    reply, the final statistics. The chmod sets the set-user-ID bit in odd rounds: the
    next WRITE must then be Python's (the engine declines it) and clear it."""
    replies: list[tuple[int, bytes]] = []
    with W.served_session() as ch:
        c = ch.call(W.CREATE, 10, 1, struct.pack("<IIII", os.O_RDWR | os.O_APPEND, 0o100644, 0,
                                                 0) + b"g\0")
        assert c.error == 0
        ino = struct.unpack_from("<Q", c.payload)[0]
        fh = struct.unpack_from("<Q", c.payload, 128)[0]
        u = 100
        for r in range(8):
            msgs = []
            for i in range(12):  # crosses the arena reserve's batches (64 frames)
                size = 4096 if i % 3 else 512
                data = bytes([(r * 12 + i) & 0xFF or 1]) * size
                body = struct.pack("<QQIIQII", fh, 0, size, KILL_SUIDGID, 0, os.O_RDWR, 0)
                msgs.append(W.request(W.WRITE, u, ino, body + data))
                u += 1
                if i == 5:  # Python's, between two C WRITEs: the next append must see it
                    msgs.append(W.request(W.SETATTR, u, ino,
                                          setattr_in(FATTR_SIZE, size=(r + 1) * 3000)))
                    u += 1
                if i == 8:
                    msgs.append(W.request(W.SETATTR, u, ino, setattr_in(
                        FATTR_MODE, mode=0o4755 if r % 2 else 0o644)))
                    u += 1
            if r == 2:  # a second handle: two C WRITEs, its RELEASE (in C), a WRITE on it
                o = ch.call(W.OPEN, u, ino, struct.pack("<II", os.O_RDWR | os.O_APPEND, 0))
                fh2 = struct.unpack_from("<Q", o.payload)[0]
                body = struct.pack("<QQIIQII", fh2, 0, 100, 0, 0, os.O_RDWR, 0) + b"h" * 100
                msgs += [W.request(W.WRITE, u + 1, ino, body),
                         W.request(W.WRITE, u + 2, ino, body),
                         W.request(W.RELEASE, u + 3, ino, struct.pack("<QIIQ", fh2, 0, 0, 0)),
                         W.request(W.WRITE, u + 4, ino, body)]  # EBADF: the handle is gone
                u += 5
            for m in msgs:
                ch.send(m)
            got = ch.exchange(W.request(W.GETATTR, u, ino, bytes(16)))
            u += 1
            assert len(got) == len(msgs) + 1
            replies += [(g.error, g.payload if len(g.payload) != 104 else g.payload[16:16 + 16]
                         + g.payload[16 + 60:16 + 64]) for g in got]  # ino, size, mode
        size = struct.unpack_from("<Q", got[-1].payload, 16 + 8)[0]
        rd = ch.call(W.READ, u, ino, rw_in(fh, 0, size))
        assert rd.error == 0 and len(rd.payload) == size
        data = rd.payload
    return data, replies, ch.final_stats


def test_a_python_request_between_two_c_writes_is_seen_by_the_second(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A truncate and a chmod answered by Python between two appending WRITEs of one
    burst (the loop in C returns the SETATTR, Python answers it, the loop takes the
    next WRITE): the second WRITE appends at the truncated size, a WRITE after a chmod
    to set-user-ID clears it, and the bytes, sizes, modes and replies are those of the
    Python loop (the oracle), with the GIL kept or not. With it kept, the loop's WRITE
    cache (what the first checks found for the node and handle, decisions 39) is used
    between them -- and must not outlive the SETATTRs."""
    runs = {}
    # appends3: ("1", "d") the cache's counts, times and buffers not kept in C
    # (SHMFS_WC_DEFER=0): same replies, same counts
    for cloop, hold in (("1", "1"), ("1", "0"), ("0", "1"), ("1", "d")):
        monkeypatch.setenv("SHMFS_CLOOP", cloop)
        monkeypatch.setenv("SHMFS_CLOOP_HOLD", "1" if hold == "d" else hold)
        monkeypatch.setenv("SHMFS_WC_DEFER", "0" if hold == "d" else "1")
        runs[cloop, hold] = _appends_with_python_between()
    data, replies, _ = runs["0", "1"]
    assert [err for err, _ in replies if err] == [-E.EBADF]
    requests = {op: v["count"]  # type: ignore[index]
                for op, v in runs["0", "1"][2]["session"]["requests"].items()}  # type: ignore[index]
    for key in (("1", "1"), ("1", "0"), ("1", "d")):
        assert runs[key][0] == data and runs[key][1] == replies
        hot = runs[key][2]["session"]["hotpath"]  # type: ignore[index]
        # all but the four WRITEs after a set-user-ID chmod (Python's: they clear it)
        assert hot["write"] == 8 * 12 - 4 + 2 and hot["errors"] == 0
        # every request counted once: the deferred WRITEs' counts folded in
        assert {op: v["count"] for op, v in  # type: ignore[index]
                runs[key][2]["session"]["requests"].items()} == requests  # type: ignore[index]
        assert (hot["write_deferred"] > 0) == (key == ("1", "1"))
    kept = runs["1", "1"][2]["session"]["hotpath"]  # type: ignore[index]
    assert kept["cloop_gil_kept"] > 0 and kept["write_cached"] > 0
    # the cache lives while the GIL is kept: released around every read, never used
    assert runs["1", "0"][2]["session"]["hotpath"]["write_cached"] == 0  # type: ignore[index]
    assert runs["0", "1"][2]["session"]["hotpath"]["write_cached"] == 0  # type: ignore[index]
    # per round the truncate's, the chmod's and the last GETATTR's attributes: the odd
    # rounds' chmod set S_ISUID, the WRITE after it (KILL_SUIDGID) cleared it
    modes = [struct.unpack_from("<I", p, 16)[0] & 0o7777 for err, p in replies if len(p) == 20]
    assert modes[1::3] == [0o4755 if r % 2 else 0o644 for r in range(8)]
    assert modes[2::3] == [0o755 if r % 2 else 0o644 for r in range(8)]
    # the last round's truncate cut the file to 24,000 bytes, then six appends followed
    assert len(data) == 8 * 3000 + 4096 * 4 + 512 * 2
    at = 8 * 3000  # the first append after it (i = 6: 512 B of 7 * 12 + 6), the next
    assert data[at - 1] != 0 and data[at:at + 512] == bytes([90]) * 512
    assert data[at + 512:at + 512 + 4096] == bytes([91]) * 4096


def _appends_on_two_handles() -> tuple[bytes, list[tuple[int, bytes]], dict]:
    """Runs of O_APPEND WRITEs on one file through two handles (as two processes
    appending to one log), all sent before any reply is read: the file's bytes, every
    reply, the final statistics."""
    replies: list[tuple[int, bytes]] = []
    with W.served_session() as ch:
        c = ch.call(W.CREATE, 10, 1, struct.pack("<IIII", os.O_RDWR | os.O_APPEND, 0o100644, 0,
                                                 0) + b"log\0")
        assert c.error == 0
        ino = struct.unpack_from("<Q", c.payload)[0]
        fhs = [struct.unpack_from("<Q", c.payload, 128)[0]]
        o = ch.call(W.OPEN, 11, ino, struct.pack("<II", os.O_RDWR | os.O_APPEND, 0))
        fhs.append(struct.unpack_from("<Q", o.payload)[0])
        u = 100
        msgs = []
        for i in range(60):  # runs of 1, 2, 3 ... WRITEs per handle, 64 B records
            k = (i * i // 7) % 2
            body = struct.pack("<QQIIQII", fhs[k], 0, 64, 0, 0, os.O_RDWR, 0)
            msgs.append(W.request(W.WRITE, u, ino, body + bytes([65 + k]) * 63 + b"\n"))
            u += 1
        for m in msgs:
            ch.send(m)
        got = ch.exchange(W.request(W.GETATTR, u, ino, bytes(16)))
        assert len(got) == len(msgs) + 1
        replies += [(g.error, g.payload if len(g.payload) != 104 else g.payload[16:32])
                    for g in got]
        rd = ch.call(W.READ, u + 1, ino, rw_in(fhs[0], 0, 60 * 64))
        assert rd.error == 0
        data = rd.payload
    return data, replies, ch.final_stats


def test_appends_on_two_handles_of_one_file_as_the_python_loop(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Two handles appending to one file in one burst: a WRITE on the other handle misses
    the WRITE cache, and must append at the size the cached WRITEs before it left in C
    (decisions 45) -- every record whole, none overwritten, as the Python loop."""
    runs = {}
    for cloop, defer in (("0", "1"), ("1", "1"), ("1", "0")):
        monkeypatch.setenv("SHMFS_CLOOP", cloop)
        monkeypatch.setenv("SHMFS_CLOOP_HOLD", "1")
        monkeypatch.setenv("SHMFS_WC_DEFER", defer)
        runs[cloop, defer] = _appends_on_two_handles()
    data, replies, _ = runs["0", "1"]
    assert len(data) == 60 * 64 and all(err == 0 for err, _ in replies)
    for key in (("1", "1"), ("1", "0")):
        assert runs[key][0] == data and runs[key][1] == replies, key
    assert runs["1", "1"][2]["session"]["hotpath"]["write_deferred"] > 0  # type: ignore[index]
