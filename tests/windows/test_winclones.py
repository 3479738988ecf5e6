"""Window requests read by clone readers are answered by the C window engine.

With two 1 MiB streamers running the traffic is mixed and the clone readers stay up
(SHMFS_CLONES_STAY=1, the default, windowed mounts included: docs/decisions.md,
"Clone readers hand window requests to the engine"), so some of this process's
window REMAPs, MPROTECTs, READs and WRITEs are read on a clone fd. Each kind must
then be answered by the engine, its reply on the clone's fd (the kernel takes it
only there: a reply on the main fd would be lost and the caller would hang), which
the session counts in ``clone_window`` (per opcode) and the engine's writer in
``clone_replies``. Which reader reads a request is the kernel's choice, so each
phase runs until its kind has been answered through a clone ``NEED`` times -- at
most ``TRIES`` requests, then it fails -- and every request's bytes are checked
against the object, whichever reader read it.

An unprivileged user's attack runs the same way: its window requests, read by
clone readers too (counted), get exactly what open(2) grants.
"""

from __future__ import annotations

import errno
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from mount.server import winfast
from mount.winapi.client import PROT_READ, PROT_WRITE, Window, mount_stats
from tests.support import streams
from tests.support.mounts import shmfs_mount
from tests.windows.helpers import MapChild, P, make_object, page_of

pytestmark = [pytest.mark.mount,
              pytest.mark.skipif(not winfast.available(),
                                 reason="the C extension is not built (scripts/bootstrap.sh)")]

NEED = 5  # answers through a clone reader each phase must see
TRIES = 4000  # requests a phase may take to see them (a few hundred, typically)
RW = PROT_READ | PROT_WRITE

# A streamer: 1 MiB pwrites over its own 16 MiB of ``big`` until ``stop`` exists (each
# round's stat(2) is a small request of another process: mixed traffic).
_STREAMER = r"""
import os, sys
path, stop, tag = sys.argv[1], sys.argv[2], int(sys.argv[3])
fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o644)
r = 0
while not os.path.exists(stop):
    rec = bytes([tag * 16 + r % 16]) * (1 << 20)
    assert os.pwrite(fd, rec, (tag * 16 + r % 16) << 20) == 1 << 20
    r += 1
    if r == 1:
        print("started", flush=True)
os.close(fd)
print(r, flush=True)
"""


@contextmanager
def _streams(mnt: Path) -> Iterator[None]:
    """Two streaming writers for the whole block: each has written its first record
    before the block starts (a Python start-up can take longer than a phase under
    load, and a phase without the streams has no mixed traffic for the clones)."""
    stop = mnt / "stop"
    ps = [subprocess.Popen([sys.executable, "-c", _STREAMER, str(mnt / "big"), str(stop),
                            str(t)], stdout=subprocess.PIPE) for t in (0, 1)]
    try:
        deadline = time.monotonic() + 120
        for p in ps:
            assert streams._line(p, deadline) == b"started\n", p.args
        yield
    finally:
        stop.touch()
        outs = [p.communicate(timeout=120)[0] for p in ps]
        stop.unlink()
    assert [p.returncode for p in ps] == [0, 0], outs
    assert all(int(o) > 0 for o in outs), outs  # the count, after "started"


def _clone(mnt: Path) -> dict:
    s = mount_stats(mnt)["session"]
    return {**s["clone_window"], "replies": s["winfast"]["clone_replies"]}


def _until_clone(mnt: Path, kind: str, step) -> int:
    """Call ``step(k)`` for k = 0, 1, ... until ``NEED`` requests of ``kind`` were read
    by a clone reader and answered by the engine; the number of steps taken."""
    base = _clone(mnt)[kind]
    for k in range(TRIES):
        step(k)
        if k % 16 == 15 and _clone(mnt)[kind] - base >= NEED:
            return k + 1
    pytest.fail(f"{TRIES} steps, {_clone(mnt)[kind] - base} {kind}s answered through a "
                f"clone reader (wanted {NEED}): {mount_stats(mnt)['session']}")


