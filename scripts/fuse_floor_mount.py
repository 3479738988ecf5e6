"""Mounting and unmounting the floor server of scripts/fuse_floor.py (and its twins).

``build`` compiles scripts/fuse_floor.c; ``floor_mount`` mounts a fresh floor
server the way shmfs is mounted (mount(2) as root with shmfs's FUSE options,
mount/mounting/kernel.py) and always takes it down again; ``tmpfs_mount`` and
``open_target`` give the kernel tmpfs and shmfs (managed_shmfs) it is compared
with; ``request_counts`` asks a floor server how many requests of each opcode it
has read (FLOOR_IOC_COUNTS). Root only.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import fcntl
import os
import select
import shutil
import struct
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

SCRIPTS = Path(__file__).resolve().parent
REPO = SCRIPTS.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from mount.mounting.kernel import abort_connection, mount_fstype, set_readahead  # noqa: E402
from mount.mounting.managed import managed_shmfs  # noqa: E402

SRC = SCRIPTS / "fuse_floor.c"
FSTYPE = "fuse.fuse_floor"
TCGETS = 0x5401  # answered ENOTTY by every target: one bare IOCTL round trip on FUSE
FLOOR_IOC_NOP = 0xF100  # _IO(0xF1, 0)
FLOOR_IOC_STEP = 0xF101  # _IO(0xF1, 1)
NCOUNTS = 64
FLOOR_IOC_COUNTS = (2 << 30) | ((NCOUNTS * 8) << 16) | (0xF1 << 8) | 2  # _IOR(0xF1, 2, u64[64])
PAGE = 4096
MNT_DETACH = 2
READY_TIMEOUT = 10.0
EXIT_TIMEOUT = 5.0
CONFIGS = ("block", "block+lat0", "poll", "poll+lat0")

libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
libc.mount.argtypes = [ctypes.c_char_p] * 3 + [ctypes.c_ulong, ctypes.c_char_p]
libc.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]
libc.ioctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong]


def build(dest: Path) -> Path:
    """Compile fuse_floor.c with gcc -O2 into dest; returns the executable."""
    gcc = shutil.which("gcc") or shutil.which("cc")
    if gcc is None:
        raise RuntimeError("fuse_floor needs a C compiler (apt-get install gcc)")
    exe = dest / "fuse_floor"
    subprocess.run([gcc, "-O2", "-Wall", "-o", str(exe), str(SRC)], check=True)
    return exe


@dataclass
class FloorMount:
    """A mounted floor server: where, its process, and (after teardown) its exit status."""

    path: Path
    proc: subprocess.Popen[bytes]
    config: str
    returncode: int | None = None
    unmounted_cleanly: bool = False
    log: Path = field(default_factory=Path)


def _mount_fuse(mnt: Path) -> int:
    """Open /dev/fuse and mount it on mnt with shmfs's FUSE options
    (mount/mounting/kernel.py _mount_as_root); returns the descriptor."""
    fd = os.open("/dev/fuse", os.O_RDWR)
    data = (f"fd={fd},rootmode=41777,user_id={os.getuid()},group_id={os.getgid()},"
            "default_permissions,max_read=1048576")
    if libc.mount(b"fuse_floor", os.fsencode(mnt), FSTYPE.encode(), 0, data.encode()) != 0:
        err = ctypes.get_errno()
        os.close(fd)
        raise OSError(err, f"mount {FSTYPE} on {mnt}: {os.strerror(err)}")
    return fd


def _unmount(mnt: Path) -> bool:
    """umount2; if that fails, abort the connection and detach. True if the plain one worked."""
    if mount_fstype(mnt) is None:
        return True
    if libc.umount2(os.fsencode(mnt), 0) == 0:
        return True
    abort_connection(mnt)
    libc.umount2(os.fsencode(mnt), MNT_DETACH)
    return False


def _wait_line(proc: subprocess.Popen[bytes], timeout: float) -> bytes:
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], timeout)
    return proc.stdout.readline() if ready else b""


@contextlib.contextmanager
def floor_mount(exe: Path, config: str = "block",
                parent: Path | None = None) -> Iterator[FloorMount]:
    """Mount a fresh floor server (config: block|poll, optionally +lat0) and yield it.

    Always torn down, also on errors: umount2 (else abort + lazy detach), the
    server reaped (killed if it does not exit by itself on ENODEV), the
    temporary mountpoint removed once nothing is mounted on it."""
    mode, _, lat = config.partition("+")
    if mode not in ("block", "poll") or lat not in ("", "lat0"):
        raise ValueError(f"bad floor config {config!r}: block|poll, optionally +lat0")
    base = Path(tempfile.mkdtemp(prefix="fuse-floor-", dir=parent))
    mnt = base / "mnt"
    mnt.mkdir()
    log = base / "server.log"
    fd = -1
    proc: subprocess.Popen[bytes] | None = None
    fm: FloorMount | None = None
    try:
        fd = _mount_fuse(mnt)
        args = [str(exe), "serve", "--fd", str(fd)]
        args += ["--poll"] if mode == "poll" else []
        args += ["--cpu-latency"] if lat else []
        with open(log, "wb") as err:
            proc = subprocess.Popen(args, pass_fds=(fd,), stdout=subprocess.PIPE, stderr=err)
        os.close(fd)
        fd = -1
        if _wait_line(proc, READY_TIMEOUT) != b"init\n":
            raise RuntimeError(f"fuse_floor did not answer INIT: {log.read_text()[-2000:]}")
        set_readahead(mnt, 1024)  # as the shmfs daemon does at mount
        fm = FloorMount(mnt, proc, config, log=log)
        yield fm
    finally:
        if fd >= 0:
            os.close(fd)
        clean = _unmount(mnt)
        if proc is not None:
            try:
                proc.wait(timeout=EXIT_TIMEOUT)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            if proc.stdout is not None:
                proc.stdout.close()
            if fm is not None:
                fm.returncode = proc.returncode
                fm.unmounted_cleanly = clean
        if mount_fstype(mnt) is None:
            shutil.rmtree(base, ignore_errors=True)
        else:
            print(f"fuse_floor: {mnt} is still mounted; left in place", file=sys.stderr)


@contextlib.contextmanager
def tmpfs_mount() -> Iterator[Path]:
    """A fresh kernel tmpfs (size=2g), unmounted (lazily if busy) and removed after."""
    base = Path(tempfile.mkdtemp(prefix="fuse-floor-tmpfs-"))
    mnt = base / "mnt"
    mnt.mkdir()
    try:
        subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2g", "tmpfs", str(mnt)], check=True)
        yield mnt
    finally:
        if mount_fstype(mnt) is not None and libc.umount2(os.fsencode(mnt), 0) != 0:
            libc.umount2(os.fsencode(mnt), MNT_DETACH)
        if mount_fstype(mnt) is None:
            shutil.rmtree(base, ignore_errors=True)


@contextlib.contextmanager
def open_target(name: str, exe: Path, shmfs_options: str) -> Iterator[Path]:
    """A fresh mount of the named target: a floor config, "shmfs" or "tmpfs"."""
    if name == "tmpfs":
        with tmpfs_mount() as p:
            yield p
    elif name == "shmfs":
        opts = ",".join(filter(None, ["size=2g", shmfs_options]))
        with managed_shmfs(opts, prefix="fuse-floor-shmfs-") as m:
            yield m.path
    else:
        with floor_mount(exe, name) as fm:
            yield fm.path


def request_counts(root: Path) -> list[int] | None:
    """How many requests of each opcode a floor server has read (FLOOR_IOC_COUNTS on
    its root), or None when root is not a floor mount."""
    if mount_fstype(root) != FSTYPE:
        return None
    buf = bytearray(NCOUNTS * 8)
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.ioctl(fd, FLOOR_IOC_COUNTS, buf, True)
    finally:
        os.close(fd)
    return list(struct.unpack(f"<{NCOUNTS}Q", buf))
