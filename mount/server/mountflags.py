"""The mount's atime options as the kernel holds them now, for fsimpl.

The atime flags (noatime, nodiratime, relatime/strictatime) belong to the
kernel's vfsmount: they are set by mount(2) and changed by
``mount -o remount,noatime`` without any request reaching the daemon. So the
daemon reads them where the kernel publishes them, /proc/self/mountinfo, and
learns of a change the way findmnt --poll does: the file polls POLLPRI once
the mount table has changed. The check is a poll(2) with timeout 0 on each
access that may move atime; the kernel raises the event before mount(2)
returns, so an access that starts after a remount always sees its flags.

Only the mount at the daemon's own mountpoint counts. A bind mount of it
elsewhere with other atime flags is not told apart (the daemon cannot know
through which mount an access came): docs/divergences.md.
"""

from __future__ import annotations

import logging
import os
import select
from pathlib import Path

from fsimpl.atime import RELATIME, AtimeMode
from mount.mounting.kernel import MountEntry, mount_entry

log = logging.getLogger("shmfs")


def atime_mode_of(entry: MountEntry) -> AtimeMode:
    """The AtimeMode of a mountinfo entry's per-mount options (show_mnt_opts:
    "noatime", "nodiratime", "relatime"; none of these is strictatime)."""
    o = entry.mount_options
    return AtimeMode(noatime="noatime" in o, nodiratime="nodiratime" in o,
                     relatime="relatime" in o)


class MountFlagsWatch:
    """Callable giving the current AtimeMode of the mount at ``mountpoint``."""

    def __init__(self, mountpoint: Path, initial: AtimeMode = RELATIME) -> None:
        self.mountpoint = mountpoint
        self.mode = initial
        self._fd = os.open("/proc/self/mountinfo", os.O_RDONLY | os.O_CLOEXEC)
        self._poll = select.poll()
        self._poll.register(self._fd, select.POLLPRI)
        self.refresh()

    def __call__(self) -> AtimeMode:
        if self._fd >= 0 and self._poll.poll(0):
            self.refresh()
        return self.mode

    def refresh(self) -> None:
        """Re-read the flags, and re-arm the change event (a read of the file)."""
        try:
            os.lseek(self._fd, 0, os.SEEK_SET)
            while os.read(self._fd, 65536):
                pass
            entry = mount_entry(self.mountpoint)
        except OSError as e:  # keep the last known flags; never fail an access
            log.warning("cannot read the mount's flags: %s", e)
            return
        if entry is not None and entry.fstype.startswith("fuse"):
            mode = atime_mode_of(entry)
            if mode != self.mode:
                log.info("atime options of %s now %s", self.mountpoint, mode)
            self.mode = mode

    def close(self) -> None:
        """Stop watching (the daemon is leaving)."""
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
