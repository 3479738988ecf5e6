"""A simulated UML guest process: one host process that owns one window onto physmem.

The controller (scripts/uml_physmem.py) schedules guests one at a time, as a
uniprocessor UML kernel does, by sending a *time slice* (a list of operations)
over a pipe; the guest runs them in order and answers with counters and the
first error.  Expected contents travel with each load, so the guest checks
every byte itself and the oracle stays in the controller.

Two backends, identical operations:

* ``ShmfsGuest``: a shmfs window file -- REMAP/MPROTECT/MADVISE ioctls, loads
  and stores by pread/pwrite and by a MAP_SHARED mmap of the window (each mmap
  store is written back with msync(MS_SYNC), the point at which docs/windows.md
  guarantees the object and other windows see it).
* ``TmpfsGuest``: the kernel's own remap_file_pages emulation on a tmpfs -- the
  guest's address space is an mmap of the object, every remap an
  ``mmap(MAP_FIXED)`` of one page at the frame's offset, every protect an
  ``mprotect``, every free ``madvise(MADV_REMOVE)`` or a punch; loads and stores
  are memory accesses (the emulation has no pread path).

Operations (tuples): ``("remap", i, frame, prot, populate)``, ``("protect", i, prot)``,
``("load", i, via, frame, version)``, ``("store", i, via, frame, version)``,
``("free", i, how, frame)``, ``("deny", i, kind)`` (an access the protection must
refuse: EACCES; shmfs only), ``("query", first, [(frame, prot), ...])`` (shmfs only),
``("remove_all",)`` (MADV_REMOVE of the whole window; shmfs only).
"""

from __future__ import annotations

import errno
import mmap
import os
import resource
import signal
import time
import traceback
from multiprocessing.connection import Connection
from typing import Any

from mount.winapi.client import (
    MADV_REMOVE,
    MAP_CHGPROT,
    PAGE_SIZE,
    PROT_READ,
    PROT_WRITE,
    Window,
)
from windowlib import sysmm
from windowlib.pattern import describe, expected

RW = PROT_READ | PROT_WRITE
MAP_POPULATE = 0x8000


class Mismatch(Exception):
    """A load did not return what the oracle says the page holds."""


