"""Attach a /dev/fuse channel to a mountpoint, and detach it again.

Two ways in, as libfuse does it: root calls mount(2) itself with
``fd=N,rootmode=...,user_id=...,group_id=...``; anyone else asks the setuid
helper ``fusermount3``, which mounts and hands the /dev/fuse descriptor back
over the ``_FUSE_COMMFD`` socket (SCM_RIGHTS). Unmounting mirrors that:
umount2(2) for root, ``fusermount3 -u`` otherwise.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
import shutil
import socket
import stat
import subprocess
from dataclasses import dataclass
from pathlib import Path

MS_NOSUID = 0x2
MS_NODEV = 0x4
MS_NOEXEC = 0x8
MS_REMOUNT = 0x20
MS_NOATIME = 0x400
MS_NODIRATIME = 0x800
MS_RELATIME = 1 << 21
MS_STRICTATIME = 1 << 24
MS_LAZYTIME = 1 << 25
# flags fusermount3 (3.14) understands by name (util/fusermount.c mount_flags[]);
# relatime is the kernel's default anyway. It knows no strictatime, nodiratime
# or lazytime: a normal user's mount cannot have them.
_FUSERMOUNT_FLAGS = {MS_NOSUID: ("nosuid", "suid"), MS_NODEV: ("nodev", "dev"),
                     MS_NOEXEC: ("noexec", "exec"), MS_NOATIME: ("noatime", None),
                     MS_RELATIME: (None, None)}
_FUSERMOUNT_CANNOT = {MS_STRICTATIME: "strictatime", MS_NODIRATIME: "nodiratime",
                      MS_LAZYTIME: "lazytime"}
MNT_DETACH = 0x2
FUSECTL = Path("/sys/fs/fuse/connections")

_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
_libc.mount.argtypes = [ctypes.c_char_p] * 3 + [ctypes.c_ulong, ctypes.c_char_p]
_libc.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]


class MountError(Exception):
    """Mounting or unmounting failed; the message says what to do about it.
    ``errno``: the system call's, when one failed (0 otherwise)."""

    def __init__(self, message: str, errno: int = 0) -> None:
        super().__init__(message)
        self.errno = errno


@dataclass(frozen=True, slots=True)
class MountRequest:
    """What the kernel needs to know to attach the channel."""

    mountpoint: Path
    root_mode: int = 0o1777
    allow_other: bool = False
    fsname: str = "shmfs"  # the source shown in /proc/mounts (mount(8)'s SOURCE)
    ms_flags: int = 0  # as tmpfs: no implicit nosuid,nodev for root
    max_read: int = 1 << 20


def _fuse_options(req: MountRequest) -> list[str]:
    opts = ["default_permissions"]
    if req.allow_other:
        opts.append("allow_other")
    opts.append(f"max_read={req.max_read}")
    return opts


def mount(req: MountRequest) -> int:
    """Mount and return the /dev/fuse descriptor the session must serve.

    SHMFS_FUSERMOUNT=1 in the environment takes the unprivileged path even for
    root (tests use it to exercise fusermount3 and _FUSE_COMMFD)."""
    mnt = req.mountpoint
    if not mnt.is_dir():
        raise MountError(f"mountpoint {mnt} is not a directory")
    if os.geteuid() == 0 and not os.environ.get("SHMFS_FUSERMOUNT"):
        return _mount_as_root(req)
    return _mount_with_fusermount(req)


def _mount_as_root(req: MountRequest) -> int:
    try:
        fd = os.open("/dev/fuse", os.O_RDWR | os.O_CLOEXEC)
    except OSError as e:
        raise MountError(f"cannot open /dev/fuse: {e.strerror} (is the fuse module loaded?)") from e
    rootmode = stat.S_IFDIR | (req.root_mode & 0o7777)
    data = ",".join(
        [
            f"fd={fd}",
            f"rootmode={rootmode:o}",
            f"user_id={os.getuid()}",
            f"group_id={os.getgid()}",
            *_fuse_options(req),
        ]
    )
    rc = _libc.mount(
        req.fsname.encode(),
        os.fsencode(req.mountpoint),
        b"fuse.shmfs",
        req.ms_flags,
        data.encode(),
    )
    if rc != 0:
        err = ctypes.get_errno()
        os.close(fd)
        raise MountError(f"mount({req.mountpoint}) failed: {os.strerror(err)}")
    return fd


