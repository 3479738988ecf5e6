"""The C REMAP fast path on a live mount: taken, exact, robust, and coherent under load.

tests/windows/test_winfast_twin.py proves the engine changes the daemon's state
exactly as the Python path does; these tests prove the mount uses it (STATS
counters), that bad ioctls through it get an errno and leave a working daemon,
and that remaps racing with reads, object writes and truncates leave every window
page showing what its page table says.

The counts ("the engine answered 200 remaps", "... at least n + 2 MPROTECTs") are the
engine's own counters (STATS ``winfast``), which count every request the engine
answered whichever reader read it: the module's mount has three readers, and while
the traffic is mixed (a large WRITE beside small requests of another process) the
clone readers are up and may read some of these requests -- they hand them to the
engine as the first reader does
(docs/decisions.md, "Clone readers hand window requests to the engine";
test_winclones.py proves that path and counts it). So the counts fail if the engine
does not take the requests, and do not depend on which reader read them; a failure
message shows how many a clone read (``_clones``).
"""

from __future__ import annotations

import errno
import fcntl
import os
import random
import struct
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from mount.server import winfast
from mount.winapi.client import Window, mount_stats
from tests.windows.helpers import MapChild, P, make_object, page_of, readonly_for_others

pytestmark = [pytest.mark.mount,
              pytest.mark.skipif(not winfast.available(),
                                 reason="the C extension is not built (scripts/bootstrap.sh)")]

REMAP = 0x40205302
POPULATE = 0x8000


def _native(mnt: Path) -> dict:
    """The engine's counters: its answers, whichever reader read the request."""
    return mount_stats(mnt)["session"]["winfast"]


def _clones(mnt: Path) -> dict:
    """For failure messages: window requests clone readers read, answered by the
    engine, and all requests they read."""
    s = mount_stats(mnt)["session"]
    return {**s["clone_window"], "clone_read": s["second_reader_requests"]}


def _remap_raw(fd: int, start: int, size: int, pgoff: int, prot: int = 0,
               flags: int = POPULATE, cmd: int = REMAP) -> None:
    fcntl.ioctl(fd, cmd, struct.pack("<QQQII", start, size, pgoff, prot, flags))


def test_populating_remaps_take_the_native_path(wmount: Path, wdir: Path) -> None:
    obj = wdir / "obj"
    make_object(obj, 64)
    with Window.create(wdir / "win", obj, 16) as w, MapChild(wdir / "win", 16 * P) as c:
        w.remap(0, 1, 40, populate=True)  # the first remap (nonlinear now): Python
        shown = [q.pgoff for q in w.query(0, 16)]
        before = _native(wmount)
        reads = mount_stats(wmount)["session"]["requests"].get("READ", {"count": 0})["count"]
        rng = random.Random(3)
        for _ in range(200):
            i = rng.randrange(16)
            # a page other than the one shown: onto the same page is Python's (the
            # kernel may hold it dirty, no store is pushed: test_notify_store.py)
            pg = rng.choice([p for p in range(64) if p != shown[i]])
            w.remap(i, 1, pg, populate=True)
            shown[i] = pg
            assert c.read(i * P, 16) == page_of(pg)[:16]
        after = _native(wmount)
        assert after["remaps"] - before["remaps"] == 200, _clones(wmount)
        assert after["stores"] - before["stores"] == 200
        assert after["invals"] > before["invals"]  # pages the child had touched
        assert after["write_errors"] == 0
        now = mount_stats(wmount)["session"]["requests"].get("READ", {"count": 0})["count"]
        assert now == reads  # every touch a minor fault
        assert [p.pgoff for p in w.query(0, 16)] == [
            int.from_bytes(c.read(i * P, 8), "little") for i in range(16)]


