"""Concurrent workloads of several processes on one directory, each reduced to a
summary that does not depend on the interleaving (sizes, checksums, counts of
bad observations), so that a kernel tmpfs and shmfs can be compared for equality.

Run as ``python -m tests.compat.workloads NAME DIRECTORY``: the workload runs in a
fresh interpreter (it forks its workers there, never inside pytest) and prints
its summary as one JSON line. ``NAMES`` lists them. The paths they load are the
ones the merged tree serves in new code: regular-file READ/WRITE/GETATTR in the C
hot path (native/hotpath.c), large WRITEs split into chunks while small requests
of other processes arrive (mount/server/fairness.py), and punch/truncate/mmap
coherence around them.
"""

from __future__ import annotations

import hashlib
import json
import mmap
import multiprocessing as mp
import os
import sys
from collections.abc import Callable

from mount.syscalls import fallocate

PAGE = 4096
FALLOC_PUNCH = 0x03  # FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE

_CTX = mp.get_context("fork")


def _run(procs: list[mp.Process]) -> list[int | None]:
    for p in procs:
        p.start()
    for p in procs:
        p.join()
    return [p.exitcode for p in procs]


# --------------------------------------------------------------- O_APPEND writers
APPENDERS, RECORDS = 6, 150


def _record(k: int, i: int) -> bytes:
    """Record i of appender k: ``<kk:iiiii:`` + filler letter + ``>``, 100..5099 bytes
    (odd lengths, so records straddle page and chunk boundaries)."""
    size = 100 + (k * 37 + i * 13) % 5000
    return (b"<%02d:%05d:" % (k, i)).ljust(size - 1, bytes([65 + k])) + b">"


def _appender(k: int, path: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_APPEND)
    try:
        for i in range(RECORDS):
            rec = _record(k, i)
            if os.write(fd, rec) != len(rec):
                os._exit(3)
    finally:
        os.close(fd)


def append(d: str) -> dict[str, object]:
    """Six processes append records with O_APPEND: every record whole, none lost,
    each appender's records in its own order."""
    path = os.path.join(d, "appended")
    open(path, "wb").close()
    codes = _run([_CTX.Process(target=_appender, args=(k, path)) for k in range(APPENDERS)])
    data = open(path, "rb").read()
    recs = data.split(b">")[:-1]
    whole = sum(1 for r in recs if r + b">" == _record(int(r[1:3]), int(r[4:9])))
    in_order = all(
        [int(r[4:9]) for r in recs if r[1:3] == b"%02d" % k] == list(range(RECORDS))
        for k in range(APPENDERS))
    return {"exit": codes, "size": len(data), "records": len(recs), "whole": whole,
            "in_order": in_order}


# ------------------------------------------- large writes while others create/stat
BIG = (3 << 20) + 1234  # > the 256 KiB chunk, not page aligned
BIG_ROUNDS, SMALL_FILES = 12, 200


def _big_writer(path: str) -> None:
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        for r in range(BIG_ROUNDS):
            os.pwrite(fd, bytes([r + 1]) * BIG, 0)
    finally:
        os.close(fd)


def _creator(d: str, path: str, out: mp.Queue) -> None:
    bad_size = bad_read = 0
    sizes = set()
    for i in range(SMALL_FILES):
        p = os.path.join(d, f"small{i}")
        body = b"%d" % i * (1 + i % 7)
        with open(p, "wb") as f:
            f.write(body)
        if os.stat(p).st_size != len(body):
            bad_size += 1
        if open(p, "rb").read() != body:
            bad_read += 1
        os.unlink(p)
        sizes.add(os.stat(path).st_size)
    out.put((bad_size, bad_read, sorted(sizes - {BIG})))


def big_writes_vs_creates(d: str) -> dict[str, object]:
    """One process rewrites a 3 MiB file with single pwrite(2)s while another creates,
    stats, reads and unlinks small files and stats the big one: the small files are
    exact, the big file (created at its full size first) never changes size, and
    its final contents are the last write's."""
    path = os.path.join(d, "big")
    with open(path, "wb") as f:
        f.write(b"\0" * BIG)
    sub = os.path.join(d, "smalls")
    os.mkdir(sub)
    q: mp.Queue = _CTX.Queue()
    codes = _run([_CTX.Process(target=_big_writer, args=(path,)),
                  _CTX.Process(target=_creator, args=(sub, path, q))])
    bad_size, bad_read, odd_sizes = q.get(timeout=60)
    data = open(path, "rb").read()
    return {"exit": codes, "bad_size": bad_size, "bad_read": bad_read, "odd_sizes": odd_sizes,
            "size": len(data), "last_write": data == bytes([BIG_ROUNDS]) * BIG,
            "left": sorted(os.listdir(sub))}