def _mount_with_fusermount(req: MountRequest) -> int:
    helper = shutil.which("fusermount3")
    if helper is None:
        raise MountError(
            "mounting as a normal user needs fusermount3 (Debian package fuse3); "
            "as root: apt-get install fuse3"
        )
    cannot = [name for bit, name in _FUSERMOUNT_CANNOT.items() if req.ms_flags & bit]
    if cannot:
        raise MountError(f"fusermount3 cannot set {', '.join(cannot)}: a mount by a normal "
                         "user cannot have it (root can)")
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    fsname = req.fsname.replace("\\", "\\\\").replace(",", "\\,")  # fusermount3 unescapes
    opts = [*_fuse_options(req), f"fsname={fsname}", "subtype=shmfs"]
    for bit, (on, off) in _FUSERMOUNT_FLAGS.items():
        if req.ms_flags & bit:
            if on is not None:
                opts.append(on)
        elif off is not None and os.geteuid() == 0:
            opts.append(off)  # fusermount3 forces nosuid,nodev unless root asks otherwise
    env = dict(os.environ, _FUSE_COMMFD=str(theirs.fileno()))
    try:
        proc = subprocess.run(
            [helper, "-o", ",".join(opts), "--", os.fspath(req.mountpoint)],
            env=env,
            pass_fds=(theirs.fileno(),),
            capture_output=True,
            check=False,
        )
        theirs.close()
        if proc.returncode != 0:
            msg = proc.stderr.decode(errors="replace").strip()
            raise MountError(f"fusermount3 failed: {msg}")
        _msg, fds, _flags, _addr = socket.recv_fds(ours, 16, 1)
        if not fds:
            raise MountError("fusermount3 did not pass back a /dev/fuse descriptor")
        os.set_inheritable(fds[0], False)
        return fds[0]
    finally:
        ours.close()
        if theirs.fileno() >= 0:
            theirs.close()


def unmount(mountpoint: Path, *, lazy: bool = False) -> None:
    """Detach the filesystem; the daemon's session then ends by itself (ENODEV)."""
    if os.geteuid() == 0 and not os.environ.get("SHMFS_FUSERMOUNT"):
        rc = _libc.umount2(os.fsencode(mountpoint), MNT_DETACH if lazy else 0)
        if rc != 0:
            err = ctypes.get_errno()
            raise MountError(f"umount({mountpoint}) failed: {os.strerror(err)}", err)
        return
    args = ["fusermount3", "-u", *(["-z"] if lazy else []), "--", os.fspath(mountpoint)]
    proc = subprocess.run(args, capture_output=True, check=False)
    if proc.returncode != 0:
        raise MountError(f"fusermount3 -u failed: {proc.stderr.decode(errors='replace').strip()}")


@dataclass(frozen=True, slots=True)
class MountEntry:
    """One line of /proc/self/mountinfo: the mount on top of a mountpoint."""

    device: str  # "major:minor"
    fstype: str  # "fuse.shmfs", "tmpfs" ...
    source: str
    mount_options: frozenset[str]  # per-mount: rw, nosuid, noatime, relatime ...
    super_options: frozenset[str]  # per-superblock: rw, lazytime, user_id= ...


def mount_entry(mountpoint: Path) -> MountEntry | None:
    """The mount on top of mountpoint (/proc/self/mountinfo), or None when
    nothing is mounted there.

    Only the parent directory is resolved: a stat of the mountpoint itself waits
    on the mount -- forever if its daemon hangs, and the daemon calls this from
    the very thread that must answer (set_readahead).
    """
    p = Path(os.path.abspath(mountpoint))
    target = os.path.join(os.path.realpath(p.parent), p.name)
    entry = None
    with open("/proc/self/mountinfo", "rb") as f:
        for line in f:
            fields = line.split()
            if len(fields) > 5 and _unescape(fields[4]) == target:
                # the last match is the mount on top; fstype, source, super
                # options follow the "-" separator
                try:
                    sep = fields.index(b"-", 5)
                    fstype, source = fields[sep + 1].decode(), _unescape(fields[sep + 2])
                    sopts = fields[sep + 3].decode()
                except (ValueError, IndexError):
                    fstype, source, sopts = "", "", ""
                entry = MountEntry(fields[2].decode(), fstype, source,
                                   frozenset(fields[5].decode().split(",")),
                                   frozenset(sopts.split(",")))
    return entry