def test_bad_remap_ioctls_get_an_errno(wmount: Path, wdir: Path) -> None:
    obj = wdir / "obj"
    make_object(obj, 32)
    with Window.create(wdir / "win", obj, 8) as w:
        w.remap(0, 1, 3, populate=True)
        fd = w.fd
        cases = [
            ((0, 0, 1), errno.EINVAL),  # size < page
            ((0, 100, 1), errno.EINVAL),
            ((8 * P, P, 1), errno.EINVAL),  # beyond the window
            ((1 << 63, P, 1), errno.EINVAL),
            (((1 << 64) - P, P, 1), errno.EINVAL),
            ((0, P, (1 << 64) - 1), errno.EINVAL),  # pgoff beyond PTE bits
            ((0, P, 1 << 46), errno.EINVAL),
            ((0, P, 1, 1), errno.EINVAL),  # prot without MAP_CHGPROT
            ((0, P, 1, 0, 0x4), errno.EINVAL),  # unknown flag
        ]
        for args, want in cases:
            with pytest.raises(OSError) as ei:
                _remap_raw(fd, *args)
            assert ei.value.errno == want, args
        with pytest.raises(OSError) as ei:  # wrong size in the command number
            fcntl.ioctl(fd, REMAP + (8 << 16), bytes(40))
        assert ei.value.errno == errno.EINVAL
        ro = os.open(wdir / "win", os.O_RDONLY)
        try:
            with pytest.raises(OSError) as ei:
                _remap_raw(ro, P, P, 5)
            assert ei.value.errno == errno.EBADF
        finally:
            os.close(ro)
        # an unaligned start is rounded down, as remap_file_pages(2) does
        _remap_raw(fd, P + 123, P, 9)
        assert w.query(1, 1)[0].pgoff == 9
        n = _native(wmount)["remaps"]
        w.remap(2, 1, 11, populate=True)  # still alive, still native
        assert _native(wmount)["remaps"] == n + 1
        assert w.pread(2 * P, 16) == page_of(11)[:16]


_READER = textwrap.dedent("""
    import os, sys, random, time
    fd = os.open(sys.argv[1], os.O_RDONLY)
    npages, until = int(sys.argv[2]), time.monotonic() + float(sys.argv[3])
    rng, n, torn = random.Random(7), 0, 0
    while time.monotonic() < until:
        i = rng.randrange(npages)
        try:
            b = os.pread(fd, 4096, i * 4096)
        except OSError as e:
            assert e.errno == 5, e  # EIO: the page shows a page past the object's end
            continue
        if b and b != b[:16] * 256:
            torn += 1
        n += 1
    print(n, torn, flush=True)
""")


