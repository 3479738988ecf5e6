"""Shared mappings of files on a live mount, seen from several processes.

kernel-semantics.md §6 row 8 (truncate -> SIGBUS past EOF; re-extend -> zeros)
and row 12 (a punched page reads 0 through an existing mapping) as observed by
another process's existing MAP_SHARED mapping.
"""

from __future__ import annotations

import mmap
import os
import signal
import textwrap
from pathlib import Path

import pytest

from mount.winapi.client import mount_stats
from tests.live.helpers import PAGE, fallocate, read_from_daemon, run_python

pytestmark = pytest.mark.mount

FALLOC_FL_KEEP_SIZE = 0x01
FALLOC_FL_PUNCH_HOLE = 0x02

# A child maps the file, reports "mapped", waits for a line on stdin, then reads
# the requested offsets through the mapping it established *before* the change.
READER = textwrap.dedent("""
    import mmap, os, sys
    fd = os.open(sys.argv[1], os.O_RDWR)
    m = mmap.mmap(fd, int(sys.argv[2]))
    m[0]  # fault something in
    print("mapped", flush=True)
    sys.stdin.readline()
    for off in map(int, sys.argv[3:]):
        print(off, m[off:off + 4].hex(), flush=True)
""")


def _spawn_reader(path: Path, size: int, offsets: list[int]):
    import subprocess
    import sys

    p = subprocess.Popen([sys.executable, "-c", READER, str(path), str(size),
                          *map(str, offsets)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                         text=True)
    assert p.stdout is not None and p.stdin is not None
    assert p.stdout.readline().strip() == "mapped"
    return p


def test_punch_seen_by_other_process_mapping(shmfs: Path) -> None:
    path = shmfs / "f"
    path.write_bytes(b"\xab" * (8 * PAGE))
    p = _spawn_reader(path, 8 * PAGE, [0, 2 * PAGE, 3 * PAGE, 5 * PAGE])
    try:
        # touch the pages in the reader's view first: it printed mapped after m[0]
        fd = os.open(path, os.O_RDWR)
        fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 2 * PAGE, 2 * PAGE)
        os.close(fd)
        out, _ = p.communicate("go\n", timeout=60)
    finally:
        p.kill()
        p.wait()
    lines = dict(line.split() for line in out.splitlines())
    assert lines == {"0": "abababab", str(2 * PAGE): "00000000", str(3 * PAGE): "00000000",
                     str(5 * PAGE): "abababab"}


def test_truncate_gives_sigbus_then_zeros(shmfs: Path) -> None:
    path = shmfs / "t"
    path.write_bytes(b"\x11" * (8 * PAGE))
    p = _spawn_reader(path, 8 * PAGE, [PAGE, 6 * PAGE])
    try:
        os.truncate(path, 4 * PAGE)
        out, _ = p.communicate("go\n", timeout=60)
    finally:
        p.kill()
        p.wait()
    assert out.splitlines() == [f"{PAGE} 11111111"]
    assert p.returncode == -signal.SIGBUS
    # re-extend: the old data is gone, the page reads as zeros
    os.truncate(path, 8 * PAGE)
    r = run_python("import mmap,os,sys; fd=os.open(sys.argv[1],os.O_RDWR); "
                   "m=mmap.mmap(fd, 8*4096); print(m[6*4096:6*4096+4].hex())", str(path))
    assert r.returncode == 0 and r.stdout.strip() == "00000000"


def _writes(mnt: Path) -> int:
    return mount_stats(mnt)["session"]["requests"].get("WRITE", {"count": 0})["count"]


