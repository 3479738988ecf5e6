"""``shmfs remount MOUNTPOINT -o OPTIONS``: change a mounted shmfs, as
``mount -o remount`` does for tmpfs (and ``mount -o remount,...`` of a
fuse.shmfs mount ends here too: mount.fuse3 runs ``shmfs SOURCE MNT -o
remount,...``, main.py).

Options are parsed by the mount parser, so an unknown one is "Unknown
parameter" and a bad value "Bad value" exactly as at mount time. Then:

* size=, nr_blocks=, nr_inodes=: FUSE does not pass remount options to the
  daemon, so they go through the SHMFS_IOC_REMOUNT ioctl on the mount root.
  As tmpfs (shmem_reconfigure): a limit below current use, or a limit on a
  mount that was unlimited, is EINVAL and nothing changes; the message is
  tmpfs's ("Too small a size for current use", "Cannot retroactively limit
  inodes" ...), with what is in use.
* VFS flags (noatime, relatime, strictatime, nodiratime, nosuid, nodev,
  noexec ...): mount(2) MS_REMOUNT with the mount's current flags changed by
  the ones given (root only, as for any mount); the daemon sees the new atime
  flags in /proc/self/mountinfo (mount/server/mountflags.py).
* mode=, uid=, gid= and shmfs's mount-time options: tmpfs accepts and
  ignores them on remount; shmfs ignores them too, and says so on stderr.
"""

from __future__ import annotations

import argparse
import fcntl
import os
import sys
from pathlib import Path

from mount.mounting import kernel
from mount.mounting.options import OPTIONS, VFS, MountOptions, OptionError, parse_options
from mount.winapi.abi import REMOUNT, REMOUNT_INODES, REMOUNT_SIZE, SHMFS_IOC_REMOUNT

LIMITS = ("size", "nr_blocks", "nr_inodes")
U64_MAX = 2**64 - 1
# per-mount flags as /proc/self/mountinfo shows them -> MS_* bit
_SHOWN = {"nosuid": kernel.MS_NOSUID, "nodev": kernel.MS_NODEV, "noexec": kernel.MS_NOEXEC,
          "noatime": kernel.MS_NOATIME, "nodiratime": kernel.MS_NODIRATIME,
          "relatime": kernel.MS_RELATIME}
_ATIME = (kernel.MS_NOATIME | kernel.MS_NODIRATIME | kernel.MS_RELATIME
          | kernel.MS_STRICTATIME)


def remount(mountpoint: str | os.PathLike[str], *, size_bytes: int | None = None,
            nr_inodes: int | None = None) -> None:
    """Change the size= and/or nr_inodes= limit; raises OSError (EINVAL, EPERM)."""
    for v in (size_bytes, nr_inodes):
        if v is not None and not 0 <= v <= U64_MAX:  # more than the ABI's u64 holds
            raise OSError(22, "value out of range")
    valid = (REMOUNT_SIZE if size_bytes is not None else 0) | (
        REMOUNT_INODES if nr_inodes is not None else 0)
    buf = REMOUNT.pack(size_bytes or 0, nr_inodes or 0, valid, 0)
    fd = os.open(Path(mountpoint), os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.ioctl(fd, SHMFS_IOC_REMOUNT, buf)
    finally:
        os.close(fd)


def remount_flags(entry: kernel.MountEntry, opts: MountOptions) -> int:
    """The MS_* flags for MS_REMOUNT: the mount's current ones (mountinfo),
    changed by those given in opts. As do_remount: the atime flags are kept
    unless an atime option is given."""
    current = 0
    for name, bit in _SHOWN.items():
        if name in entry.mount_options:
            current |= bit
    if "lazytime" in entry.super_options:
        current |= kernel.MS_LAZYTIME
    if not current & (kernel.MS_NOATIME | kernel.MS_RELATIME):
        current |= kernel.MS_STRICTATIME
    probe = MountOptions(ms_flags=current)
    for key in opts.given:
        kind, handler = OPTIONS[key]
        if kind == VFS:
            if key in ("noatime", "relatime", "strictatime", "atime", "norelatime"):
                probe.ms_flags &= ~(_ATIME & ~kernel.MS_NODIRATIME)  # one atime mode wins
            handler(probe, "")
    return probe.ms_flags


def apply(mountpoint: Path, opts: MountOptions) -> int:
    """Carry out a parsed remount; the exit status (messages on stderr)."""
    fixed = [k for k in opts.given if k not in LIMITS and OPTIONS[k][0] != VFS
             and k != "remount"]
    if fixed:
        print(f"shmfs: remount {mountpoint}: ignored, as tmpfs ignores them: "
              f"{', '.join(fixed)} (set at mount time only)", file=sys.stderr)
    entry = kernel.mount_entry(mountpoint)
    if entry is None or entry.fstype != "fuse.shmfs":
        print(f"shmfs: remount {mountpoint}: not a shmfs mount", file=sys.stderr)
        return 1
    if any(OPTIONS[k][0] == VFS for k in opts.given):
        try:
            kernel.remount_flags(mountpoint, remount_flags(entry, opts))
        except kernel.MountError as e:
            print(f"shmfs: {e}", file=sys.stderr)
            return 1
    if not (opts.size_given or opts.nr_inodes_given):
        return 0
    try:
        remount(mountpoint, size_bytes=opts.size_bytes if opts.size_given else None,
                nr_inodes=opts.nr_inodes if opts.nr_inodes_given else None)
    except OSError as e:
        why = {22: refusal(mountpoint, opts),
               1: "only root or the mounting user may remount",
               25: "not a shmfs mount"}.get(e.errno or 0, e.strerror)
        print(f"shmfs: remount {mountpoint}: {why}", file=sys.stderr)
        return 1
    return 0


def refusal(mountpoint: Path, opts: MountOptions) -> str:
    """Why a limit was refused (EINVAL), in shmem_reconfigure's words and order: the
    ioctl carries only the errno, so the reason is read back from statfs (which
    reports 0 blocks / 0 files for an unlimited mount, as tmpfs's does)."""
    try:
        st = os.statvfs(mountpoint)
    except OSError:
        return "below current use, or limiting an unlimited mount"
    if opts.size_given and opts.size_bytes:
        if not st.f_blocks:
            return "Cannot retroactively limit size"
        if opts.size_bytes < (st.f_blocks - st.f_bfree) * st.f_frsize:
            return (f"Too small a size for current use "
                    f"({(st.f_blocks - st.f_bfree) * st.f_frsize:,} bytes in use)")
    if opts.nr_inodes_given and opts.nr_inodes:
        if not st.f_files:
            return "Cannot retroactively limit inodes"
        if opts.nr_inodes < st.f_files - st.f_ffree:
            return f"Too few inodes for current use ({st.f_files - st.f_ffree:,} in use)"
    return "below current use, or limiting an unlimited mount"


def main(argv: list[str]) -> int:
    """Entry point of ``shmfs remount``."""
    p = argparse.ArgumentParser(prog="shmfs remount",
                                description="Change the limits or flags of a mounted shmfs.")
    p.add_argument("mountpoint", type=Path)
    p.add_argument("-o", dest="options", action="append", default=[], required=True,
                   help="size=, nr_blocks=, nr_inodes= (tmpfs syntax); noatime, relatime, "
                        "strictatime, nodiratime, nosuid, nodev, noexec ... (root)")
    ns = p.parse_args(argv)
    try:
        opts = parse_options(",".join(ns.options))
    except OptionError as e:
        print(f"shmfs: {e}", file=sys.stderr)
        return 2
    return apply(ns.mountpoint, opts)
