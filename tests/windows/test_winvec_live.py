"""The window QUERY in C (native/winvec.c) on a live mount: taken, right, robust, safe.

tests/windows/test_winfast_twin.py proves the engine's QUERY reply is byte for byte
the Python path's; these tests prove the mount uses it (STATS ``queries``), that
what it reports is what the mapping shows, that bad QUERYs get Python's errno and
leave a working daemon, and that an unprivileged user on an ``allow_other`` mount
learns through it exactly what open(2) of the window allows and changes nothing.
"""

from __future__ import annotations

import errno
import fcntl
import os
import random
import struct
from pathlib import Path

import pytest

from mount.server import winfast
from mount.winapi.abi import (
    PAGE_CACHED,
    PAGE_OWNPROT,
    PAGE_PRESENT,
    PAGE_RESIDENT,
    QUERY_HEAD,
    QUERY_SIZE,
    SHMFS_IOC_WIN_QUERY,
)
from mount.winapi.client import PROT_READ, PROT_WRITE, Window, mount_stats
from tests.windows.helpers import MapChild, P, make_object, page_of, readonly_for_others

pytestmark = [pytest.mark.mount,
              pytest.mark.skipif(not winfast.available(),
                                 reason="the C extension is not built (scripts/bootstrap.sh)")]

RW = PROT_READ | PROT_WRITE


def _native(mnt: Path) -> dict:
    return mount_stats(mnt)["session"]["winfast"]


def _query_raw(fd: int, first: int, count: int, flags: int = 0,
               cmd: int = SHMFS_IOC_WIN_QUERY, size: int = QUERY_SIZE) -> bytes:
    buf = bytearray(size)
    QUERY_HEAD.pack_into(buf, 0, first, count, flags, 0, 0)
    fcntl.ioctl(fd, cmd, buf)  # a mutable buffer: the kernel copies the struct back
    return bytes(buf)


def test_queries_take_the_native_path(wmount: Path, wdir: Path) -> None:
    """After random MAP_CHGPROT remaps and touches, every QUERY is the engine's and
    reports what the mapping shows: the pgoff each page holds (its first 8 bytes),
    its own protection, present / resident / cached as the touches left them."""
    obj = wdir / "obj"
    make_object(obj, 64)
    with Window.create(wdir / "win", obj, 16) as w, MapChild(wdir / "win", 16 * P) as c:
        w.remap(0, 1, 40, prot=RW, populate=True)  # nonlinear, VM_MANYPROTS: Python
        before = _native(wmount)
        rng = random.Random(11)
        shown, prots = {0: 40}, {0: RW}
        for step in range(120):
            i, pg = rng.randrange(16), rng.randrange(64)
            prot = rng.choice([RW, RW, PROT_READ])
            w.remap(i, 1, pg, prot=prot, populate=prot == RW)
            shown[i], prots[i] = pg, prot
            if rng.random() < 0.5:
                assert c.read(i * P, 8) == page_of(pg)[:8]
            q = w.query(0, 16)
            assert len(q) == 16
            for k, v in shown.items():
                assert q[k].pgoff == v, (step, k)
                assert q[k].prot == prots[k] and q[k].flags & PAGE_OWNPROT, (step, k)
                assert q[k].flags & PAGE_RESIDENT or not q[k].flags & PAGE_PRESENT
        after = _native(wmount)
        assert after["queries"] - before["queries"] == 120
        assert after["write_errors"] == 0
        # a page the child just read is present and cached
        w.remap(5, 1, 9, prot=RW, populate=True)
        assert c.read(5 * P, 8) == page_of(9)[:8]
        p5 = w.query(5, 1)[0]
        assert p5.pgoff == 9 and p5.flags & PAGE_PRESENT and p5.flags & PAGE_CACHED