def test_remaps_race_reads_writes_and_truncates(wmount: Path, wdir: Path) -> None:
    """Native remaps while another process reads the window, this process rewrites
    object pages (write(2)) and truncates the object down and back up: no read sees a
    torn page, the daemon stays up, and afterwards every window page shows exactly
    the object page its page table names (or EIO past the end)."""
    npages, nobj = 64, 256
    obj = wdir / "obj"
    make_object(obj, nobj)
    ofd = os.open(obj, os.O_RDWR)
    stop = threading.Event()
    errors: list[BaseException] = []

    def churn() -> None:
        rng = random.Random(5)
        gen = 2
        try:
            while not stop.is_set():
                p = rng.randrange(nobj)
                os.pwrite(ofd, page_of(p, gen), p * P)
                if rng.random() < 0.05:
                    os.ftruncate(ofd, (nobj // 2) * P)
                    os.ftruncate(ofd, nobj * P)  # the upper half comes back as holes
                    for q in range(nobj // 2, nobj, 7):
                        os.pwrite(ofd, page_of(q, gen), q * P)
                gen += 1
        except BaseException as e:  # reported by the test
            errors.append(e)

    with Window.create(wdir / "win", obj, npages) as w:
        w.remap(0, 1, 1, populate=True)
        before = _native(wmount)["remaps"]
        reader = subprocess.Popen([sys.executable, "-c", _READER, str(wdir / "win"),
                                   str(npages), "3"], stdout=subprocess.PIPE, text=True)
        t = threading.Thread(target=churn)
        t.start()
        try:
            rng = random.Random(9)
            deadline = time.monotonic() + 3
            while time.monotonic() < deadline:
                w.remap(rng.randrange(npages), 1, rng.randrange(nobj + 8), populate=True)
        finally:
            stop.set()
            t.join()
            out, _ = reader.communicate(timeout=60)
            os.close(ofd)
        assert not errors, errors
        assert reader.returncode == 0
        n, torn = map(int, out.split())
        assert n > 0 and torn == 0
        assert _native(wmount)["remaps"] > before
        assert _native(wmount)["read"]["reads"] > 0  # the reader's preads, in C
        w.sync()
        size = os.stat(obj).st_size
        with open(obj, "rb") as f:
            for i, pinfo in enumerate(w.query(0, npages)):
                if pinfo.pgoff * P >= size:
                    with pytest.raises(OSError) as ei:
                        w.pread(i * P, P)
                    assert ei.value.errno == errno.EIO
                    continue
                f.seek(pinfo.pgoff * P)
                assert w.pread(i * P, P) == f.read(P), (i, pinfo.pgoff)


def test_launders_take_the_native_path(wmount: Path, wdir: Path) -> None:
    """Stores through a MAP_SHARED mapping of the window, then remaps of the stored
    pages: the kernel writes each back inside the remap's invalidation (the launder),
    the engine answers it, and every stored byte lands in the object page the window
    page showed when it was stored -- checked against a model after munmap and sync."""
    _launder_model(wmount, wdir)


def test_launders_with_two_readers(tmp_path: Path) -> None:
    """The same with ``-o readers=2``: a launder read by the second reader is answered
    on that reader's cloned fd (the kernel takes a reply only there)."""
    from tests.support.mounts import shmfs_mount

    with shmfs_mount("readers=2") as mnt:
        d = mnt / "d"
        d.mkdir()
        _launder_model(mnt, d)


def _launder_model(wmount: Path, wdir: Path) -> None:
    nobj, npages = 64, 16
    obj = wdir / "obj"
    make_object(obj, nobj)
    model = [bytearray(page_of(p)) for p in range(nobj)]
    with Window.create(wdir / "win", obj, npages) as w, \
            MapChild(wdir / "win", npages * P) as c:
        w.remap(0, 1, 40, populate=True)  # the first remap (nonlinear now): Python
        shown = {i: q.pgoff for i, q in enumerate(w.query(0, npages))}
        before = _native(wmount)
        rng = random.Random(11)
        for step in range(300):
            i = rng.randrange(npages)
            free = sorted(set(range(nobj)) - set(shown.values()))  # no aliases: exact model
            pg = rng.choice(free)
            w.remap(i, 1, pg, populate=True)
            shown[i] = pg
            assert c.read(i * P, 16) == bytes(model[pg][:16])
            if rng.random() < 0.5:
                data = struct.pack("<QQ", 0xC0FFEE, step)
                c.store(i * P + 32, data)
                model[pg][32:48] = data
        after = _native(wmount)
        assert c.munmap() == 0  # the last stores are written back now
        w.sync()
    assert after["launders"] - before["launders"] > 50, _clones(wmount)
    assert after["launder_reply_errors"] == 0 and after["write_errors"] == 0
    with open(obj, "rb") as f:
        got = f.read()
    for p in range(nobj):
        assert got[p * P:(p + 1) * P] == bytes(model[p]), p


def _churn_object(ofd: int, nobj: int, seed: int, gen: int, stop: threading.Event,
                  errors: list[BaseException]) -> None:
    """Rewrite random object pages (generation ``gen``) and now and then truncate the
    object to half and back, until ``stop``; a failure goes to ``errors``."""
    rng = random.Random(seed)
    try:
        while not stop.is_set():
            p = rng.randrange(nobj)
            os.pwrite(ofd, page_of(p, gen), p * P)
            if rng.random() < 0.05:
                os.ftruncate(ofd, (nobj // 2) * P)
                os.ftruncate(ofd, nobj * P)
    except BaseException as e:  # reported by the test
        errors.append(e)


def test_launders_race_object_writes_and_truncates(wmount: Path, wdir: Path) -> None:
    """Stores and remaps (native launders) while another thread rewrites and truncates
    the object: the daemon stays up and answers, the launders it took are counted,
    and afterwards every window page shows exactly the object page its table names."""
    npages, nobj = 32, 128
    obj = wdir / "obj"
    make_object(obj, nobj)
    ofd = os.open(obj, os.O_RDWR)
    stop = threading.Event()
    errors: list[BaseException] = []

    def churn() -> None:
        _churn_object(ofd, nobj, 6, 3, stop, errors)

    with Window.create(wdir / "win", obj, npages) as w:
        w.remap(0, 1, 1, populate=True)
        before = _native(wmount)["launders"]
        t = threading.Thread(target=churn)
        with MapChild(wdir / "win", npages * P) as c:
            # one launder before the race: the race's loop may stop at its first
            # store (SIGBUS, a truncate in the way) before any remap launders
            c.store(64, b"\xdd" * 16)
            w.remap(0, 1, 2, populate=True)
            assert _native(wmount)["launders"] > before
            t.start()
            try:
                rng = random.Random(8)
                deadline = time.monotonic() + 3
                while time.monotonic() < deadline:
                    i = rng.randrange(npages)
                    w.remap(i, 1, rng.randrange(nobj), populate=True)
                    try:
                        c.store(i * P + 64, b"\xee" * 16)
                    except AssertionError:  # SIGBUS: the page is past a truncated end
                        break
            finally:
                stop.set()
                t.join()
                os.close(ofd)
        assert not errors, errors
        assert _native(wmount)["launders"] > before
        try:
            w.sync()
        except OSError as e:  # a store whose page a truncate took: reported once, as
            assert e.errno == errno.EIO  # a write-back past a file's end is
        w.sync()
        size = os.stat(obj).st_size
        with open(obj, "rb") as f:
            for i, pinfo in enumerate(w.query(0, npages)):
                if pinfo.pgoff * P >= size:
                    continue
                f.seek(pinfo.pgoff * P)
                assert w.pread(i * P, P) == f.read(P), (i, pinfo.pgoff)


def test_launder_attack_read_only_window_user(tmp_path: Path) -> None:
    """An unprivileged user on an allow_other mount who may only read a window (0644)
    gets no write-back into its object: no writable shared mapping, no writable
    descriptor -- and so no launder, native or not, changes the object."""
    from tests.live.helpers import as_user
    from tests.support.mounts import shmfs_mount

    with shmfs_mount("allow_other,mode=1777") as mnt:
        obj = mnt / "obj"
        make_object(obj, 8)
        os.chmod(obj, 0o600)
        with Window.create(mnt / "win", obj, 4) as w, MapChild(mnt / "win", 4 * P) as c:
            os.chmod(mnt / "win", 0o644)
            w.remap(0, 1, 5, populate=True)
            w.remap(1, 1, 6, populate=True)
            c.store(P + 16, b"root's store....")  # root's own launder, for contrast
            w.remap(1, 1, 7, populate=True)
            n = _native(mnt)["launders"]

            def attack() -> object:
                import mmap

                fd = os.open(mnt / "win", os.O_RDONLY)
                try:
                    try:
                        mmap.mmap(fd, 4 * P, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
                        return "mapped writable"
                    except PermissionError:
                        pass
                    try:
                        os.pwrite(fd, b"x" * P, 0)
                        return "wrote"
                    except OSError as e:
                        assert e.errno == errno.EBADF
                    return "refused"
                finally:
                    os.close(fd)

            assert as_user(65534, 65534, attack) == ("ok", "refused")
            # READ (in C when the page is present): exactly what open(2) grants
            reads = _native(mnt)["read"]["reads"]
            assert as_user(65534, 65534, lambda: os.pread(
                os.open(mnt / "win", os.O_RDONLY), 16, 0)) == ("ok", page_of(5)[:16])
            os.chmod(mnt / "win", 0o600)
            assert as_user(65534, 65534, lambda: os.open(mnt / "win", os.O_RDONLY)) == (
                "errno", errno.EACCES)
            assert _native(mnt)["read"]["reads"] >= reads
            assert as_user(65534, 65534, lambda: os.open(mnt / "win", os.O_RDWR)) == (
                "errno", errno.EACCES)
            w.remap(0, 1, 2, populate=True)
            assert _native(mnt)["launders"] == n  # nothing was dirtied since
            with open(obj, "rb") as f:
                data = f.read()
            assert data[6 * P + 16:6 * P + 32] == b"root's store...."
            assert data[5 * P:6 * P] == page_of(5)


def test_window_writes_take_the_native_path(wmount: Path, wdir: Path) -> None:
    """pwrite(2) into a window and msync of stores through a mapping: the engine
    stores through the page table (STATS ``wstores``), and the object holds exactly
    the bytes, page for page, where the window showed them."""
    nobj, npages = 64, 16
    obj = wdir / "obj"
    make_object(obj, nobj)
    model = [bytearray(page_of(p)) for p in range(nobj)]
    with Window.create(wdir / "win", obj, npages) as w, \
            MapChild(wdir / "win", npages * P) as c:
        w.remap(0, 1, 40, populate=True)
        rng = random.Random(4)
        shown = {i: q.pgoff for i, q in enumerate(w.query(0, npages))}
        before = _native(wmount)
        for step in range(200):
            i = rng.randrange(npages)
            pg = rng.choice(sorted(set(range(nobj)) - set(shown.values())))
            w.remap(i, 1, pg, populate=True)
            shown[i] = pg
            data = struct.pack("<QQ", 0xBEEF, step)
            if step % 2:
                os.pwrite(w.fd, data, i * P + 48)
            else:
                c.store(i * P + 48, data)
                assert c.msync() == 0  # the write-back: nothing pending
            model[pg][48:64] = data
            assert w.pread(i * P + 48, 16) == data
        after = _native(wmount)
        assert c.munmap() == 0
        w.sync()
    assert after["wstores"] - before["wstores"] > 150, _clones(wmount)
    assert after["launder_reply_errors"] == 0
    with open(obj, "rb") as f:
        got = f.read()
    for p in range(nobj):
        assert got[p * P:(p + 1) * P] == bytes(model[p]), p


_WRITER = textwrap.dedent("""
    import os, sys, random, time
    fd = os.open(sys.argv[1], os.O_RDWR)
    npages, until = int(sys.argv[2]), time.monotonic() + float(sys.argv[3])
    rng, n = random.Random(17), 0
    while time.monotonic() < until:
        i = rng.randrange(npages)
        try:
            os.pwrite(fd, bytes([n & 255]) * 512, i * 4096 + 1024)
        except OSError as e:
            assert e.errno in (5, 28), e  # EIO past the object's end
        n += 1
    print(n, flush=True)
""")


def test_window_writes_race_remaps_and_truncates(wmount: Path, wdir: Path) -> None:
    """Another process pwrites into the window while this one remaps (native) and
    the object is rewritten and truncated: the daemon stays up, the engine took
    writes, and afterwards every window page reads as the object page it shows."""
    npages, nobj = 32, 128
    obj = wdir / "obj"
    make_object(obj, nobj)
    ofd = os.open(obj, os.O_RDWR)
    stop = threading.Event()
    errors: list[BaseException] = []

    def churn() -> None:
        _churn_object(ofd, nobj, 2, 4, stop, errors)

    with Window.create(wdir / "win", obj, npages) as w:
        for i in range(npages):
            w.remap(i, 1, i, populate=True)
        before = _native(wmount)["wstores"]
        writer = subprocess.Popen([sys.executable, "-c", _WRITER, str(wdir / "win"),
                                   str(npages), "3"], stdout=subprocess.PIPE, text=True)
        t = threading.Thread(target=churn)
        t.start()
        try:
            rng = random.Random(12)
            deadline = time.monotonic() + 3
            while time.monotonic() < deadline:
                w.remap(rng.randrange(npages), 1, rng.randrange(nobj), populate=True)
        finally:
            stop.set()
            t.join()
            out, _ = writer.communicate(timeout=60)
            os.close(ofd)
        assert not errors, errors
        assert writer.returncode == 0 and int(out) > 0
        assert _native(wmount)["wstores"] > before
        w.sync()
        size = os.stat(obj).st_size
        with open(obj, "rb") as f:
            for i, pinfo in enumerate(w.query(0, npages)):
                if pinfo.pgoff * P >= size:
                    continue
                f.seek(pinfo.pgoff * P)
                assert w.pread(i * P, P) == f.read(P), (i, pinfo.pgoff)


def test_window_reads_take_the_native_path(wmount: Path, wdir: Path) -> None:
    """A page the remap made present but the kernel no longer caches (dropped here
    with POSIX_FADV_DONTNEED), and a page remapped without populating (a file PTE,
    as uml_physmem's after REMAPV/MPROTECT): its READ is answered in C -- faulting
    the page in for the second -- with the bytes of the page shown."""
    nobj, npages = 64, 16
    obj = wdir / "obj"
    make_object(obj, nobj)
    with Window.create(wdir / "win", obj, npages) as w:
        w.remap(0, 1, 40, populate=True)
        before = _native(wmount)["read"]["reads"]
        rng = random.Random(21)
        for _ in range(100):
            i, pg = rng.randrange(npages - 1), rng.randrange(nobj - 1)
            w.remap(i, 2, pg, populate=True)
            os.posix_fadvise(w.fd, 0, 0, os.POSIX_FADV_DONTNEED)
            assert w.pread(i * P + 8, P) == page_of(pg)[8:] + page_of(pg + 1)[:8]
        assert _native(wmount)["read"]["reads"] - before >= 90, _clones(wmount)
        # remapped without populating: a file PTE, faulted in by the READ, in C
        before = _native(wmount)["read"]["reads"]
        with MapChild(wdir / "win", npages * P) as c:
            for step in range(100):
                i, pg = rng.randrange(npages), rng.randrange(nobj)
                _remap_raw(w.fd, i * P, P, pg, flags=0x10000)  # MAP_NONBLOCK
                if step % 2:
                    assert w.pread(i * P, 32) == page_of(pg)[:32]
                else:
                    assert c.read(i * P, 32) == page_of(pg)[:32]
        assert _native(wmount)["read"]["reads"] - before >= 50, _clones(wmount)


def test_chgprot_remaps_and_mprotects_take_the_native_path(wmount: Path, wdir: Path) -> None:
    """uml_physmem's page-table updates: MAP_CHGPROT remaps and one-page MPROTECTs go
    through the engine (STATS ``remaps``/``mprotects``), the mapping shows what the
    page table says, QUERY reports each page's own protection, and a store into a
    page made read-only is refused as the protection says (EACCES)."""
    from mount.winapi.client import PROT_READ, PROT_WRITE

    rw = PROT_READ | PROT_WRITE
    obj = wdir / "obj"
    make_object(obj, 64)
    with Window.create(wdir / "win", obj, 16) as w, MapChild(wdir / "win", 16 * P) as c:
        w.remap(0, 1, 40, prot=rw, populate=True)  # nonlinear, VM_MANYPROTS: Python
        before = _native(wmount)
        rng = random.Random(5)
        shown, prots = {}, {}
        for _ in range(300):
            i, pg = rng.randrange(16), rng.randrange(64)
            if rng.random() < 0.6 or i not in shown:
                w.remap(i, 1, pg, prot=rw, populate=True)
                shown[i], prots[i] = pg, rw
            else:
                prot = rw if prots[i] == PROT_READ else PROT_READ
                w.protect(i, 1, prot)
                prots[i] = prot
            assert c.read(i * P, 16) == page_of(shown[i])[:16]
        after = _native(wmount)
        assert after["mprotects"] - before["mprotects"] > 50, _clones(wmount)
        assert after["remaps"] - before["remaps"] > 200, _clones(wmount)
        assert after["write_errors"] == 0
        q = {k: p for k, p in enumerate(w.query(0, 16)) if k in shown}
        assert {k: p.pgoff for k, p in q.items()} == shown
        assert {k: p.prot for k, p in q.items()} == prots
        ro = next((k for k, p in prots.items() if p == PROT_READ), None)
        if ro is None:
            ro = 3
            w.remap(ro, 1, 9, prot=rw, populate=True)
            w.protect(ro, 1, PROT_READ)
        with pytest.raises(PermissionError):
            os.pwrite(w.fd, b"x" * 8, ro * P)


def test_chgprot_and_mprotect_attack_read_only_user(tmp_path: Path) -> None:
    """An unprivileged user on an allow_other mount gains no write through MAP_CHGPROT
    or MPROTECT, with the engine's paths hot: (1) on root's window, which it may only
    read, both ioctls are refused (EBADF: a read-only descriptor, as open(2) grants);
    (2) on its own window over an object it may only read (attached PROT_READ), a
    protection with PROT_WRITE is refused (EACCES) and write(2) stays refused; the
    object is unchanged."""
    from mount.winapi.client import PROT_READ, PROT_WRITE
    from tests.live.helpers import as_user

    rw = PROT_READ | PROT_WRITE
    with readonly_for_others(rw) as (mnt, obj, w):
        w.remap(1, 1, 6, prot=rw, populate=True)  # the engine's
        w.protect(1, 1, PROT_READ)
        assert _native(mnt)["mprotects"] >= 1, _clones(mnt)

        def on_roots_window() -> object:
            fd = os.open(mnt / "win", os.O_RDONLY)
            out = []
            try:
                for call in (lambda: _remap_raw(fd, 0, P, 5, rw, POPULATE | 0x20000),
                             lambda: Window(fd, owns_fd=False).protect(1, 1, rw)):
                    try:
                        call()
                        out.append("done")
                    except OSError as e:
                        out.append(e.errno)
            finally:
                os.close(fd)
            return out

        assert as_user(65534, 65534, on_roots_window) == ("ok", [errno.EBADF] * 2)

        def own_window() -> object:
            wpath = mnt / "mine"
            with Window.create(wpath, obj, 4, prot=PROT_READ) as mw:
                mw.remap(0, 1, 2, prot=PROT_READ, populate=True)  # Python
                mw.remap(1, 1, 3, prot=PROT_READ, populate=True)  # the engine's
                mw.protect(1, 1, 0)
                mw.protect(1, 1, PROT_READ)
                out = []
                for call in (lambda: mw.remap(2, 1, 4, prot=rw, populate=True),
                             lambda: mw.protect(1, 1, rw),
                             lambda: os.pwrite(mw.fd, b"y" * 8, P)):
                    try:
                        call()
                        out.append("done")
                    except OSError as e:
                        out.append(e.errno)
                return out, os.pread(mw.fd, 8, P)

        n = _native(mnt)["mprotects"]
        got = as_user(65534, 65534, own_window)
        assert got[0] == "ok", got
        errs, data = got[1]
        assert errs[:2] == [errno.EACCES, errno.EACCES], errs
        assert errs[2] == errno.EACCES, errs  # the window was attached PROT_READ
        assert data == page_of(3)[:8]
        # the user's legal MPROTECTs were native
        assert _native(mnt)["mprotects"] >= n + 2, _clones(mnt)
