"""The filesystems a benchmark run compares, and their mounting and unmounting.

A target spec is ``shmfs``, ``shmfs:OPT+OPT`` (extra ``-o`` options joined
by ``+``, e.g. ``shmfs:cpu_latency=off``), ``tmpfs`` or ``dir:/some/path`` (an existing
directory, benchmarked as it is -- useful without root or for any other
filesystem). ``tmpfs`` and ``shmfs`` targets are fresh mounts made for this run
on a private temporary mountpoint; ``Target.close`` always unmounts them (the
caller drives it from a ``finally``/ExitStack, so Ctrl-C and errors unmount
too).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from mount.mounting import abort_connection

REPO = Path(__file__).resolve().parents[2]
MOUNT_TIMEOUT = 60
MNT_DETACH = 2

_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
_libc.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]


def _mount_fstype(mountpoint: Path) -> str | None:
    """fstype of the mount whose mountpoint is exactly `mountpoint`, or None."""
    want = str(mountpoint)
    found = None
    with open("/proc/self/mounts") as f:
        for line in f:
            parts = line.split()
            if len(parts) >= 3 and parts[1].replace("\\040", " ") == want:
                found = parts[2]  # the last one listed is the one on top
    return found


def shmfs_command() -> list[str] | None:
    """How to start the shmfs daemon, or None while the CLI does not exist."""
    exe = REPO / ".venv" / "bin" / "shmfs"
    if exe.exists():
        return [str(exe)]
    if (REPO / "mount" / "cli.py").exists():
        return [sys.executable, "-m", "mount.cli"]
    return None


def daemon_pids(mountpoint: Path) -> list[int]:
    """Pids of processes whose command line names `mountpoint` (the FUSE daemon).

    The CLI daemonises, so the pid we started is not the server's; the server
    is found by its argv, which contains the mountpoint.
    """
    want = os.fsencode(str(mountpoint))
    pids = []
    me = os.getpid()
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == me:
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                argv = f.read().split(b"\0")
        except OSError:
            continue
        if want in argv and any(_is_daemon_word(a) for a in argv[:3]):
            pids.append(int(entry))
    return sorted(pids)


def _is_daemon_word(arg: bytes) -> bool:
    """True for argv words that start shmfs: .../shmfs, shmfs, mount.cli, .../mount/cli.py."""
    return arg.rsplit(b"/", 1)[-1] == b"shmfs" or arg == b"mount.cli" or arg.endswith(
        b"mount/cli.py"
    )


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

    def open(self) -> None:
        """Make the target ready: mount a fresh filesystem, or check the directory."""
        if self.kind == "dir":
            self.path = Path(self.spec.split(":", 1)[1]).resolve()
            if not self.path.is_dir():
                raise FileNotFoundError(f"{self.path} is not a directory")
            return
        self._tmpdir = Path(tempfile.mkdtemp(prefix=f"shmfs-bench-{self.kind}-"))
        self.path = self._tmpdir / "mnt"
        self.path.mkdir()
        self.mount_options = ",".join(filter(None, [f"size={self.size}", self.extra_options]))
        if self.kind == "tmpfs":
            self.command = ["mount", "-t", "tmpfs", "-o", self.mount_options, "tmpfs",
                            str(self.path)]
            subprocess.run(self.command, check=True)
            self.mounted = True
        else:
            self._mount_shmfs()

    def _mount_shmfs(self) -> None:
        cmd = shmfs_command()
        if cmd is None:
            raise RuntimeError(
                "the shmfs CLI does not exist yet (no .venv/bin/shmfs, no mount/cli.py)"
            )
        self.command = [*cmd, str(self.path), "-o", self.mount_options]
        self.mounted = True  # from here on, close() must check for a mount and undo it
        try:
            subprocess.run(self.command, check=True, cwd=REPO, timeout=MOUNT_TIMEOUT)
        except subprocess.TimeoutExpired as e:  # run() killed the CLI; close() does the rest
            raise RuntimeError(f"shmfs did not report ready within {MOUNT_TIMEOUT}s") from e
        deadline = time.monotonic() + 10
        while _mount_fstype(self.path) is None or not self.daemon_pid:
            if time.monotonic() > deadline:
                raise RuntimeError(f"shmfs at {self.path} did not come up")
            pids = daemon_pids(self.path)
            self.daemon_pid = pids[-1] if pids else None
            time.sleep(0.05)
        self.rss_at_mount = vm_rss_bytes(self.daemon_pid)

    def fstype(self) -> str | None:
        return _mount_fstype(self.path)

    def close(self) -> None:
        """Unmount what open() mounted and remove the mountpoint.

        Never touches the filesystem itself (a hung daemon would hang us):
        umount2(2) directly; if that fails, abort the FUSE connection through
        fusectl and detach lazily. The mountpoint is removed only once nothing
        is mounted on it.
        """
        if self.mounted:
            if self.kind == "shmfs" and not self.daemon_pid:
                pids = daemon_pids(self.path)
                self.daemon_pid = pids[-1] if pids else None
            self._unmount()
            self.mounted = False
        if self._tmpdir is not None:
            if _mount_fstype(self.path) is None:
                shutil.rmtree(self._tmpdir, ignore_errors=True)
            else:
                print(f"bench: {self.path} is still mounted; left in place", file=sys.stderr)
            self._tmpdir = None

    def _unmount(self) -> None:
        target = os.fsencode(str(self.path))
        if _mount_fstype(self.path) is not None and _libc.umount2(target, 0) != 0:
            if self.kind == "shmfs":
                abort_connection(self.path)
            _libc.umount2(target, MNT_DETACH)
        if self.kind == "shmfs" and self.daemon_pid:
            self._reap_daemon(self.daemon_pid)

    @staticmethod
    def _reap_daemon(pid: int) -> None:
        """Wait for the daemon to leave after unmount; SIGTERM it if it does not."""
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            if not os.path.exists(f"/proc/{pid}"):
                return
            time.sleep(0.05)
        try:
            os.kill(pid, signal.SIGTERM)
            os.kill(pid, signal.SIGCONT)  # in case it was stopped
        except ProcessLookupError:
            pass

    def describe(self) -> dict[str, object]:
        return {
            "label": self.label,
            "kind": self.kind,
            "spec": self.spec,
            "path": str(self.path),
            "fstype": self.fstype() if self.kind != "dir" else None,
            "mount_options": self.mount_options,
            "daemon_pid": self.daemon_pid,
            "daemon_rss_at_mount": self.rss_at_mount,
            "command": self.command,
        }


def parse_targets(spec: str, size: str) -> list[Target]:
    """'shmfs,tmpfs' -> two Targets; repeated kinds get labels like tmpfs#2."""
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
    if len(out) != 2:
        raise ValueError("give exactly two targets: SUBJECT,REFERENCE (e.g. shmfs,tmpfs)")
    return out