def test_bad_queries_get_an_errno(wmount: Path, wdir: Path) -> None:
    """Malformed QUERYs are declined by the engine and answered by Python with its
    errno; the daemon lives and the engine still answers the next good QUERY."""
    obj = wdir / "obj"
    make_object(obj, 8)
    with Window.create(wdir / "win", obj, 8) as w:
        w.remap(0, 1, 3, populate=True)
        fd = w.fd
        for args, want in [((0, 1, 1), errno.EINVAL),  # flags != 0
                           ((0, 513), errno.EINVAL),  # more than 512 pages
                           ((0, 1, 0, SHMFS_IOC_WIN_QUERY - (16 << 16), QUERY_SIZE - 16),
                            errno.EINVAL)]:  # the wrong struct size in the command
            with pytest.raises(OSError) as ei:
                _query_raw(fd, *args)
            assert ei.value.errno == want, args
        ofd = os.open(obj, os.O_RDONLY)  # not a window
        try:
            with pytest.raises(OSError) as ei:
                _query_raw(ofd, 0, 1)
            assert ei.value.errno == errno.ENOTTY
        finally:
            os.close(ofd)
        n = _native(wmount)["queries"]
        out = _query_raw(fd, 6, 100)  # clipped at the window's end: 2 pages
        first, count, _f, npages, osize = QUERY_HEAD.unpack_from(out, 0)
        assert (first, count, npages, osize) == (6, 2, 8, 8 * P)
        assert [p.pgoff for p in w.query(0, 8)] == [3, 1, 2, 3, 4, 5, 6, 7]
        assert _native(wmount)["queries"] == n + 2


def test_query_attack_read_only_user(tmp_path: Path) -> None:
    """An unprivileged user on an allow_other mount, with the engine's QUERY hot: on
    root's 0644 window (a read-only open, as open(2) grants) its QUERY reports what
    root's does, and the same descriptor still cannot remap (EBADF) or write
    (EBADF); a 0600 window cannot be opened at all; nothing changed."""
    from tests.live.helpers import as_user
    from tests.support.mounts import shmfs_mount

    with shmfs_mount("allow_other,mode=1777") as mnt:
        obj = mnt / "obj"
        make_object(obj, 8)
        os.chmod(obj, 0o644)
        with Window.create(mnt / "win", obj, 4) as w, \
                Window.create(mnt / "secret", obj, 4) as s:
            os.chmod(mnt / "win", 0o644)
            os.chmod(mnt / "secret", 0o600)
            w.remap(0, 1, 5, prot=RW, populate=True)
            w.remap(1, 1, 6, prot=PROT_READ)
            s.remap(0, 1, 7, populate=True)
            roots = _query_raw(w.fd, 0, 4)
            n = _native(mnt)["queries"]

            def user() -> object:
                fd = os.open(mnt / "win", os.O_RDONLY)
                out: list[object] = []
                try:
                    out.append(_query_raw(fd, 0, 4))
                    for call in (lambda: fcntl.ioctl(fd, 0x40205302,
                                                     struct.pack("<QQQII", 0, P, 2, 0, 0)),
                                 lambda: os.pwrite(fd, b"z" * 8, 0)):
                        try:
                            call()
                            out.append("done")
                        except OSError as e:
                            out.append(e.errno)
                finally:
                    os.close(fd)
                try:
                    os.open(mnt / "secret", os.O_RDONLY)
                    out.append("opened")
                except OSError as e:
                    out.append(e.errno)
                return out

            got = as_user(65534, 65534, user)
            assert got[0] == "ok", got
            q, remap_err, write_err, secret_err = got[1]
            assert q == roots
            assert (remap_err, write_err, secret_err) == (errno.EBADF, errno.EBADF,
                                                          errno.EACCES)
            assert _native(mnt)["queries"] >= n + 1  # the user's QUERY was the engine's
            assert _query_raw(w.fd, 0, 4) == roots
            assert w.pread(0, 8) == page_of(5)[:8]
        with open(obj, "rb") as f:
            assert f.read() == b"".join(page_of(k) for k in range(8))


