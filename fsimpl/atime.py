"""When an access moves atime: the kernel's rules, applied by the daemon.

FUSE marks every inode S_NOATIME in the kernel (fuse_init_inode), so the
kernel never updates atime of a FUSE file itself; the daemon does, and must
follow the mount's atime options as fs/inode.c does for tmpfs:
``atime_needs_update`` (noatime; nodiratime for directories; strictatime
versus relatime; no update when atime already equals now) and
``relatime_need_update`` (update when atime is not after mtime or ctime, or
is a day old).

The mount flags live in the kernel's vfsmount, which the daemon is never told
about (a remount sends no request), so the mount layer hands ShmFs a
``mode_source`` callable that returns the current ``AtimeMode``
(mount/server/mountflags.py reads it from /proc/self/mountinfo).
"""

from __future__ import annotations

from dataclasses import dataclass

from .types import RELATIME_WINDOW_NS

DAY_S = 24 * 60 * 60


@dataclass(frozen=True, slots=True)
class AtimeMode:
    """The atime flags of a mount (MNT_NOATIME, MNT_NODIRATIME, MNT_RELATIME);
    strictatime is relatime=False with noatime=False. The default is the
    kernel's: relatime."""

    noatime: bool = False
    nodiratime: bool = False
    relatime: bool = True


RELATIME = AtimeMode()


def atime_needs_update(mode: AtimeMode, is_dir: bool, atime_ns: int, mtime_ns: int,
                       ctime_ns: int, now_ns: int) -> bool:
    """fs/inode.c atime_needs_update() for a mount with ``mode``, past the
    inode checks (S_NOATIME of chattr +A is the caller's)."""
    if mode.noatime:
        return False
    if mode.nodiratime and is_dir:
        return False
    if mode.relatime and not _relatime_need_update(atime_ns, mtime_ns, ctime_ns, now_ns):
        return False
    return atime_ns != now_ns


def _relatime_need_update(atime_ns: int, mtime_ns: int, ctime_ns: int, now_ns: int) -> bool:
    """fs/inode.c relatime_need_update(): mtime or ctime not before atime, or
    atime at least a day old (compared in whole seconds, as the kernel does)."""
    if mtime_ns >= atime_ns or ctime_ns >= atime_ns:
        return True
    return now_ns // 10**9 - atime_ns // 10**9 >= RELATIME_WINDOW_NS // 10**9