class ShmfsGuest:
    """A guest whose address space is a shmfs window."""

    kind = "shmfs"

    def __init__(self, window: str, physmem: str, refresh_after_deny: bool = True) -> None:
        self.refresh_after_deny = refresh_after_deny
        self.w = Window.open(window)
        self.phys = os.open(physmem, os.O_RDWR)
        os.posix_fadvise(self.w.fd, 0, 0, os.POSIX_FADV_RANDOM)  # no readahead
        self.m = self.w.mmap()
        self.m.madvise(mmap.MADV_RANDOM)

    def remap(self, i: int, frame: int, prot: int, populate: bool) -> None:
        self.w.remap(i, 1, frame, prot=prot, populate=populate)

    def second_look(self, i: int, frame: int) -> str:
        """Where a wrong page lives: the window by pread and mmap, the object by pread
        and by O_DIRECT (past the kernel's page cache), QUERY's view of the page."""
        obj = os.pread(self.phys, PAGE_SIZE, frame * PAGE_SIZE)
        out = [f"window pread {describe(self.w.pread(i * PAGE_SIZE, PAGE_SIZE), PAGE_SIZE)}",
               f"window mmap {describe(self.m[i * PAGE_SIZE:(i + 1) * PAGE_SIZE], PAGE_SIZE)}",
               f"physmem pread {describe(obj, PAGE_SIZE)}"]
        try:
            fd = os.open(f"/proc/self/fd/{self.phys}", os.O_RDONLY | os.O_DIRECT)
            try:
                buf = mmap.mmap(-1, PAGE_SIZE)
                os.preadv(fd, [buf], frame * PAGE_SIZE)
                out.append(f"physmem O_DIRECT {describe(bytes(buf), PAGE_SIZE)}")
            finally:
                os.close(fd)
        except OSError as e:
            out.append(f"O_DIRECT: {e}")
        q = self.w.query(i, 1)[0]
        out.append(f"QUERY pgoff {q.pgoff} flags {q.flags:#x} prot {q.prot}")
        return "; ".join(out)

    def remap_batch(self, ops: list[tuple[int, int, int, bool]]) -> None:
        """Several (i, frame, prot, populate) remaps in one REMAPV, as remap() each."""
        self.w.remapv_bytes([(i * PAGE_SIZE, PAGE_SIZE, frame, prot,
                              MAP_CHGPROT | (MAP_POPULATE if populate else 0))
                             for i, frame, prot, populate in ops])

    def protect(self, i: int, prot: int) -> None:
        self.w.protect(i, 1, prot)

    def load(self, i: int, via: str) -> bytes:
        if via == "pread":
            return self.w.pread(i * PAGE_SIZE, PAGE_SIZE)
        return self.m[i * PAGE_SIZE:(i + 1) * PAGE_SIZE]

    def store(self, i: int, via: str, data: bytes) -> None:
        off = i * PAGE_SIZE
        if via == "pwrite":
            if self.w.pwrite(off, data) != len(data):
                raise OSError(errno.EIO, "short pwrite")
        else:
            self.m[off:off + PAGE_SIZE] = data
            self.m.flush(off, PAGE_SIZE)  # msync(MS_SYNC): the store reaches the object

    def free(self, i: int, how: str, frame: int) -> None:
        if how == "madvise":
            self.w.madvise(i, 1, MADV_REMOVE)
        else:
            sysmm.punch(self.phys, frame * PAGE_SIZE, PAGE_SIZE)

    def deny(self, i: int, kind: str) -> bool:
        """An access the page's protection forbids must fail with EACCES.

        A refused pwrite leaves its bytes in the kernel's page-cache folio of the
        window page (FUSE copies them in before sending WRITE and only clears the
        folio's uptodate bit on error); a process whose page table already maps that
        folio (fault-around maps cached neighbours) keeps seeing those bytes until
        the page is read again or invalidated, and the daemon does not invalidate
        it.  Unless told not to, the guest reads the page back once to refresh it."""
        try:
            if kind == "load":
                self.w.pread(i * PAGE_SIZE, PAGE_SIZE)
            else:
                self.w.pwrite(i * PAGE_SIZE, b"\xee" * PAGE_SIZE)
        except PermissionError:
            if kind == "store" and self.refresh_after_deny:
                self.w.pread(i * PAGE_SIZE, PAGE_SIZE)
            return True
        raise Mismatch(f"{kind} of protected window page {i} was not refused with EACCES")

    def query(self, first: int, want: list[tuple[int, int]]) -> bool:
        got = self.w.query(first, len(want))
        for p, (frame, prot) in zip(got, want, strict=True):
            if p.pgoff != frame or p.prot != prot:
                raise Mismatch(f"QUERY page {p.index}: pgoff {p.pgoff} prot {p.prot}, "
                               f"oracle says frame {frame} prot {prot}")
        return True

    def remove_all(self) -> None:
        self.w.madvise(0, self.w.npages, MADV_REMOVE)

    def close(self) -> None:
        self.m.close()
        self.w.close()
        os.close(self.phys)


class TmpfsGuest:
    """A guest whose address space is an mmap of a tmpfs object, remapped by MAP_FIXED."""

    kind = "tmpfs"

    def __init__(self, physmem: str, pgoff: int, npages: int) -> None:
        self.phys = os.open(physmem, os.O_RDWR)
        self.size = npages * PAGE_SIZE
        self.base = sysmm.mmap(None, self.size, RW, sysmm.MAP_SHARED, self.phys,
                               pgoff * PAGE_SIZE)

    def remap(self, i: int, frame: int, prot: int, populate: bool) -> None:
        flags = sysmm.MAP_SHARED | sysmm.MAP_FIXED | (MAP_POPULATE if populate else 0)
        sysmm.mmap(self.base + i * PAGE_SIZE, PAGE_SIZE, prot, flags, self.phys,
                   frame * PAGE_SIZE)

    def protect(self, i: int, prot: int) -> None:
        sysmm.mprotect(self.base + i * PAGE_SIZE, PAGE_SIZE, prot)

    def load(self, i: int, via: str) -> bytes:
        return sysmm.load(self.base + i * PAGE_SIZE, PAGE_SIZE)

    def store(self, i: int, via: str, data: bytes) -> None:
        sysmm.store(self.base + i * PAGE_SIZE, data)

    def free(self, i: int, how: str, frame: int) -> None:
        if how == "madvise":
            sysmm.madvise(self.base + i * PAGE_SIZE, PAGE_SIZE, sysmm.MADV_REMOVE)
        else:
            sysmm.punch(self.phys, frame * PAGE_SIZE, PAGE_SIZE)

    def second_look(self, i: int, frame: int) -> str:
        data = os.pread(self.phys, PAGE_SIZE, frame * PAGE_SIZE)
        return f"physmem pread {describe(data, PAGE_SIZE)}"

    def deny(self, i: int, kind: str) -> bool:
        return False  # a refused access here is a SIGSEGV: not exercised

    def query(self, first: int, want: list[tuple[int, int]]) -> bool:
        return False

    def remove_all(self) -> None:
        pass  # madvise(MADV_REMOVE) needs VM_WRITE on every VMA: the object punch does it

    def close(self) -> None:
        sysmm.munmap(self.base, self.size)
        os.close(self.phys)