def test_unchanged_mprotects_take_the_native_path(wmount: Path, wdir: Path) -> None:
    """uml_physmem's protect to the protection a page already has: with the page
    cached by the kernel (the child touched it) the engine refaults it
    (``mprotect_refaults``), the mapping keeps showing the right bytes without a
    READ, and a read-only page still refuses a store."""
    obj = wdir / "obj"
    make_object(obj, 64)
    with Window.create(wdir / "win", obj, 16) as w, MapChild(wdir / "win", 16 * P) as c:
        w.remap(0, 1, 40, prot=RW, populate=True)  # nonlinear, VM_MANYPROTS: Python
        rng = random.Random(9)
        shown, prots = {}, {}
        for i in range(16):
            pg = rng.randrange(64)
            w.remap(i, 1, pg, prot=RW, populate=True)
            shown[i], prots[i] = pg, RW
        before = _native(wmount)
        for _ in range(200):
            i = rng.randrange(16)
            assert c.read(i * P, 16) == page_of(shown[i])[:16]  # cached now
            prot = prots[i] if rng.random() < 0.7 else (
                PROT_READ if prots[i] == RW else RW)
            w.protect(i, 1, prot)
            prots[i] = prot
            assert c.read(i * P, 16) == page_of(shown[i])[:16]
        after = _native(wmount)
        assert after["mprotect_refaults"] - before["mprotect_refaults"] > 50
        assert after["mprotects"] - before["mprotects"] == 200
        assert after["write_errors"] == 0
        q = w.query(0, 16)
        assert {k: p.prot for k, p in enumerate(q)} == prots
        assert all(p.present for p in q)
        ro = next((k for k, p in prots.items() if p == PROT_READ), None)
        if ro is None:
            ro = 3
            w.protect(ro, 1, PROT_READ)
        with pytest.raises(PermissionError):
            os.pwrite(w.fd, b"x" * 8, ro * P)
        assert w.pread(ro * P, 16) == page_of(shown[ro])[:16]


def test_mprotect_refault_attack_read_only_user(tmp_path: Path) -> None:
    """An unprivileged user with its own window over an object it may only read
    (attached PROT_READ), with the engine's refault hot: re-protecting a cached page
    to the protection it has refaults it (``mprotect_refaults``) and grants nothing --
    PROT_WRITE is still EACCES, write(2) through the window still EACCES, the
    object unchanged; on root's window its read-only descriptor gets EBADF."""
    from tests.live.helpers import as_user

    with readonly_for_others(RW) as (mnt, obj, _w):
        def user() -> object:
            out: list[object] = []
            fd = os.open(mnt / "win", os.O_RDONLY)
            try:
                Window(fd, owns_fd=False).protect(0, 1, RW)  # unchanged on root's
                out.append("done")
            except OSError as e:
                out.append(e.errno)
            finally:
                os.close(fd)
            with Window.create(mnt / "mine", obj, 4, prot=PROT_READ) as mw:
                mw.remap(0, 1, 2, prot=PROT_READ, populate=True)
                mw.remap(1, 1, 3, prot=PROT_READ, populate=True)
                assert os.pread(mw.fd, 8, P) == page_of(3)[:8]  # cached
                mw.protect(1, 1, PROT_READ)  # unchanged: the engine's refault
                for call in (lambda: mw.protect(1, 1, RW),
                             lambda: os.pwrite(mw.fd, b"y" * 8, P)):
                    try:
                        call()
                        out.append("done")
                    except OSError as e:
                        out.append(e.errno)
                out.append(os.pread(mw.fd, 8, P) == page_of(3)[:8])
            return out

        n = _native(mnt)["mprotect_refaults"]
        got = as_user(65534, 65534, user)
        assert got == ("ok", [errno.EBADF, errno.EACCES, errno.EACCES, True]), got
        assert _native(mnt)["mprotect_refaults"] >= n + 1


