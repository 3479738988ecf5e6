"""S_ISUID/S_ISGID after write, truncate, fallocate, punch, chown, chgrp and chmod:
the whole matrix of issue 13 (items 1 and 2).

The kernel's rules (fs/attr.c, fs/inode.c, fs/open.c): a write, truncate or
fallocate by a caller without CAP_FSETID drops S_ISUID, and S_ISGID when
group-exec is set or the caller is not in the file's group
(setattr_should_drop_suidgid); chown/chgrp of a non-directory drops S_ISUID
always and S_ISGID by setattr_should_drop_sgid (group-exec, or not in the
group and no CAP_FSETID) -- root keeps a setgid bit without group-exec; chmod
drops S_ISGID for a caller outside the (new) group without CAP_FSETID.

Every case runs one operation for every caller kind on files of mode 06666
(no group-exec) and 06676 (group-exec), owned by OTHER_UID:SHARED_GID:
root, the owner with the group as primary or supplementary group or not at
all, and another user likewise. Supplementary groups matter: FUSE tells the
daemon only the primary gid."""

from __future__ import annotations

import os
from collections.abc import Callable

from .framework import (
    OTHER_GID,
    OTHER_UID,
    SHARED_GID,
    THIRD_GID,
    THIRD_UID,
    Ctx,
    Recorder,
    case,
)
from .libc import FALLOC_FL_KEEP_SIZE, FALLOC_FL_PUNCH_HOLE, fallocate

A = "privs"
P = 4096

# name -> (uid, gid, supplementary groups)
CALLERS: dict[str, tuple[int, int, tuple[int, ...]]] = {
    "root": (0, 0, ()),
    "owner_pgrp": (OTHER_UID, SHARED_GID, ()),
    "owner_sgrp": (OTHER_UID, OTHER_GID, (SHARED_GID,)),
    "owner_nogrp": (OTHER_UID, OTHER_GID, ()),
    "other_pgrp": (THIRD_UID, SHARED_GID, ()),
    "other_sgrp": (THIRD_UID, THIRD_GID, (SHARED_GID,)),
    "other_nogrp": (THIRD_UID, THIRD_GID, ()),
}
MODES = (0o6666, 0o6676, 0o4666, 0o2666)


def _mode(rec: Recorder, path: str) -> None:
    try:
        rec.note(f"mode({path})", oct(os.stat(path).st_mode & 0o7777))
    except OSError as e:
        rec.note(f"mode({path})", ("err", e.errno))


def _matrix(ctx: Ctx, op: Callable[[Recorder, str, str], None],
            callers: tuple[str, ...] = tuple(CALLERS)) -> None:
    """Make one file per (caller, mode), then let each caller run ``op`` on its
    files and record the resulting modes (as root, after the caller is done)."""
    for who in callers:
        for m in MODES:
            name = f"{who}_{m:o}"
            fd = os.open(name, os.O_CREAT | os.O_WRONLY, 0o644)
            os.write(fd, b"a" * (2 * P))
            os.close(fd)
            os.chown(name, OTHER_UID, SHARED_GID)
            os.chmod(name, m)
    for who in callers:
        uid, gid, groups = CALLERS[who]

        def body(rec: Recorder, who: str = who) -> None:
            for m in MODES:
                op(rec, f"{who}_{m:o}", who)

        ctx.as_user(body, uid, gid, groups, label=f"[{who}] ")
        for m in MODES:
            _mode(ctx.rec, f"{who}_{m:o}")


def _with_fd(flags: int, fn: Callable[[int], object]) -> Callable[[Recorder, str, str], None]:
    def op(rec: Recorder, path: str, who: str) -> None:
        try:
            fd = os.open(path, flags)
        except OSError as e:
            rec.note(f"open({path})", ("err", e.errno))
            return
        try:
            rec.call(f"op({path})", fn, fd)
        finally:
            os.close(fd)
    return op


@case(A)
def case_write(ctx: Ctx) -> None:
    """pwrite(2) of one byte: S_ISUID goes unless CAP_FSETID; S_ISGID with g+x or
    for a writer outside the group (also through a supplementary group)."""
    _matrix(ctx, _with_fd(os.O_WRONLY, lambda fd: os.pwrite(fd, b"x", 10)))


@case(A)
def case_write_append(ctx: Ctx) -> None:
    """An O_APPEND write follows the same rules."""
    _matrix(ctx, _with_fd(os.O_WRONLY | os.O_APPEND, lambda fd: os.write(fd, b"x")))


@case(A)
def case_ftruncate(ctx: Ctx) -> None:
    """ftruncate(2) (FATTR_KILL_SUIDGID with a file handle)."""
    _matrix(ctx, _with_fd(os.O_WRONLY, lambda fd: os.ftruncate(fd, 100)))


@case(A)
def case_truncate_path(ctx: Ctx) -> None:
    """truncate(2) by path."""
    _matrix(ctx, lambda rec, p, who: rec.call(f"truncate({p})", os.truncate, p, 100))


@case(A)
def case_open_trunc(ctx: Ctx) -> None:
    """open(O_TRUNC) of an existing file (FUSE_OPEN_KILL_SUIDGID)."""
    _matrix(ctx, lambda rec, p, who: rec.call(
        f"open({p}, O_TRUNC)", lambda: os.close(os.open(p, os.O_WRONLY | os.O_TRUNC))))


