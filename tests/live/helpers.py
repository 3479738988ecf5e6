"""Small helpers for tests that run against a live mount."""

from __future__ import annotations

import mmap
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from mount.syscalls import fallocate  # noqa: F401 -- the live tests' import point

PAGE = 4096


def run_python(code: str, *args: str) -> subprocess.CompletedProcess[str]:
    """Run code in a fresh interpreter (another process, its own mappings)."""
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True,
                          timeout=60, check=False)


def read_from_daemon(path: str | os.PathLike[str], length: int | None = None) -> bytes:
    """The bytes of ``path`` as the daemon holds them, never the kernel's cache.

    shmfs answers OPEN with FOPEN_KEEP_CACHE, so a buffered read after a
    full-page write or an msync'd store may be served from pages the kernel
    kept and prove nothing about the daemon. With O_DIRECT every byte comes
    from a READ (fuse_direct_IO; the kernel only writes back dirty pages
    first, it never serves the read from them) -- test_faults.py's
    test_o_direct_reads_reach_the_daemon checks that against the daemon's
    READ counter. ``length``: how much to read (default: the file's size).
    """
    import mmap

    fd = os.open(path, os.O_RDONLY | os.O_DIRECT)
    try:
        size = os.fstat(fd).st_size if length is None else length
        buf = mmap.mmap(-1, 1 << 20)  # page-aligned, as O_DIRECT may require
        out = bytearray()
        while len(out) < size:
            n = os.preadv(fd, [buf], len(out))
            if n == 0:
                break
            out += buf[:n]
        return bytes(out[:size])
    finally:
        os.close(fd)


def as_user(uid: int, gid: int, fn: Callable[[], object]) -> object:
    """Run fn in a forked child with the given credentials; return its result or
    the OSError errno it raised (as ('errno', n))."""
    import pickle

    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        try:
            os.setgroups([])
            os.setgid(gid)
            os.setuid(uid)
            try:
                res: object = ("ok", fn())
            except OSError as e:
                res = ("errno", e.errno)
            data = pickle.dumps(res)
        except BaseException as e:  # report anything, never fall back into pytest
            data = pickle.dumps(("exc", repr(e)))
        os.write(w, data)
        os._exit(0)
    os.close(w)
    chunks = []
    while chunk := os.read(r, 65536):
        chunks.append(chunk)
    os.close(r)
    os.waitpid(pid, 0)
    return pickle.loads(b"".join(chunks))


def used_blocks(mnt: Path) -> int:
    st = os.statvfs(mnt)
    return st.f_blocks - st.f_bfree



def check_truncate_reaches_mapping(mnt: Path) -> None:
    """Another process truncates a file this process has mapped: the daemon's
    NOTIFY_INVAL_INODE reaches the mapping (the new size is seen, the kept page
    still reads). Shared by the transports that write notifications differently
    (a second reader, the io_uring ring)."""
    (mnt / "m").write_bytes(b"m" * 8192)
    with open(mnt / "m", "r+b") as f, mmap.mmap(f.fileno(), 8192) as m:
        assert m[4096] == ord("m")
        r = run_python("import os,sys; os.truncate(sys.argv[1], 4096)", str(mnt / "m"))
        assert r.returncode == 0, r.stderr
        assert os.stat(mnt / "m").st_size == 4096
        assert m[0] == ord("m")