# ------------------------------------------------ mmap stores racing pwrite(2)s
MM_PAGES, MM_ROUNDS = 32, 150


def _storer(path: str) -> None:
    fd = os.open(path, os.O_RDWR)
    with mmap.mmap(fd, MM_PAGES * PAGE) as m:
        for i in range(MM_ROUNDS):
            for pg in range(MM_PAGES):
                m[pg * PAGE:pg * PAGE + 100] = bytes([1 + i % 200]) * 100
        m.flush()
    os.close(fd)


def _pwriter(path: str) -> None:
    fd = os.open(path, os.O_RDWR)
    for i in range(MM_ROUNDS):
        for pg in range(MM_PAGES):
            os.pwrite(fd, bytes([1 + i % 200]) * 100, pg * PAGE + 2000)
    os.close(fd)


def _direct_read(path: str, n: int) -> bytes:
    """What the filesystem holds, not the kernel's cached pages (O_DIRECT)."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECT)
    try:
        buf = mmap.mmap(-1, n)
        got = os.preadv(fd, [buf], 0)
        return bytes(buf[:got])
    finally:
        os.close(fd)


def mmap_vs_pwrite(d: str) -> dict[str, object]:
    """Stores through a shared mapping and pwrite(2)s of another process to other
    bytes of the same pages: neither loses the other's bytes."""
    path = os.path.join(d, "mm")
    with open(path, "wb") as f:
        f.write(b"\0" * MM_PAGES * PAGE)
    codes = _run([_CTX.Process(target=_storer, args=(path,)),
                  _CTX.Process(target=_pwriter, args=(path,))])
    last = bytes([1 + (MM_ROUNDS - 1) % 200]) * 100

    def intact(b: bytes) -> int:
        return sum(1 for pg in range(MM_PAGES)
                   if b[pg * PAGE:pg * PAGE + 100] == last
                   and b[pg * PAGE + 2000:pg * PAGE + 2100] == last)

    return {"exit": codes, "cached_intact": intact(open(path, "rb").read()),
            "direct_intact": intact(_direct_read(path, MM_PAGES * PAGE))}


# ------------------------------- pread(2) racing punch-hole, truncate and pwrite
PT_ROUNDS = 250


def _puncher(path: str) -> None:
    fd = os.open(path, os.O_RDWR)
    for i in range(PT_ROUNDS):
        fallocate(fd, FALLOC_PUNCH, (i % 30) * PAGE + 17, 3 * PAGE)
        os.ftruncate(fd, (i % 5 + 1) * PAGE * 8 + 123)
        os.pwrite(fd, b"\xaa" * 5000, (i % 7) * 3000)
    os.close(fd)


def _reader(path: str, out: mp.Queue) -> None:
    fd = os.open(path, os.O_RDONLY)
    garbage = 0
    for _ in range(PT_ROUNDS):
        if set(os.pread(fd, 1 << 20, 0)) - {0, 0xAA}:
            garbage += 1
    os.close(fd)
    out.put(garbage)


def punch_truncate_readers(d: str) -> dict[str, object]:
    """A process punches holes, truncates and rewrites a file while two read it whole:
    a read never returns a byte that was never written (only 0x00 or 0xAA), and the
    final contents are exactly determined by the last operations."""
    path = os.path.join(d, "pt")
    with open(path, "wb") as f:
        f.write(b"\xaa" * 50 * PAGE)
    q: mp.Queue = _CTX.Queue()
    codes = _run([_CTX.Process(target=_puncher, args=(path,))]
                 + [_CTX.Process(target=_reader, args=(path, q)) for _ in range(2)])
    garbage = q.get(timeout=60) + q.get(timeout=60)
    data = open(path, "rb").read()
    st = os.stat(path)
    return {"exit": codes, "garbage_reads": garbage, "size": len(data), "st_size": st.st_size,
            "md5": hashlib.md5(data).hexdigest(),
            "direct_md5": hashlib.md5(_direct_read(path, 1 << 20)).hexdigest()}


NAMES: dict[str, Callable[[str], dict[str, object]]] = {
    "append": append,
    "big_writes_vs_creates": big_writes_vs_creates,
    "mmap_vs_pwrite": mmap_vs_pwrite,
    "punch_truncate_readers": punch_truncate_readers,
}


if __name__ == "__main__":
    name, directory = sys.argv[1], sys.argv[2]
    print(json.dumps(NAMES[name](directory)))