def _mount_entry(mountpoint: Path) -> tuple[str, str] | None:
    """("major:minor", fstype) of the mount on top of mountpoint (mount_entry)."""
    e = mount_entry(mountpoint)
    return (e.device, e.fstype) if e else None


def remount_flags(mountpoint: Path, ms_flags: int) -> None:
    """mount(2) MS_REMOUNT of mountpoint with the VFS flags ms_flags (root only):
    how ``mount -o remount,noatime`` changes a mount's flags. FUSE ignores the
    data of an old-API remount, so only the per-mount flags change."""
    rc = _libc.mount(None, os.fsencode(mountpoint), None, MS_REMOUNT | ms_flags, None)
    if rc != 0:
        err = ctypes.get_errno()
        raise MountError(f"remount({mountpoint}) failed: {os.strerror(err)}")


def mount_device(mountpoint: Path) -> str | None:
    """The "major:minor" of the mount on top of mountpoint, or None (_mount_entry)."""
    entry = _mount_entry(mountpoint)
    return entry[0] if entry else None


def mount_fstype(mountpoint: Path) -> str | None:
    """The filesystem type ("fuse.shmfs", "tmpfs" ...) of the mount on top of
    mountpoint, or None when nothing is mounted there (_mount_entry)."""
    entry = _mount_entry(mountpoint)
    return entry[1] if entry else None


def abort_connection(mountpoint: Path) -> None:
    """Abort the FUSE connection of the mount at mountpoint (root only): its
    requests fail with ENOTCONN and the daemon reads ENODEV. For a daemon that
    stopped answering, whose mount anything touching it -- cleanup included --
    would otherwise wait on forever."""
    dev = mount_device(mountpoint)
    if dev is None:
        return
    if not os.path.ismount(FUSECTL):
        subprocess.run(["mount", "-t", "fusectl", "none", str(FUSECTL)],
                       check=False, capture_output=True)
    # Connection numbers are reused at once (the lowest free anonymous minor): open
    # the abort file first, then make sure the mount still is that connection, so a
    # mount gone meanwhile cannot lead to aborting whichever mount got its number.
    # An abort file whose connection went away after the open does nothing.
    with contextlib.suppress(OSError):
        fd = os.open(FUSECTL / dev.split(":")[1] / "abort", os.O_WRONLY | os.O_CLOEXEC)
        try:
            if mount_device(mountpoint) == dev:
                os.write(fd, b"1")
        finally:
            os.close(fd)


def is_mounted(mountpoint: Path) -> bool:
    """True if something (alive or ENOTCONN) is mounted on mountpoint."""
    return mount_device(mountpoint) is not None


def _unescape(field: bytes) -> str:
    out = field.decode(errors="surrogateescape")
    for code in ("040", "011", "012", "134"):
        out = out.replace("\\" + code, chr(int(code, 8)))
    return out


def set_readahead(mountpoint: Path, kib: int) -> bool:
    """Raise the mount's readahead window (sysfs bdi read_ahead_kb; root only).

    The kernel caps a FUSE mount's readahead at its 128 KiB default, so cold
    sequential reads would travel in 128 KiB requests although INIT allows
    1 MiB. Found through /proc/self/mountinfo, never through the mount itself:
    this runs on the thread that serves the mount (mount_device).
    """
    dev = mount_device(mountpoint)
    if dev is None:
        return False
    try:
        with open(f"/sys/class/bdi/{dev}/read_ahead_kb", "w") as f:
            f.write(str(kib))
    except OSError:
        return False
    return True
