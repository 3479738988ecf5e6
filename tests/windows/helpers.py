"""Helpers for the live window tests: object files, and another process holding an mmap.

``MapChild`` runs a separate Python process that maps a file MAP_SHARED (or
MAP_PRIVATE) once and
then obeys one command per line, so a test can change a window in this process
and look through the *existing* mapping of another process:

    r OFF N     -> hex of N bytes at OFF (a fault past the object's end kills it: SIGBUS)
    w OFF HEX   -> store the bytes at OFF
    s           -> msync(MS_SYNC) of the whole mapping: "ok" or "err ERRNO"
    u           -> munmap: "ok" or "err ERRNO"
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

P = 4096
ROOT = Path(__file__).resolve().parents[2]

_CHILD = textwrap.dedent("""
    import mmap, os, sys
    fd = os.open(sys.argv[1], os.O_RDWR)
    flags = mmap.MAP_PRIVATE if sys.argv[3:] == ["private"] else mmap.MAP_SHARED
    m = mmap.mmap(fd, int(sys.argv[2]), flags)
    print("ready", flush=True)
    for line in sys.stdin:
        cmd = line.split()
        if cmd[0] == "r":
            off, n = int(cmd[1]), int(cmd[2])
            print(m[off:off + n].hex(), flush=True)
        elif cmd[0] == "w":
            off, data = int(cmd[1]), bytes.fromhex(cmd[2])
            m[off:off + len(data)] = data
            print("ok", flush=True)
        elif cmd[0] in ("s", "u"):
            try:
                m.flush() if cmd[0] == "s" else m.close()
                print("ok", flush=True)
            except OSError as e:
                print("err", e.errno, flush=True)
""")


def dir_for_test(mount: Path, node_name: str) -> Path:
    """A new directory on ``mount`` named after the test ``node_name`` (the ``wdir``
    fixtures: each test of a module sharing one mount gets a directory of its own)."""
    d = mount / re.sub(r"[^A-Za-z0-9_]+", "_", node_name)[:100]
    d.mkdir()
    return d


def drain_messages(fd: int) -> list[bytes]:
    """Every whole FUSE message (reply or notification, each led by its u32 length)
    that can be read from the non-blocking ``fd`` now, in order: what the window
    engine wrote into the pipe a twin test gives it for /dev/fuse."""
    buf = b""
    while True:
        try:
            chunk = os.read(fd, 1 << 16)
        except BlockingIOError:
            break
        if not chunk:
            break
        buf += chunk
    out = []
    while buf:
        n = int.from_bytes(buf[:4], "little")
        assert 16 <= n <= len(buf), (n, len(buf))  # a torn message is a failure
        out.append(buf[:n])
        buf = buf[n:]
    return out


def page_of(tag: int, gen: int = 1) -> bytes:
    """A page whose every 16 bytes say (tag, gen): torn or stale data is visible."""
    return (tag.to_bytes(8, "little") + gen.to_bytes(8, "little")) * (P // 16)


def make_object(path: Path, npages: int, gen: int = 1) -> None:
    path.write_bytes(b"".join(page_of(i, gen) for i in range(npages)))


class MapChild:
    """Another process with a MAP_SHARED mapping of ``path`` (see the module docstring)."""

    def __init__(self, path: Path, size: int, private: bool = False) -> None:
        args = [str(path), str(size)] + (["private"] if private else [])
        self.proc = subprocess.Popen([sys.executable, "-c", _CHILD, *args],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True)
        assert self._line() == "ready"

    def _line(self) -> str:
        assert self.proc.stdout is not None
        return self.proc.stdout.readline().strip()

    def _cmd(self, text: str) -> str:
        assert self.proc.stdin is not None
        self.proc.stdin.write(text + "\n")
        self.proc.stdin.flush()
        return self._line()

    def read(self, off: int, n: int) -> bytes:
        out = self._cmd(f"r {off} {n}")
        if not out:
            raise ChildDied(self.wait())
        return bytes.fromhex(out)

    def store(self, off: int, data: bytes) -> None:
        assert self._cmd(f"w {off} {data.hex()}") == "ok"

    def msync(self) -> int:
        """0, or the errno msync(MS_SYNC) failed with."""
        out = self._cmd("s")
        return 0 if out == "ok" else int(out.split()[1])

    def munmap(self) -> int:
        out = self._cmd("u")
        return 0 if out == "ok" else int(out.split()[1])

    def wait(self) -> int:
        assert self.proc.stdin is not None
        if not self.proc.stdin.closed:
            try:
                self.proc.stdin.close()
            except BrokenPipeError:
                pass
        return self.proc.wait(timeout=30)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.wait()
        self.proc.wait(timeout=30)
        for f in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            if f is not None and not f.closed:
                try:
                    f.close()
                except BrokenPipeError:
                    pass

    def __enter__(self) -> MapChild:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.close()


class ChildDied(Exception):
    """The child ended instead of answering; ``args[0]`` is its returncode."""


def touch_in_child(path: Path, size: int, off: int) -> int:
    """Map ``path`` in a fresh process, read one byte at ``off``: its exit status
    (-SIGBUS when the page cannot be had)."""
    code = textwrap.dedent("""
        import mmap, os, sys
        fd = os.open(sys.argv[1], os.O_RDWR)
        m = mmap.mmap(fd, int(sys.argv[2]), mmap.MAP_SHARED)
        m[int(sys.argv[3])]
    """)
    r = subprocess.run([sys.executable, "-c", code, str(path), str(size), str(off)],
                       capture_output=True, timeout=60, check=False)
    return r.returncode


def shmfs_cli(*args: str) -> subprocess.CompletedProcess[str]:
    """Run ``python -m mount.cli ARGS`` (the ``shmfs`` command) in another process."""
    return subprocess.run([sys.executable, "-m", "mount.cli", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=60, check=False,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})


@contextmanager
def readonly_for_others(prot: int) -> Iterator[tuple[Path, Path, object]]:
    """The setting of the unprivileged-user attack tests: an ``allow_other`` mount
    (mode 1777), root's 8-page object and root's 4-page window over it, both 0644
    (others may only read them), window page 0 showing object page 5 (MAP_CHGPROT
    ``prot``, populated). Yields (mountpoint, object path, root's Window); on leaving,
    checks the object still holds exactly what make_object wrote."""
    from mount.winapi.client import Window
    from tests.support.mounts import shmfs_mount

    with shmfs_mount("allow_other,mode=1777") as mnt:
        obj = mnt / "obj"
        make_object(obj, 8)
        os.chmod(obj, 0o644)
        with Window.create(mnt / "win", obj, 4) as w:
            os.chmod(mnt / "win", 0o644)
            w.remap(0, 1, 5, prot=prot, populate=True)
            yield mnt, obj, w
        with open(obj, "rb") as f:
            assert f.read() == b"".join(page_of(k) for k in range(8))
