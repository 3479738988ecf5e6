"""The filesystems a benchmark run compares, and their mounting and unmounting.

A target spec is ``shmfs``, ``shmfs:OPT+OPT`` (extra ``-o`` options joined by
``+``, e.g. ``shmfs:cpu_latency=off``; an item spelled ``SHMFS_NAME=VALUE`` is
put in that daemon's environment instead, for interleaved A/B runs of the
daemon's env switches, e.g. ``shmfs:SHMFS_CLONES_STAY=1``), ``tmpfs`` or
``dir:/some/path`` (an existing directory, benchmarked as it is -- useful
without root or for any other filesystem). ``tmpfs`` and ``shmfs`` targets are
fresh mounts made for this run on a private temporary mountpoint;
``Target.close`` always unmounts them (the caller drives it from a
``finally``/ExitStack, so Ctrl-C and errors unmount too). A shmfs is mounted and
taken down by ``mount.mounting.managed.managed_shmfs``, shared with the tests
and the other tools; its daemon is the process it started, so the pid (and the
RSS at mount) needs no search.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from mount.mounting.kernel import mount_fstype
from mount.mounting.managed import managed_shmfs

REPO = Path(__file__).resolve().parents[2]
MOUNT_TIMEOUT = 60
MNT_DETACH = 2

_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
_libc.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]


def vm_rss_bytes(pid: int) -> int:
    """VmRSS of a process, in bytes (from /proc/PID/status)."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise OSError(f"no VmRSS for pid {pid}")


@dataclass
class Target:
    """One side of the comparison: a label, a kind and the directory to use."""

    spec: str
    label: str
    kind: str  # "tmpfs", "shmfs" or "dir"
    size: str = "16g"
    path: Path = field(default_factory=Path)
    mounted: bool = False
    daemon_pid: int | None = None
    _tmpdir: Path | None = None
    mount_options: str = ""
    rss_at_mount: int | None = None
    command: list[str] | None = None
    extra_options: str = ""
    env: dict[str, str] = field(default_factory=dict)  # the daemon's SHMFS_* switches
    _shmfs: contextlib.ExitStack | None = None

    def open(self) -> None:
        """Make the target ready: mount a fresh filesystem, or check the directory."""
        if self.kind == "dir":
            self.path = Path(self.spec.split(":", 1)[1]).resolve()
            if not self.path.is_dir():
                raise FileNotFoundError(f"{self.path} is not a directory")
            return
        opts = [o for o in self.extra_options.split(",") if o]
        self.env = dict(o.split("=", 1) for o in opts if o.startswith("SHMFS_") and "=" in o)
        opts = [o for o in opts if not (o.startswith("SHMFS_") and "=" in o)]
        self.mount_options = ",".join([f"size={self.size}", *opts])
        if self.kind == "tmpfs":
            self._tmpdir = Path(tempfile.mkdtemp(prefix=f"shmfs-bench-{self.kind}-"))
            self.path = self._tmpdir / "mnt"
            self.path.mkdir()
            self.command = ["mount", "-t", "tmpfs", "-o", self.mount_options, "tmpfs",
                            str(self.path)]
            subprocess.run(self.command, check=True)
            self.mounted = True
        else:
            self._mount_shmfs()

    def _mount_shmfs(self) -> None:
        """A fresh shmfs through managed_shmfs, held open until close()."""
        self._shmfs = contextlib.ExitStack()  # before mounting: close() always undoes it
        saved = {k: os.environ.get(k) for k in self.env}
        os.environ.update(self.env)  # the daemon inherits them (managed_shmfs spawns it)
        try:
            m = self._shmfs.enter_context(managed_shmfs(
                self.mount_options, prefix="shmfs-bench-shmfs-", ready_timeout=MOUNT_TIMEOUT))
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
        self.path, self.daemon_pid, self.command = m.path, m.pid, m.command
        self.mounted = True
        self.rss_at_mount = vm_rss_bytes(m.pid)

    def fstype(self) -> str | None:
        return mount_fstype(self.path)

    def close(self) -> None:
        """Unmount what open() mounted and remove the mountpoint.

        Never touches the filesystem itself (a hung daemon would hang us). A
        shmfs is taken down by managed_shmfs (umount2; if that fails, abort
        the FUSE connection through fusectl and detach lazily; the daemon
        reaped, killed if it does not leave). A tmpfs: umount2, lazily if
        busy. The mountpoint is removed only once nothing is mounted on it.
        """
        if self._shmfs is not None:
            stack, self._shmfs = self._shmfs, None
            try:
                stack.close()
            finally:
                self.mounted = False
            return
        if self.mounted:
            target = os.fsencode(str(self.path))
            if mount_fstype(self.path) is not None and _libc.umount2(target, 0) != 0:
                _libc.umount2(target, MNT_DETACH)
            self.mounted = False
        if self._tmpdir is not None:
            if mount_fstype(self.path) is None:
                shutil.rmtree(self._tmpdir, ignore_errors=True)
            else:
                print(f"bench: {self.path} is still mounted; left in place", file=sys.stderr)
            self._tmpdir = None

    def describe(self) -> dict[str, object]:
        return {
            "label": self.label,
            "kind": self.kind,
            "spec": self.spec,
            "path": str(self.path),
            "fstype": self.fstype() if self.kind != "dir" else None,
            "mount_options": self.mount_options,
            "env": self.env,
            "daemon_pid": self.daemon_pid,
            "daemon_rss_at_mount": self.rss_at_mount,
            "command": self.command,
        }


def parse_targets(spec: str, size: str) -> list[Target]:
    """'shmfs,tmpfs' -> two Targets (more: the last is the reference, the others
    are compared with it in the same run); repeated kinds get labels like tmpfs#2."""
    out: list[Target] = []
    seen: dict[str, int] = {}
    for part in (p.strip() for p in spec.split(",")):
        extra = ""
        if part in ("shmfs", "tmpfs"):
            kind = part
        elif part.startswith("shmfs:"):
            kind = "shmfs"
            extra = part[len("shmfs:"):].replace("+", ",")
        elif part.startswith("dir:"):
            kind = "dir"
        else:
            raise ValueError(f"bad target {part!r}: use shmfs, shmfs:OPT+OPT, tmpfs or dir:PATH")
        base = part if kind != "dir" else Path(part[4:]).name or "dir"
        seen[base] = seen.get(base, 0) + 1
        label = base if seen[base] == 1 else f"{base}#{seen[base]}"
        out.append(Target(spec=part, label=label, kind=kind, size=size, extra_options=extra))
    if len(out) < 2:
        raise ValueError("give two targets or more: SUBJECT[,OTHER...],REFERENCE "
                         "(e.g. shmfs,tmpfs or shmfs,shmfs:uring,tmpfs)")
    return out