def test_short_remapvs_take_the_native_path(wmount: Path, wdir: Path) -> None:
    """uml_physmem's page-table switches: short REMAPVs of disjoint one-page
    MAP_CHGPROT entries are the engine's whole (``remapvs``), the mapping shows what
    each entry says with no READ; overlapping entries go to Python and still apply
    in order (the later entry wins); a bad entry gets its errno with ``done``; the
    daemon lives."""
    from mount.winapi.client import MAP_CHGPROT, SHMFS_REMAP_POPULATE

    obj = wdir / "obj"
    make_object(obj, 64)
    with Window.create(wdir / "win", obj, 32) as w, MapChild(wdir / "win", 32 * P) as c:
        w.remap(0, 1, 40, prot=RW, populate=True)  # nonlinear, VM_MANYPROTS: Python
        before = _native(wmount)
        reads = mount_stats(wmount)["session"]["requests"].get("READ", {"count": 0})["count"]
        rng = random.Random(13)
        shown = {i: q.pgoff for i, q in enumerate(w.query(0, 32))}
        for _ in range(60):
            pages = sorted(rng.sample(range(0, 32, 2), rng.randint(2, 8)))  # disjoint
            # each onto a page other than the one shown (onto the same one: Python,
            # test_notify_store.py)
            ents = [(i * P, P, rng.choice([p for p in range(64) if p != shown[i]]), RW,
                     MAP_CHGPROT | SHMFS_REMAP_POPULATE) for i in pages]
            assert w.remapv_bytes(ents) == len(ents)
            shown.update((e[0] // P, e[2]) for e in ents)
            for i in pages:
                assert c.read(i * P, 16) == page_of(shown[i])[:16]
        after = _native(wmount)
        assert after["remapvs"] - before["remapvs"] == 60
        assert after["write_errors"] == 0
        now = mount_stats(wmount)["session"]["requests"].get("READ", {"count": 0})["count"]
        assert now == reads  # every touch a minor fault: the entries' stores went first
        # overlapping entries: Python, in order
        n = _native(wmount)["remapvs"]
        w.remapv_bytes([(2 * P, P, 5, RW, MAP_CHGPROT), (2 * P, P, 6, RW, MAP_CHGPROT)])
        assert w.query(2, 1)[0].pgoff == 6 and c.read(2 * P, 16) == page_of(6)[:16]
        # a bad second entry: EINVAL, done = 1, the first applied
        with pytest.raises(OSError) as ei:
            w.remapv_bytes([(4 * P, P, 7, RW, MAP_CHGPROT), (40 * P, P, 8, RW, MAP_CHGPROT)])
        assert ei.value.errno == errno.EINVAL and ei.value.done == 1  # type: ignore[attr-defined]
        assert w.query(4, 1)[0].pgoff == 7
        assert _native(wmount)["remapvs"] == n
        w.remapv_bytes([(6 * P, P, 9, RW, MAP_CHGPROT), (8 * P, P, 10, RW, MAP_CHGPROT)])
        assert _native(wmount)["remapvs"] == n + 1  # still alive, still native
        assert [p.pgoff for p in w.query(6, 3)] == [9, shown.get(7, 7), 10]


def test_remapv_attack_read_only_user(tmp_path: Path) -> None:
    """An unprivileged user on an allow_other mount, with the engine's REMAPV hot:
    through root's 0644 window (read-only open) a REMAPV is EBADF with nothing
    applied; on its own PROT_READ window over a read-only object, an entry asking for
    PROT_WRITE is EACCES (``done`` = the entries before it); the object unchanged."""
    from mount.winapi.client import MAP_CHGPROT
    from tests.live.helpers import as_user

    with readonly_for_others(RW) as (mnt, obj, w):
        n = _native(mnt)["remapvs"]
        for _ in range(3):  # the first may find Python's remap still being written
            w.remapv_bytes([(P, P, 6, RW, MAP_CHGPROT), (3 * P, P, 7, RW, MAP_CHGPROT)])
        assert _native(mnt)["remapvs"] > n
        n = _native(mnt)["remapvs"]

        def user() -> object:
            out: list[object] = []
            fd = os.open(mnt / "win", os.O_RDONLY)
            try:
                Window(fd, owns_fd=False).remapv_bytes(
                    [(0, P, 1, RW, MAP_CHGPROT), (2 * P, P, 2, RW, MAP_CHGPROT)])
                out.append("done")
            except OSError as e:
                out.append((e.errno, getattr(e, "done", None)))
            finally:
                os.close(fd)
            with Window.create(mnt / "mine", obj, 4, prot=PROT_READ) as mw:
                mw.remap(0, 1, 2, prot=PROT_READ, populate=True)
                for _ in range(3):  # allowed; the first may find Python's remap being written
                    mw.remapv_bytes([(P, P, 3, PROT_READ, MAP_CHGPROT),
                                     (3 * P, P, 4, PROT_READ, MAP_CHGPROT)])
                try:
                    mw.remapv_bytes([(P, P, 3, PROT_READ, MAP_CHGPROT),
                                     (3 * P, P, 4, RW, MAP_CHGPROT)])
                    out.append("done")
                except OSError as e:
                    out.append((e.errno, getattr(e, "done", None)))
                try:
                    os.pwrite(mw.fd, b"y" * 8, 3 * P)
                    out.append("done")
                except OSError as e:
                    out.append(e.errno)
                out.append([p.pgoff for p in mw.query(0, 4)])
            return out

        got = as_user(65534, 65534, user)
        assert got == ("ok", [(errno.EBADF, 0), (errno.EACCES, 1), errno.EACCES,
                              [2, 3, 2, 4]]), got
        assert _native(mnt)["remapvs"] >= n + 1  # the user's legal REMAPV was native
        assert [p.pgoff for p in w.query(0, 4)] == [5, 6, 2, 7]