def test_shared_store_reaches_the_daemon_on_msync(shmfs: Path) -> None:
    """msync(MS_SYNC) writes the stores back to the daemon. A buffered read
    would be served from the very pages the child stored into (one page cache),
    and an O_DIRECT read, or the child's exit (fuse_vma_close), writes dirty
    pages back by itself; so the WRITEs are counted while the child still
    holds its mapping, and only then is the daemon's copy read (O_DIRECT)."""
    import subprocess
    import sys

    path = shmfs / "s"
    path.write_bytes(bytes(4 * PAGE))
    before = _writes(shmfs)
    p = subprocess.Popen([sys.executable, "-c", textwrap.dedent("""
        import mmap, os, sys
        fd = os.open(sys.argv[1], os.O_RDWR)
        m = mmap.mmap(fd, 4 * 4096)
        for i in range(4):
            m[i * 4096 + 1: i * 4096 + 6] = b"pg-%d!" % i
        m.flush()
        print("synced", flush=True)
        sys.stdin.readline()  # keep the mapping until the parent has looked
    """), str(path)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert p.stdout is not None
        assert p.stdout.readline().strip() == "synced"
        assert _writes(shmfs) > before  # msync itself sent the stores to the daemon
        data = read_from_daemon(path)
    finally:
        p.communicate("exit\n", timeout=60)
    assert p.returncode == 0
    for i in range(4):
        assert data[i * PAGE:i * PAGE + 6] == b"\0" + b"pg-%d!" % i


def test_mmap_and_write_coherent_in_one_process(shmfs: Path) -> None:
    path = shmfs / "c"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        os.ftruncate(fd, 3 * PAGE)
        m = mmap.mmap(fd, 3 * PAGE)
        os.pwrite(fd, b"written", PAGE)
        assert m[PAGE:PAGE + 7] == b"written"
        m[2 * PAGE:2 * PAGE + 6] = b"stored"
        m.flush()
        assert os.pread(fd, 6, 2 * PAGE) == b"stored"
        m.close()
    finally:
        os.close(fd)


def test_store_into_hole_beyond_size_limit_fails_writeback(tmp_path: Path) -> None:
    """Row 15 says a kernel tmpfs answers SIGBUS to a write fault on a hole at
    the size= limit. Through FUSE the daemon never sees the fault (the kernel
    fills the page with a READ and dirties it in its own cache), so the refusal
    comes at writeback: msync(2) fails with ENOSPC, write(2) with ENOSPC, and
    the data already stored is untouched (docs/divergences.md)."""
    from tests.support.mounts import shmfs_mount

    with shmfs_mount("size=64k") as mnt:
        path = mnt / "full"
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            os.ftruncate(fd, 64 * PAGE)
            os.pwrite(fd, b"x" * (16 * PAGE), 0)  # fills the 64 KiB
            r = run_python("import mmap,os,sys; fd=os.open(sys.argv[1],os.O_RDWR); "
                           "m=mmap.mmap(fd, 64*4096); m[40*4096]=1; m.flush()", str(path))
            assert r.returncode == 1 and "[Errno 28]" in r.stderr, r
            with pytest.raises(OSError) as ei:
                os.pwrite(fd, b"y", 40 * PAGE)
            assert ei.value.errno == 28
            assert os.pread(fd, 16 * PAGE, 0) == b"x" * (16 * PAGE)
            assert os.pread(fd, 1, 40 * PAGE) == b"\0"
        finally:
            os.close(fd)


def test_write_back_straddling_the_size_limit_fails_not_short() -> None:
    """Stores into eight consecutive hole pages with four pages left under size=:
    the kernel writes them back in one WRITE, and the daemon must refuse it with
    ENOSPC (msync fails) rather than store four pages and answer a short count,
    which the kernel's write-back takes as success (the other four pages lost with
    no error anywhere). The pages that fitted are stored."""
    from tests.support.mounts import shmfs_mount

    with shmfs_mount("size=64k") as mnt:
        path = mnt / "full"
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            os.ftruncate(fd, 64 * PAGE)
            os.pwrite(fd, b"x" * (12 * PAGE), 0)  # 48 of the 64 KiB
            r = run_python("import mmap,os,sys; fd=os.open(sys.argv[1],os.O_RDWR); "
                           "m=mmap.mmap(fd, 64*4096); m[20*4096:28*4096]=b'z'*(8*4096); "
                           "m.flush()", str(path))
            assert r.returncode == 1 and "[Errno 28]" in r.stderr, r
            assert os.statvfs(mnt).f_bfree == 0
            assert os.pread(fd, 12 * PAGE, 0) == b"x" * (12 * PAGE)
        finally:
            os.close(fd)
