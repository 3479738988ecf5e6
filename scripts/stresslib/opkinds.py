"""Every kind of operation a stress worker performs, and their weights.

An op kind is ``(name, weight, fn)`` with ``fn(worker) -> None``: it draws
all its random parameters first, records them with ``worker.note`` and then
acts on the filesystem *and* on the oracle. A read compares what came back
with the oracle and raises ``Mismatch``; an errno nobody expected propagates
as OSError (the worker stops and reports it). Window ops (remaps, loads,
stores, MADV_REMOVE through a window over an owned file) are in winops.py.

Owned files (``p<proc>/f<i>``): exact oracle. Shared directory (``shared/s<k>``):
every worker races create/link/unlink/rename/exchange over the same few
names. Creates publish a complete record with renameat2(RENAME_NOREPLACE),
renames use NOREPLACE or EXCHANGE, so the number of names changes only by
creates, links and unlinks, which each worker counts; the runner checks the
directory against those counts at the end.
"""

from __future__ import annotations

import errno as E
import mmap
import os
from typing import Any

from stresslib.oracle import (
    FALLOC_FL_KEEP_SIZE,
    FALLOC_FL_PUNCH_HOLE,
    PAGE,
    RENAME_EXCHANGE,
    RENAME_NOREPLACE,
    FileModel,
    Mismatch,
    check_record,
    fallocate,
    new_record,
    renameat2,
)
from stresslib.winops import WINDOW_OPS
from stresslib.worker import OwnedFile, Worker

# --- owned files --------------------------------------------------------------------------------


def op_write(w: Worker) -> None:
    f = w.pick_file()
    off = w.offset(f)
    n = w.length(off)
    data = w.rng.randbytes(n)
    w.note(f"pwrite {f.path} off={off} len={n}")
    done = os.pwrite(f.fd, data, off)
    if done != n:
        raise Mismatch("write", f.path, f"pwrite of {n} bytes at {off} returned {done}")
    f.model.write(off, data)
    w.bytes_written += n


def _read_check(w: Worker, f: OwnedFile, fd: int, off: int, n: int, what: str) -> None:
    got = os.pread(fd, n, off)
    w.verified(f.model.check(got, off, n, f.path, what, fd))


def op_read(w: Worker) -> None:
    f = w.pick_file()
    off = w.offset(f)
    n = w.length(off)
    by_path = w.rng.random() < 0.25
    w.note(f"pread {f.path} off={off} len={n}{' (fresh open by name)' if by_path else ''}")
    if by_path:
        fd = os.open(f.path, os.O_RDONLY)
        try:
            _read_check(w, f, fd, off, n, "read-by-name")
        finally:
            os.close(fd)
    else:
        _read_check(w, f, f.fd, off, n, "read")


def verify_whole(w: Worker, f: OwnedFile, fd: int, what: str = "verify") -> None:
    size = os.fstat(fd).st_size
    if size != f.model.size:
        raise Mismatch(what, f.path, f"st_size {size}, expected {f.model.size}")
    got = os.pread(fd, size + PAGE, 0)
    w.verified(f.model.check(got, 0, size + PAGE, f.path, what, fd))


def op_verify(w: Worker) -> None:
    f = w.pick_file()
    w.note(f"verify whole {f.path} (size {f.model.size})")
    verify_whole(w, f, f.fd)


def _map_range(w: Worker, f: OwnedFile) -> tuple[int, int, int, int] | None:
    """(map_offset, map_length, off, n) of a range inside i_size, or None if empty."""
    size = f.model.size
    if size == 0:
        w.rng.random()  # keep the stream independent of the outcome
        return None
    off = w.rng.randrange(size)
    n = max(1, min(w.length(off), size - off))
    start = off // PAGE * PAGE
    return start, off + n - start, off, n


def op_mmap_store(w: Worker) -> None:
    f = w.pick_file()
    rng = _map_range(w, f)
    if rng is None:
        w.note(f"mmap store {f.path}: empty, skipped")
        return
    start, length, off, n = rng
    data = w.rng.randbytes(n)
    w.note(f"mmap store {f.path} off={off} len={n} (map {start}+{length}), msync")
    with mmap.mmap(f.fd, length, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE,
                   offset=start) as m:
        m[off - start:off - start + n] = data
        m.flush()
    f.model.write(off, data)
    w.bytes_written += n


def op_mmap_load(w: Worker) -> None:
    f = w.pick_file()
    rng = _map_range(w, f)
    if rng is None:
        w.note(f"mmap load {f.path}: empty, skipped")
        return
    start, length, off, n = rng
    w.note(f"mmap load {f.path} off={off} len={n} (map {start}+{length})")
    with mmap.mmap(f.fd, length, mmap.MAP_SHARED, mmap.PROT_READ, offset=start) as m:
        got = m[off - start:off - start + n]
    w.verified(f.model.check(got, off, n, f.path, "mmap-load", f.fd))


