"""A read of /dev/fuse that says ECONNABORTED: the connection is over; say why, and end.

The kernel gives a reader ECONNABORTED, whatever the connection negotiated, when
``fuse_abort_conn`` runs between the moment the reader took a request off the
input queue and the moment it puts it on its device's processing list
(fs/fuse/dev.c ``fuse_dev_do_read``: "Must not put request on fpq->io queue
after having been shut down by fuse_abort_conn()"). ``fuse_abort_conn`` runs on
every unmount (``fuse_conn_destroy`` from ``fuse_kill_sb_anon``, after umount(2)
has already returned), on a fusectl ``abort`` and on the last device fd's close.
So an ordinary ``umount`` that meets a request still queued -- typically the
background RELEASE of a file closed just before -- while a reader is taking it
ends that read with ECONNABORTED instead of the usual ENODEV. Every later read
says ENODEV (or ECONNABORTED again, for a connection that negotiated
FUSE_ABORT_ERROR): nothing more can be served on that connection.

So the daemon treats it as the end of the session, exactly as ENODEV, and logs
which connection it was and what happened to it: unmounted (the mount is gone
from /proc/self/mountinfo: the ordinary race, INFO) or aborted while still
mounted (fusectl, or the device's last fd closed: WARNING; users of the mount
now get ENOTCONN). docs/decisions.md, "ECONNABORTED from /dev/fuse".
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path

from mount.mounting import kernel as mounting

log = logging.getLogger("shmfs.session")

_lock = threading.Lock()
_served: dict[Path, str] = {}  # mountpoint -> "major:minor" of its FUSE connection
_reported: set[Path] = set()  # one record per mount, however many readers see it


def serving(mountpoint: Path) -> str | None:
    """Remember (and log) the FUSE connection that serves ``mountpoint``, once it is
    mounted: its number is the minor of the mount's device, the name of its
    directory in /sys/fs/fuse/connections. Called by the daemon right after mount(2),
    never by the reader (/proc/self/mountinfo only: the mount itself is not touched).
    """
    dev = mounting.mount_device(mountpoint)
    if dev is None:
        return None
    with _lock:
        _served[Path(mountpoint)] = dev
        _reported.discard(Path(mountpoint))
    log.info("%s is FUSE connection %s (/sys/fs/fuse/connections/%s)", mountpoint,
             dev.split(":")[1], dev.split(":")[1])
    return dev


def connection_of(mountpoint: Path | None) -> str | None:
    """The connection number remembered for ``mountpoint`` by ``serving``, or None."""
    if mountpoint is None:
        return None
    dev = _served.get(Path(mountpoint))
    return dev.split(":")[1] if dev else None


def aborted(fd: int, mountpoint: Path | None = None) -> int:
    """Log why a read of ``fd`` said ECONNABORTED; -1, what the readers return for
    ENODEV (the session ends). Called by whichever loop read it (session.py).
    Without ``mountpoint``: the process's one mount (a daemon serves one), if known.
    """
    if mountpoint is None and len(_served) == 1:
        mountpoint = next(iter(_served))
    mnt = Path(mountpoint) if mountpoint is not None else None
    dev = _served.get(mnt) if mnt is not None else None
    conn = dev.split(":")[1] if dev else "?"
    with _lock:
        if mnt is not None and mnt in _reported:
            return -1
        if mnt is not None:
            _reported.add(mnt)
    still = mnt is not None and dev is not None and mounting.mount_device(mnt) == dev
    if still:
        log.warning("FUSE connection %s (%s): read of /dev/fuse fd %d said ECONNABORTED: "
                    "the kernel aborted the connection while the mount is still attached "
                    "(fusectl abort, or the last /dev/fuse fd closed); its users get "
                    "ENOTCONN until it is unmounted. The session ends.", conn, mnt, fd)
    else:
        log.info("FUSE connection %s (%s): read of /dev/fuse fd %d said ECONNABORTED: "
                 "the mount was unmounted while this reader was taking a queued request "
                 "(fuse_conn_destroy -> fuse_abort_conn ends it); the session ends as on "
                 "ENODEV.", conn, mnt, fd)
    return -1