@case(A)
def case_fallocate(ctx: Ctx) -> None:
    """fallocate(2) extending the file: file_modified drops the bits like a write."""
    _matrix(ctx, _with_fd(os.O_WRONLY, lambda fd: fallocate(fd, 0, 0, 4 * P)))


@case(A)
def case_fallocate_keep_size(ctx: Ctx) -> None:
    """fallocate(FALLOC_FL_KEEP_SIZE) inside the file."""
    _matrix(ctx, _with_fd(os.O_WRONLY,
                          lambda fd: fallocate(fd, FALLOC_FL_KEEP_SIZE, 0, P)))


@case(A)
def case_punch_hole(ctx: Ctx) -> None:
    """fallocate(PUNCH_HOLE | KEEP_SIZE)."""
    _matrix(ctx, _with_fd(os.O_WRONLY, lambda fd: fallocate(
        fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 0, P)))


@case(A)
def case_chown_noop(ctx: Ctx) -> None:
    """chown(f, -1, -1): anyone may, and it is a chown (S_ISUID always goes)."""
    _matrix(ctx, lambda rec, p, who: rec.call(f"chown({p}, -1, -1)", os.chown, p, -1, -1))


@case(A)
def case_chown_uid(ctx: Ctx) -> None:
    """root gives the file to another user; others are refused."""
    _matrix(ctx, lambda rec, p, who: rec.call(f"chown({p}, {THIRD_UID})",
                                              os.chown, p, THIRD_UID, -1))


@case(A)
def case_chgrp_own_group(ctx: Ctx) -> None:
    """chgrp to the caller's primary group (the owner may, as a member)."""
    def op(rec: Recorder, p: str, who: str) -> None:
        rec.call(f"chgrp({p}, {CALLERS[who][1]})", os.chown, p, -1, CALLERS[who][1])
    _matrix(ctx, op)


@case(A)
def case_chgrp_same_group(ctx: Ctx) -> None:
    """chgrp to the group the file already has."""
    _matrix(ctx, lambda rec, p, who: rec.call(f"chgrp({p}, {SHARED_GID})",
                                              os.chown, p, -1, SHARED_GID))


@case(A)
def case_chown_both(ctx: Ctx) -> None:
    """chown(f, uid, gid) as root (and refused to the others)."""
    _matrix(ctx, lambda rec, p, who: rec.call(f"chown({p}, {OTHER_UID}, {OTHER_GID})",
                                              os.chown, p, OTHER_UID, OTHER_GID))


@case(A)
def case_chmod_keep(ctx: Ctx) -> None:
    """chmod to the same mode: S_ISGID goes for a caller outside the group
    without CAP_FSETID (setattr_prepare)."""
    def op(rec: Recorder, p: str, who: str) -> None:
        m = os.stat(p).st_mode & 0o7777
        rec.call(f"chmod({p}, {m:o})", os.chmod, p, m)
    _matrix(ctx, op)


@case(A)
def case_chown_dir(ctx: Ctx) -> None:
    """Directories keep S_ISGID (and S_ISUID) across chown and chgrp."""
    os.mkdir("d", 0o755)
    os.chmod("d", 0o7775)
    os.chown("d", OTHER_UID, SHARED_GID)
    ctx.rec.call("chown(d, 1001, -1)", os.chown, "d", THIRD_UID, -1)
    _mode(ctx.rec, "d")
    ctx.rec.call("chown(d, -1, 1000)", os.chown, "d", -1, OTHER_GID)
    _mode(ctx.rec, "d")
    ctx.rec.call("chown(d, -1, -1)", os.chown, "d", -1, -1)
    _mode(ctx.rec, "d")


@case(A)
def case_acl_removal_keeps_sgid_for_members(ctx: Ctx) -> None:
    """Removing a setgid file's access ACL: S_ISGID stays for a member of the
    file's group -- also through a supplementary group -- and goes for others
    (posix_acl_update_mode; the daemon reads the groups from /proc)."""
    from .cases_xattr import (
        ACL_GROUP_OBJ,
        ACL_MASK,
        ACL_OTHER,
        ACL_USER,
        ACL_USER_OBJ,
        NO_ID,
        acl_xattr,
    )

    blob = acl_xattr([(ACL_USER_OBJ, 6, NO_ID), (ACL_USER, 6, THIRD_UID),
                      (ACL_GROUP_OBJ, 6, NO_ID), (ACL_MASK, 6, NO_ID), (ACL_OTHER, 0, NO_ID)])
    who = {"pgrp": (SHARED_GID, ()), "sgrp": (OTHER_GID, (SHARED_GID,)),
           "nogrp": (OTHER_GID, ())}
    for name, (gid, groups) in who.items():
        os.close(os.open(name, os.O_CREAT | os.O_WRONLY, 0o644))
        os.chown(name, OTHER_UID, SHARED_GID)
        os.chmod(name, 0o2660)
        os.setxattr(name, "system.posix_acl_access", blob)

        def body(rec: Recorder, name: str = name) -> None:
            rec.call(f"removexattr({name})", os.removexattr, name, "system.posix_acl_access")
        ctx.as_user(body, OTHER_UID, gid, groups, label=f"[{name}] ")
        _mode(ctx.rec, name)
