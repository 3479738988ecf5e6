"""Malformed requests against the C request paths (tests/reliability/cfuzz.py): every
opcode the C engines accept, mutated (lying header lengths, bodies cut at every byte,
bad names, edge offsets and sizes, unknown nodes and handles, ioctl size lies, REMAPV
counts that overflow), sent to a session with the engines on and one with them off.
Exactly one reply each (none for FORGET), a valid errno, the session serving on (a
sentinel READ after every mutant), no unexpected handler exception, and the same
errno from C and Python wherever both answer.

Bounded and seeded: seed 0 plus a few random combinations per template (about 15 s
here). ``SHMFS_CFUZZ_SEEDS=N`` runs seeds 0..N-1 with ``SHMFS_CFUZZ_EXTRA`` (default
200) random mutants per template each, for manual runs; scripts/asan_check.sh runs
this file against extensions built with -fsanitize=address,undefined.
"""

from __future__ import annotations

import errno as E
import os
import struct

import pytest

from mount.server import hotpath, winfast
from tests.reliability import cfuzz
from tests.reliability import wire as W

pytestmark = pytest.mark.skipif(not (hotpath.available() and winfast.available()),
                                reason="_hotpath or _winfast not built")
SEEDS = int(os.environ.get("SHMFS_CFUZZ_SEEDS", "1"))
EXTRA = int(os.environ.get("SHMFS_CFUZZ_EXTRA", "200" if SEEDS > 1 else "8"))


@pytest.mark.parametrize("seed", range(SEEDS))
def test_mutated_requests_get_one_sane_reply_and_python_s_errno(seed: int) -> None:
    out = cfuzz.run(seed, EXTRA)
    assert out.findings == [], "\n".join(map(str, out.findings))
    assert out.compared > 1000 and out.sent > 2 * out.compared - 400
    # the engines really answered: the C paths were taken, and declined the bad ones
    hot = out.stats["engines"]["session"]["hotpath"]  # type: ignore[index]
    win = out.stats["engines"]["session"]["winfast"]  # type: ignore[index]
    assert hot["engaged"] and hot["errors"] == 0 and hot["write_errors"] == 0
    for key in ("read", "write", "getattr", "lookup", "open", "release", "create", "unlink",
                "forget", "declined", "cloop_served", "cloop_window"):
        assert hot[key] > 0, key
    assert win["remaps"] > 0 and win["mprotects"] > 0 and win["queries"] > 0
    assert win["read"]["reads"] > 0 and win["wstores"] > 0
    assert not out.stats["python"]["session"]["hotpath"]["engaged"]  # type: ignore[index]
    # the valid request of each template did what it should (the mutants are near misses)
    assert out.valid["read"] == out.valid["write"] == out.valid["ioctl-remap"] == 0
    assert out.valid["win-read"] == out.valid["win-write"] == out.valid["fallocate"] == 0


def test_fallocate_of_more_pages_than_the_filesystem_holds_is_enospc() -> None:
    """Found by the fuzzer: FALLOCATE with a length near 2^63 asked the page cache for
    an array of 2^51 entries (MemoryError, an EIO and an 'unexpected' handler error).
    shmem_fallocate: a range larger than the filesystem's blocks is ENOSPC up front."""
    with W.served_session() as ch:
        ino, fh = ch.create(10)
        for off, length in ((4096, 2**63 - 8192), (0, 2**62), (0, (64 << 20) + 4096)):
            r = ch.call(W.FALLOCATE, 11, ino, struct.pack("<QQQII", fh, off, length, 0, 0))
            assert r.error == -28, (off, length, r)  # ENOSPC (size=64m in the driver)
            r = ch.call(W.FALLOCATE, 12, ino, struct.pack("<QQQII", fh, off, length, 1, 0))
            assert r.error == -28, (off, length, r)  # KEEP_SIZE too
        r = ch.call(W.FALLOCATE, 13, ino, struct.pack("<QQQII", fh, 0, 64 << 20, 0, 0))
        assert r.error == 0  # exactly the whole filesystem still fits
        a = ch.call(W.GETATTR, 14, ino, bytes(16))
        assert struct.unpack_from("<Q", a.payload, 16 + 8)[0] == 64 << 20
    assert ch.final_stats["ops"]["unexpected"] == 0, ch.stderr  # type: ignore[index]


BURSTS = int(os.environ.get("SHMFS_CFUZZ_BURSTS", "150"))


