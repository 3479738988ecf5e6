"""A FUSE caller's supplementary groups and capabilities, from /proc.

Why: the FUSE request header carries the caller's fsuid, fsgid and pid, but
tmpfs's S_ISUID/S_ISGID rules (docs/decisions.md, "setgid rules") ask
in_group_p() -- which includes supplementary groups -- and capable(CAP_FSETID).
The kernel answers the capability question itself wherever FUSE has a flag
for it (FUSE_WRITE_KILL_SUIDGID, FATTR_KILL_SUIDGID on truncate,
FUSE_OPEN_KILL_SUIDGID); for the rest (chown, chown(f, -1, -1), group
membership) the daemon reads ``/proc/<pid>/status`` of the calling thread.

Trust: the calling thread is blocked in the syscall until we answer, so its
pid cannot be reused meanwhile -- unless it was killed, and then the answer
no longer matters. The status is used only when its fsuid and fsgid equal
the header's (else the thread changed credentials, or this is not the
caller), and capabilities count only when the caller lives in the daemon's
own user namespace (capable() of a process in a child namespace means
nothing for this mount). Anything that fails yields None: fsimpl then
assumes no extra groups and no capabilities, which drops set-id bits rather
than keeping them.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from functools import lru_cache

from fsimpl.types import Creds


@lru_cache(maxsize=1)
def _own_userns() -> tuple[int, int] | None:
    try:
        st = os.stat("/proc/self/ns/user")
    except OSError:
        return None
    return st.st_dev, st.st_ino


# Restartable mounts (mount/server/persist): the answers are an input the journal
# records, so that a replay sees the same ones; set by persist.inputs.
hook: Callable[[int, int, int], Creds | None] | None = None


def read_creds(pid: int, uid: int, gid: int) -> Creds | None:
    """Groups and effective capabilities of thread ``pid`` when its fsuid/fsgid
    are ``uid``/``gid``; None when that cannot be established."""
    if hook is not None:
        return hook(pid, uid, gid)
    return read_creds_proc(pid, uid, gid)


def read_creds_proc(pid: int, uid: int, gid: int) -> Creds | None:
    """read_creds from /proc, whatever the hook."""
    if pid <= 0:
        return None
    try:
        with open(f"/proc/{pid}/status", "rb") as f:
            text = f.read()
    except OSError:
        return None
    groups: frozenset[int] | None = None
    caps = 0
    ids_ok = 0
    for line in text.split(b"\n"):
        key, _, value = line.partition(b":")
        if key == b"Uid":
            fields = value.split()
            ids_ok += len(fields) == 4 and int(fields[3]) == uid
        elif key == b"Gid":
            fields = value.split()
            ids_ok += len(fields) == 4 and int(fields[3]) == gid
        elif key == b"Groups":
            groups = frozenset(int(g) for g in value.split())
        elif key == b"CapEff":
            caps = int(value.strip() or b"0", 16)
    if ids_ok != 2 or groups is None:
        return None
    try:
        st = os.stat(f"/proc/{pid}/ns/user")
        if (st.st_dev, st.st_ino) != _own_userns():
            caps = 0
    except OSError:
        caps = 0
    return Creds(groups, caps)