def test_clone_read_window_requests_are_the_engines() -> None:
    nobj, npages = 64, 16
    with shmfs_mount("size=256m") as mnt:
        obj = mnt / "obj"
        make_object(obj, nobj)
        model = [bytearray(page_of(p)) for p in range(nobj)]
        with Window.create(mnt / "win", obj, npages) as w, \
                MapChild(mnt / "win", npages * P) as c:
            w.remap(0, 1, 40, prot=RW, populate=True)  # nonlinear now: Python's
            shown = {i: q.pgoff for i, q in enumerate(w.query(0, npages))}
            prots = {i: RW for i in shown}
            e0 = mount_stats(mnt)["session"]["winfast"]
            with _streams(mnt):
                # REMAPs (populating, MAP_CHGPROT), each checked through the mapping
                def remap(k: int) -> None:
                    i = k % npages
                    pg = sorted(set(range(nobj)) - set(shown.values()))[k % 7]
                    w.remap(i, 1, pg, prot=RW, populate=True)
                    shown[i], prots[i] = pg, RW
                    assert c.read(i * P, 16) == bytes(model[pg][:16]), (k, i, pg)

                n_remap = _until_clone(mnt, "ioctl", remap)
                e1 = mount_stats(mnt)["session"]["winfast"]
                # one-page MPROTECTs: the only IOCTLs of this phase
                cw = _clone(mnt)["ioctl"]

                def protect(k: int) -> None:
                    i = k % npages
                    prots[i] = PROT_READ if prots[i] == RW else RW
                    w.protect(i, 1, prots[i])
                    assert c.read(i * P, 16) == bytes(model[shown[i]][:16]), (k, i)

                n_prot = _until_clone(mnt, "ioctl", protect)
                e2 = mount_stats(mnt)["session"]["winfast"]
                assert _clone(mnt)["ioctl"] - cw >= NEED
                assert e2["mprotects"] - e1["mprotects"] >= NEED
                for i in range(npages):  # writable again for the WRITEs
                    if prots[i] != RW:
                        w.protect(i, 1, RW)
                        prots[i] = RW

                # window READs of pages the kernel no longer caches
                def read(k: int) -> None:
                    i = k % npages
                    os.posix_fadvise(w.fd, 0, 0, os.POSIX_FADV_DONTNEED)
                    assert w.pread(i * P + 8, 64) == bytes(model[shown[i]][8:72]), (k, i)

                n_read = _until_clone(mnt, "read", read)

                # window WRITEs (pwrite through the page table), read back after
                def write(k: int) -> None:
                    i = k % npages
                    data = k.to_bytes(8, "little") * 2
                    assert os.pwrite(w.fd, data, i * P + 256) == 16
                    model[shown[i]][256:272] = data
                    assert w.pread(i * P + 256, 16) == data, (k, i)

                n_write = _until_clone(mnt, "write", write)
            s = mount_stats(mnt)["session"]
            e3 = s["winfast"]
            q = {k: p for k, p in enumerate(w.query(0, npages))}
            assert {k: p.pgoff for k, p in q.items()} == shown
            assert {k: p.prot for k, p in q.items()} == prots
            assert c.munmap() == 0
            w.sync()
        # the engine's writer wrote the clone-read IOCTLs' replies on the clone fds
        assert e3["clone_replies"] - e0["clone_replies"] >= 2 * NEED, e3
        assert e3["remaps"] - e0["remaps"] >= NEED and e3["wstores"] > e0["wstores"]
        assert e3["write_errors"] == 0 and e3["launder_reply_errors"] == 0, e3
        assert s["write_errors"] == 0, s
        assert n_remap and n_prot and n_read and n_write
        got = obj.read_bytes()
        for p in range(nobj):
            assert got[p * P:(p + 1) * P] == bytes(model[p]), p