@pytest.mark.parametrize("seed", range(SEEDS))
def test_bursts_of_writes_with_mutants_between_match_python(seed: int) -> None:
    """The C loop's cached and deferred WRITE bookkeeping (appends3) with malformed and
    refused WRITEs, READs, GETATTRs, truncates and FLUSHes between, sent whole: the
    same errnos and the same file (size and bytes) as the Python path."""
    out = cfuzz.run_bursts(seed, BURSTS)
    assert out.findings == [], "\n".join(map(str, out.findings))
    hot = out.stats["engines"]["session"]["hotpath"]  # type: ignore[index]
    assert hot["write_cached"] > 0 and hot["write_deferred"] > 0 and hot["declined"] > 0
    assert hot["errors"] == 0 and hot["write_errors"] == 0


@pytest.mark.parametrize("engines", [cfuzz.ENGINES_ON, cfuzz.ENGINES_OFF], ids=["c", "python"])
def test_attach_beyond_the_largest_file_is_eoverflow_and_leaves_no_window(
        engines: dict[str, str]) -> None:
    """Found by the fuzzer (seed 3, 300 random mutants a template): ATTACH with a pgoff
    whose end passed 2^63 made the window, then overflowed int64 page arithmetic: an EIO
    ('unexpected' in the handler) with the window left attached. mmap's file_mmap_ok:
    EOVERFLOW, nothing made."""
    from mount.winapi import abi
    with W.served_session(engines) as ch:
        c = cfuzz.set_up(ch)
        P = cfuzz.PAGE
        for size, pgoff in ((8 * P, 2**51), (8 * P, (2**63 - 1 - 8 * P) // P + 1),
                            (8 * P, 2**63), (8 * P, 2**64 - 1), (2**63, 0), (2**64 - P, 0)):
            cfuzz._fresh_window(c)
            r = c.call(W.IOCTL, c.nodes["w2"], cfuzz.ioctl(
                c.nodes["w2fh"], abi.SHMFS_IOC_WIN_ATTACH,
                abi.ATTACH.pack(c.nodes["token2"], size, pgoff, 3, 0)))
            assert r.error == -E.EOVERFLOW, (size, pgoff, r)
            info = c.call(W.IOCTL, c.nodes["w2"], cfuzz.ioctl(
                c.nodes["w2fh"], abi.SHMFS_IOC_WIN_INFO, b""))
            assert info.error < 0  # not a window
        cfuzz._fresh_window(c)  # the largest pgoff that still fits is a window
        pgoff = (2**63 - 1 - 8 * P) // P
        r = c.call(W.IOCTL, c.nodes["w2"], cfuzz.ioctl(
            c.nodes["w2fh"], abi.SHMFS_IOC_WIN_ATTACH,
            abi.ATTACH.pack(c.nodes["token2"], 8 * P, pgoff, 3, 0)))
        assert r.error == 0, r
    assert ch.final_stats["ops"]["unexpected"] == 0, ch.stderr  # type: ignore[index]


@pytest.mark.parametrize("valid", [1 << 4, 1 << 5, 1 << 10], ids=["atime", "mtime", "ctime"])
def test_setattr_nanoseconds_out_of_range_are_einval_and_getattr_still_works(
        valid: int) -> None:
    """Found by the fuzzer under ASan (seeds 0-3, 100 random mutants a template): a
    SETATTR time of 2^63-1 s with 2^32-1 ns was stored, then no longer fitted struct
    fuse_attr: that SETATTR and every later GETATTR of the file answered EIO."""
    sa = cfuzz.SA.replace("q", "Q")
    with W.served_session() as ch:
        ino, _fh = ch.create(10)
        for sec, nsec in ((2**63 - 1, 2**32 - 1), (5, 1_000_000_000), (0, 2**31)):
            r = ch.call(W.SETATTR, 11, ino, struct.pack(
                sa, valid, 0, 0, 0, 0, sec, sec, sec, nsec, nsec, nsec, 0, 0, 0, 0, 0))
            assert r.error == -E.EINVAL, (sec, nsec, r)
            assert ch.call(W.GETATTR, 12, ino, bytes(16)).error == 0
        r = ch.call(W.SETATTR, 13, ino, struct.pack(
            sa, valid, 0, 0, 0, 0, 7, 7, 7, 999_999_999, 999_999_999, 999_999_999,
            0, 0, 0, 0, 0))
        assert r.error == 0
    assert ch.final_stats["ops"]["unexpected"] == 0, ch.stderr  # type: ignore[index]
