"""Small helpers for tests that run against a live mount."""

from __future__ import annotations

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