class SliceError(Exception):
    """Operation ``index`` of a slice failed with ``msg``."""

    def __init__(self, index: int, msg: str) -> None:
        super().__init__(index, msg)
        self.index, self.msg = index, msg


def _run_slice(g: Any, ops: list[tuple[Any, ...]], c: dict[str, float]) -> None:
    k = 0
    while k < len(ops):
        if ops[k][0] == "remap" and hasattr(g, "remap_batch"):
            # consecutive remaps with no access between them are one page-table switch:
            # a guest kernel issues them as one batch (SHMFS_IOC_WIN_REMAPV)
            n = 1
            while k + n < len(ops) and ops[k + n][0] == "remap":
                n += 1
            if n > 1:
                t = time.perf_counter()
                try:
                    g.remap_batch([op[1:] for op in ops[k : k + n]])
                except OSError as e:
                    raise SliceError(k + getattr(e, "done", 0),
                                     f"{type(e).__name__}: {e}") from e
                c["remap_seconds"] += time.perf_counter() - t
                c["remaps"] += n
                c["remap_batches"] += 1
                k += n
                continue
        op = ops[k]
        try:
            _run_op(g, op, c)
        except (Mismatch, OSError) as e:
            raise SliceError(k, f"{type(e).__name__}: {e}") from e
        except Exception as e:
            raise SliceError(k, traceback.format_exc()) from e
        k += 1


def _run_op(g: Any, op: tuple[Any, ...], c: dict[str, float]) -> None:
    """Run one operation on guest g, counting it in c; loads are verified here."""
    kind = op[0]
    if kind == "load":
        _, i, via, frame, ver = op
        data = g.load(i, via)
        if data != expected(frame, ver, PAGE_SIZE):
            raise Mismatch(f"load via {via} of window page {i} (frame {frame}): expected "
                           f"{describe(expected(frame, ver, PAGE_SIZE), PAGE_SIZE)}, got "
                           f"{describe(data, PAGE_SIZE)}; {g.second_look(i, frame)}")
        c["loads"] += 1
        c["verified_bytes"] += PAGE_SIZE
    elif kind == "store":
        _, i, via, frame, ver = op
        g.store(i, via, expected(frame, ver, PAGE_SIZE))
        c["stores"] += 1
    elif kind == "remap":
        t = time.perf_counter()
        g.remap(op[1], op[2], op[3], op[4])
        c["remap_seconds"] += time.perf_counter() - t
        c["remaps"] += 1
    elif kind == "protect":
        g.protect(op[1], op[2])
        c["protects"] += 1
    elif kind == "free":
        g.free(op[1], op[2], op[3])
        c["frees"] += 1
    elif kind == "deny":
        c["denied"] += g.deny(op[1], op[2])
    elif kind == "query":
        c["queries"] += g.query(op[1], op[2])
    elif kind == "remove_all":
        g.remove_all()
    else:
        raise ValueError(f"unknown op {op!r}")


COUNTERS = ("loads", "stores", "remaps", "remap_batches", "remap_seconds", "protects",
            "frees", "denied", "queries", "verified_bytes", "ops")


def serve(conn: Connection, kind: str, args: tuple[Any, ...]) -> None:
    """Worker main loop: build the guest, run slices until ``None``, report counters."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the controller handles Ctrl-C
    g = ShmfsGuest(*args) if kind == "shmfs" else TmpfsGuest(*args)
    c: dict[str, float] = dict.fromkeys(COUNTERS, 0.0)
    flt0 = resource.getrusage(resource.RUSAGE_SELF)
    try:
        while True:
            ops = conn.recv()
            if ops is None:
                break
            err = None
            try:
                _run_slice(g, ops, c)
                c["ops"] += len(ops)
            except SliceError as e:  # reported to the controller, which stops the run
                err = (e.index, e.msg)
            conn.send(err)
    finally:
        g.close()
        flt1 = resource.getrusage(resource.RUSAGE_SELF)
        c["minflt"] = flt1.ru_minflt - flt0.ru_minflt
        c["majflt"] = flt1.ru_majflt - flt0.ru_majflt
        conn.send(c)
        conn.close()