def test_clone_read_attack_gets_what_open_grants() -> None:
    """On an allow_other mount, with streams running: an unprivileged user repeats,
    on root's window it may only read (0644), a REMAP and an MPROTECT (EBADF: a
    read-only descriptor) and a pread (the bytes shown); and on its own window over
    root's object it may only read (attached PROT_READ), legal MPROTECTs (answered,
    by the engine) and ones asking PROT_WRITE (EACCES). Every repetition gets exactly
    that, while the clone readers read and the engine answers some of them."""
    from tests.live.helpers import as_user

    rounds = 300
    with shmfs_mount("allow_other,mode=1777,size=256m") as mnt:
        obj = mnt / "obj"
        make_object(obj, 8)
        os.chmod(obj, 0o644)
        with Window.create(mnt / "win", obj, 4) as w:
            os.chmod(mnt / "win", 0o644)
            w.remap(0, 1, 5, prot=RW, populate=True)
            w.remap(1, 1, 6, prot=RW, populate=True)

            def attack() -> object:
                import fcntl
                import struct

                fd = os.open(mnt / "win", os.O_RDONLY)
                seen: dict[str, set] = {}

                def note(what: str, call) -> None:
                    try:
                        r = call()
                        seen.setdefault(what, set()).add(("ok", r))
                    except OSError as e:
                        seen.setdefault(what, set()).add(("errno", e.errno))

                try:
                    with Window.create(mnt / "mine", obj, 4, prot=PROT_READ) as mw:
                        mw.remap(0, 1, 2, prot=PROT_READ, populate=True)
                        for k in range(rounds):
                            note("remap root's", lambda: bool(fcntl.ioctl(
                                fd, 0x40205302, struct.pack("<QQQII", P, P, 3, RW,
                                                            0x8000 | 0x20000))))
                            note("protect root's",
                                 lambda: Window(fd, owns_fd=False).protect(0, 1, RW))
                            note("pread root's", lambda: os.pread(fd, 16, 0))
                            note("own remap", lambda k=k: mw.remap(1, 1, 3 + k % 4,
                                                               prot=PROT_READ,
                                                               populate=True))
                            note("own protect none", lambda: mw.protect(1, 1, 0))
                            note("own protect read", lambda: mw.protect(1, 1, PROT_READ))
                            note("own protect write", lambda: mw.protect(1, 1, RW))
                            note("own remap write", lambda: mw.remap(2, 1, 4, prot=RW,
                                                                     populate=True))
                            note("own pwrite", lambda: os.pwrite(mw.fd, b"y" * 8, P))
                            note("own pread", lambda k=k: os.pread(mw.fd, 8, P)
                                 == page_of(3 + k % 4)[:8])
                        return {k: sorted(v, key=repr) for k, v in seen.items()}, \
                            os.pread(mw.fd, 8, P)
                finally:
                    os.close(fd)

            before = _clone(mnt)
            with _streams(mnt):
                got = as_user(65534, 65534, attack)
            after = _clone(mnt)
            assert got[0] == "ok", got
            seen, last = got[1]
            assert seen == {
                "remap root's": [("errno", errno.EBADF)],
                "protect root's": [("errno", errno.EBADF)],
                "pread root's": [("ok", page_of(5)[:16])],
                "own remap": [("ok", None)],
                "own protect none": [("ok", None)],
                "own protect read": [("ok", None)],
                "own protect write": [("errno", errno.EACCES)],
                "own remap write": [("errno", errno.EACCES)],
                "own pwrite": [("errno", errno.EACCES)],
                "own pread": [("ok", True)],  # the page the last remap showed
            }, seen
            assert last == page_of(3 + (rounds - 1) % 4)[:8]
            # the user's legal IOCTLs, some read by clone readers, answered by the engine
            assert after["ioctl"] > before["ioctl"], (before, after)
            assert after["replies"] > before["replies"], (before, after)
            with open(obj, "rb") as f:
                assert f.read() == b"".join(page_of(k) for k in range(8))
