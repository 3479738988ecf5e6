"""``shmfs remount MOUNTPOINT -o size=,nr_blocks=,nr_inodes=``: change the limits
of a mounted shmfs, as ``mount -o remount`` does for tmpfs.

FUSE does not pass remount options to the daemon, so this goes through the
SHMFS_IOC_REMOUNT ioctl on the mount root. As tmpfs (shmem_reconfigure): a
limit below current use, or a limit on a mount that was unlimited, is EINVAL
and nothing changes; ``0`` cannot be set once a limit exists either.
"""

from __future__ import annotations

import argparse
import fcntl
import os
import sys
from pathlib import Path

from mount.mounting.options import OptionError, parse_options
from mount.winapi.abi import REMOUNT, REMOUNT_INODES, REMOUNT_SIZE, SHMFS_IOC_REMOUNT

ALLOWED = ("size", "nr_blocks", "nr_inodes")


def remount(mountpoint: str | os.PathLike[str], *, size_bytes: int | None = None,
            nr_inodes: int | None = None) -> None:
    """Change the size= and/or nr_inodes= limit; raises OSError (EINVAL, EPERM)."""
    valid = (REMOUNT_SIZE if size_bytes is not None else 0) | (
        REMOUNT_INODES if nr_inodes is not None else 0)
    buf = REMOUNT.pack(size_bytes or 0, nr_inodes or 0, valid, 0)
    fd = os.open(Path(mountpoint), os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.ioctl(fd, SHMFS_IOC_REMOUNT, buf)
    finally:
        os.close(fd)


def main(argv: list[str]) -> int:
    """Entry point of ``shmfs remount``."""
    p = argparse.ArgumentParser(prog="shmfs remount",
                                description="Change the limits of a mounted shmfs.")
    p.add_argument("mountpoint", type=Path)
    p.add_argument("-o", dest="options", action="append", default=[], required=True,
                   help="size=, nr_blocks=, nr_inodes= (tmpfs syntax)")
    ns = p.parse_args(argv)
    text = ",".join(ns.options)
    for item in filter(None, text.split(",")):
        key = item.partition("=")[0]
        if key not in ALLOWED:
            print(f"shmfs: option '{key}' cannot be changed by remount "
                  f"(only {', '.join(ALLOWED)})", file=sys.stderr)
            return 2
    try:
        opts = parse_options(text)
    except OptionError as e:
        print(f"shmfs: {e}", file=sys.stderr)
        return 2
    try:
        remount(ns.mountpoint, size_bytes=opts.size_bytes if opts.size_given else None,
                nr_inodes=opts.nr_inodes if opts.nr_inodes_given else None)
    except OSError as e:
        why = {22: "below current use, or limiting an unlimited mount",
               1: "only root or the mounting user may remount",
               25: "not a shmfs mount"}.get(e.errno or 0, e.strerror)
        print(f"shmfs: remount {ns.mountpoint}: {why}", file=sys.stderr)
        return 1
    return 0