def op_truncate(w: Worker) -> None:
    f = w.pick_file()
    r = w.rng
    kind = r.randrange(3)
    if kind == 0:
        size = r.randrange(0, f.model.size + 1)
    elif kind == 1:
        size = min(w.params.max_size, f.model.size + r.randrange(1, 64 * PAGE))
    else:
        size = r.randrange(0, w.params.max_size // PAGE + 1) * PAGE
    w.note(f"ftruncate {f.path} {f.model.size} -> {size}")
    os.ftruncate(f.fd, size)
    f.model.truncate(size)


def op_fallocate(w: Worker) -> None:
    f = w.pick_file()
    off = w.offset(f)
    n = w.length(off)
    keep = w.rng.random() < 0.5
    w.note(f"fallocate {f.path} off={off} len={n}{' KEEP_SIZE' if keep else ''}")
    fallocate(f.fd, FALLOC_FL_KEEP_SIZE if keep else 0, off, n)
    f.model.fallocate(off, n, keep)


def op_punch(w: Worker) -> None:
    f = w.pick_file()
    off = w.offset(f)
    n = w.length(off)
    w.note(f"punch {f.path} off={off} len={n}")
    fallocate(f.fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, off, n)
    f.model.punch(off, n)


def op_copy_range(w: Worker) -> None:
    """copy_file_range between two owned files (or within one): page-aligned pairs
    of offsets make shmfs share frames copy-on-write, so later writes, punches,
    truncates and mmap stores of either file check that the other never changes."""
    src = w.pick_file()
    dst = w.files[w.rng.randrange(len(w.files))]
    r = w.rng
    off_in = w.offset(src)
    if r.random() < 0.6:  # same offset within the page: whole pages are shared
        off_out = off_in % PAGE + r.randrange(0, w.params.max_size // PAGE + 1) * PAGE
    else:
        off_out = w.offset(dst)
    n = (1 << 30) if r.random() < 0.2 else w.length(off_in)
    want = max(0, min(n, src.model.size - off_in))
    overlap = src is dst and want > 0 and off_in < off_out + want and off_out < off_in + want
    w.current_file = dst.path
    w.note(f"copy_file_range {src.path} off={off_in} -> {dst.path} off={off_out} len={n}"
           f"{' (overlap: EINVAL)' if overlap else ''}")
    try:
        got = os.copy_file_range(src.fd, dst.fd, n, off_in, off_out)
    except OSError as e:
        if overlap and e.errno == E.EINVAL:
            return
        raise
    if overlap:
        raise Mismatch("copy_file_range", dst.path, f"overlapping copy returned {got}, "
                       "expected EINVAL")
    if got != want:
        raise Mismatch("copy_file_range", dst.path, f"copied {got} bytes, expected {want}")
    dst.model.copy_from(src.model, off_in, off_out, n)
    w.bytes_written += got


def _recreate(w: Worker, i: int, path: str) -> None:
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
    w.files[i] = OwnedFile(path, fd, FileModel())


def op_rename(w: Worker) -> None:
    """Swap two owned files' names (three renames), or rename one over the other."""
    i, j = w.rng.sample(range(len(w.files)), 2)
    a, b = w.files[i], w.files[j]
    w.current_file = a.path
    if w.rng.random() < 0.5:
        tmp = f"{a.path}.tmp"
        w.note(f"swap names {a.path} <-> {b.path} via {tmp}")
        os.rename(a.path, tmp)
        os.rename(b.path, a.path)
        os.rename(tmp, b.path)
        a.path, b.path = b.path, a.path
        w.files[i], w.files[j] = b, a
        return
    w.note(f"rename {a.path} over {b.path} (the replaced inode stays open), recreate {a.path}")
    os.rename(a.path, b.path)
    if os.fstat(b.fd).st_nlink != 0:
        raise Mismatch("rename", b.path, "replaced inode still has links")
    verify_whole(w, b, b.fd, "verify-replaced")
    os.close(b.fd)
    old_name = a.path
    a.path = b.path
    w.files[j] = a
    _recreate(w, i, old_name)


def op_link(w: Worker) -> None:
    f = w.pick_file()
    link = f"{f.path}.lnk"
    w.note(f"link {f.path} {link}, read through it, unlink it")
    os.link(f.path, link)
    nlink = os.fstat(f.fd).st_nlink
    if nlink != 2:
        raise Mismatch("link", f.path, f"st_nlink {nlink} after link, expected 2")
    fd = os.open(link, os.O_RDONLY)
    try:
        verify_whole(w, f, fd, "verify-through-link")
    finally:
        os.close(fd)
    os.unlink(link)
    nlink = os.fstat(f.fd).st_nlink
    if nlink != 1:
        raise Mismatch("unlink", f.path, f"st_nlink {nlink} after unlinking the link")


def op_unlink(w: Worker) -> None:
    """Unlink an open file, check the orphan through its fd, recreate the name empty."""
    i = w.rng.randrange(len(w.files))
    f = w.files[i]
    w.current_file = f.path
    w.note(f"unlink {f.path} (open), verify orphan, recreate empty")
    os.unlink(f.path)
    if os.fstat(f.fd).st_nlink != 0:
        raise Mismatch("unlink", f.path, "unlinked inode still has links")
    verify_whole(w, f, f.fd, "verify-orphan")
    os.close(f.fd)
    _recreate(w, i, f.path)


def op_reopen(w: Worker) -> None:
    f = w.pick_file()
    trunc = w.rng.random() < 0.2
    w.note(f"close and reopen {f.path}{' O_TRUNC' if trunc else ''}")
    os.close(f.fd)
    f.fd = os.open(f.path, os.O_RDWR | (os.O_TRUNC if trunc else 0))
    if trunc:
        f.model.truncate(0)


def op_fsync(w: Worker) -> None:
    f = w.pick_file()
    w.note(f"fsync {f.path}")
    os.fsync(f.fd)


def op_inject(w: Worker) -> None:
    """Self-test of the oracle: change a byte behind its back, then verify (must fail)."""
    f = w.files[0]
    w.current_file = f.path
    w.note(f"inject-corruption {f.path} (self-test: the next verify must fail)")
    if f.model.size == 0:
        f.model.write(0, b"\0")
        os.pwrite(f.fd, b"\0", 0)
    off = f.model.size // 2
    os.pwrite(f.fd, bytes([f.model.data[off] ^ 0x5A]), off)
    verify_whole(w, f, f.fd)


# --- the shared directory -----------------------------------------------------------------------

RACE_ERRNOS = (E.ENOENT, E.EEXIST)


def _slot(w: Worker) -> str:
    return str(w.shared / f"s{w.rng.randrange(w.params.slots)}")


def _two_slots(w: Worker) -> tuple[str, str]:
    a, b = w.rng.sample(range(w.params.slots), 2)
    return str(w.shared / f"s{a}"), str(w.shared / f"s{b}")


def op_sh_create(w: Worker) -> None:
    dst = _slot(w)
    rec = new_record(w.proc, w.next_seq(), w.rng)
    tmp = str(w.shared / f".tmp{w.proc}")
    w.current_file = dst
    w.note(f"shared create {dst} (record p{rec.proc} seq {rec.seq}, {rec.length} bytes)")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        os.write(fd, rec.encode())
    finally:
        os.close(fd)
    try:
        renameat2(tmp, dst, RENAME_NOREPLACE)
    except OSError as e:
        os.unlink(tmp)
        w.tolerate("create", e, (E.EEXIST,))
        return
    w.names_delta += 1
    w.published.append((rec.proc, rec.seq))


def op_sh_link(w: Worker) -> None:
    a, b = _two_slots(w)
    w.current_file = a
    w.note(f"shared link {a} {b}")
    try:
        os.link(a, b)
    except OSError as e:
        w.tolerate("link", e, RACE_ERRNOS)
        return
    w.names_delta += 1


def op_sh_unlink(w: Worker) -> None:
    a = _slot(w)
    w.current_file = a
    w.note(f"shared unlink {a}")
    try:
        os.unlink(a)
    except OSError as e:
        w.tolerate("unlink", e, (E.ENOENT,))
        return
    w.names_delta -= 1


def op_sh_rename(w: Worker) -> None:
    a, b = _two_slots(w)
    exchange = w.rng.random() < 0.4
    w.current_file = a
    w.note(f"shared rename {a} {b} {'EXCHANGE' if exchange else 'NOREPLACE'}")
    try:
        renameat2(a, b, RENAME_EXCHANGE if exchange else RENAME_NOREPLACE)
    except OSError as e:
        w.tolerate("exchange" if exchange else "rename", e, RACE_ERRNOS)


def op_sh_read(w: Worker) -> None:
    a = _slot(w)
    w.current_file = a
    w.note(f"shared read {a}")
    try:
        fd = os.open(a, os.O_RDONLY)
    except OSError as e:
        w.tolerate("read", e, (E.ENOENT,))
        return
    try:
        got = os.pread(fd, 4 * PAGE, 0)
        check_record(got, a, fd)
    finally:
        os.close(fd)
    w.verified(len(got))


OWNED_OPS: list[tuple[str, int, Any]] = [
    ("write", 20, op_write),
    ("read", 20, op_read),
    ("verify", 4, op_verify),
    ("mmap_store", 8, op_mmap_store),
    ("mmap_load", 6, op_mmap_load),
    ("truncate", 4, op_truncate),
    ("fallocate", 4, op_fallocate),
    ("punch", 5, op_punch),
    ("rename", 3, op_rename),
    ("link", 3, op_link),
    ("unlink", 2, op_unlink),
    ("reopen", 2, op_reopen),
    ("fsync", 1, op_fsync),
    ("copy_range", 5, op_copy_range),
]
SHARED_OPS: list[tuple[str, int, Any]] = [
    ("sh_create", 4, op_sh_create),
    ("sh_link", 3, op_sh_link),
    ("sh_unlink", 3, op_sh_unlink),
    ("sh_rename", 4, op_sh_rename),
    ("sh_read", 4, op_sh_read),
]
ALL_OPS = OWNED_OPS + SHARED_OPS + WINDOW_OPS
INJECT = ("inject-corruption", 0, op_inject)
