"""The filesystems a tool runs on: a fresh shmfs (default), an existing one, a kernel tmpfs.

A fresh shmfs is mounted by ``mount.mounting.managed.managed_shmfs`` (shared with the
tests, the benchmark and the stress tool): the real CLI in the foreground, in
a session of its own (a Ctrl-C in the terminal reaches the tool, not the
daemon), ready once FUSE_INIT is answered, its pid that of the process
started. It is always taken down from a ``finally`` (errors and Ctrl-C too)
without touching the filesystem: umount2, else abort the connection and detach
lazily; the daemon is reaped, killed if it does not leave. A fresh tmpfs is
``umount``ed, lazily if it is busy.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:  # mount.winapi.client, when run from a checkout without install
    sys.path.insert(0, str(REPO))

from mount.mounting.kernel import mount_fstype  # noqa: E402
from mount.mounting.managed import managed_shmfs  # noqa: E402
from mount.winapi.client import mount_stats  # noqa: E402


@dataclass
class Target:
    """A mounted filesystem the workload runs on."""

    kind: str  # "shmfs" or "tmpfs"
    path: Path
    daemon_pid: int | None = None

    def used_bytes(self) -> int:
        """statfs(2) used blocks, in bytes (what df shows as Used)."""
        st = os.statvfs(self.path)
        return (st.f_blocks - st.f_bfree) * st.f_frsize

    def daemon_memory(self) -> dict[str, int]:
        """The shmfs daemon's VmRSS / RssAnon / RssShmem in bytes ({} if unknown).
        RssAnon includes the arena that holds the file pages (vmcore/arena.py)."""
        if self.daemon_pid is None:
            return {}
        out: dict[str, int] = {}
        try:
            with open(f"/proc/{self.daemon_pid}/status") as f:
                for line in f:
                    key, _, rest = line.partition(":")
                    if key in ("VmRSS", "RssAnon", "RssFile", "RssShmem"):
                        out[key] = int(rest.split()[0]) * 1024
        except OSError:
            return {}
        return out

    def stats(self) -> dict[str, Any]:
        """The daemon's statistics (SHMFS_IOC_STATS on the mount root); {} on tmpfs."""
        if self.kind != "shmfs":
            return {}
        return mount_stats(self.path)


def find_daemon(mnt: Path) -> int | None:
    """Best effort, for ``--mount DIR`` without ``--daemon-pid`` only: the pid of a
    shmfs daemon whose command line names ``mnt``. A mount made by someone else
    says nothing else about its daemon; the fresh mounts know theirs."""
    want = os.path.realpath(mnt)
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            argv = (d / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        args = [a.decode(errors="replace") for a in argv if a]
        names = " ".join(args[:3])
        if ("shmfs" in names or "mount.cli" in names) and any(
                os.path.realpath(a) == want for a in args[1:] if a.startswith("/")):
            return int(d.name)
    return None


def _umount(mnt: Path) -> None:
    if subprocess.run(["umount", str(mnt)], capture_output=True).returncode != 0:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


@contextlib.contextmanager
def fresh_shmfs(size: str, options: str = "") -> Iterator[Target]:
    """A new shmfs mounted with ``-o size=SIZE[,OPTIONS]`` for the duration of the block."""
    with managed_shmfs(f"size={size}" + (f",{options}" if options else ""),
                       prefix="shmfs-tool-") as m:
        yield Target("shmfs", m.path, m.pid)


@contextlib.contextmanager
def fresh_tmpfs(size: str) -> Iterator[Target]:
    """A new kernel tmpfs (``mount -t tmpfs -o size=SIZE``), unmounted at the end."""
    base = Path(tempfile.mkdtemp(prefix="tmpfs-tool-"))
    mnt = base / "mnt"
    mnt.mkdir()
    try:
        subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mnt)],
                       check=True, capture_output=True)
        yield Target("tmpfs", mnt, None)
    finally:
        if mount_fstype(mnt) is not None:
            _umount(mnt)
        shutil.rmtree(base, ignore_errors=True)


@contextlib.contextmanager
def existing(path: Path, daemon_pid: int | None = None) -> Iterator[Target]:
    """A shmfs the caller mounted; the tool works in a private subdirectory of it."""
    fstype = mount_fstype(Path(os.path.realpath(path)))  # a symlink to it counts too
    if fstype is None:
        raise RuntimeError(f"{path} is not a mountpoint")
    kind = "tmpfs" if fstype == "tmpfs" else "shmfs"
    work = Path(tempfile.mkdtemp(prefix="window-tool-", dir=path))
    try:
        pid = daemon_pid if daemon_pid is not None else (
            find_daemon(path) if kind == "shmfs" else None)
        t = Target(kind, work, pid)
        yield t
    finally:
        shutil.rmtree(work, ignore_errors=True)


def open_target(kind: str, size: str, mount: Path | None,
                daemon_pid: int | None = None,
                options: str = "") -> contextlib.AbstractContextManager[Target]:
    """The context manager for ``--mount DIR`` or a fresh ``kind`` mount (``options``:
    more -o options for a fresh shmfs)."""
    if mount is not None:
        return existing(mount, daemon_pid)
    return fresh_shmfs(size, options) if kind == "shmfs" else fresh_tmpfs(size)


def parse_size(text: str) -> int:
    """'256m', '64g', '4k', '4096' -> bytes."""
    t = text.strip().lower()
    mult = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}
    if t and t[-1] in mult:
        return int(float(t[:-1]) * mult[t[-1]])
    return int(t)
