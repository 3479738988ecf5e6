"""Extended attributes: namespaces, XATTR_CREATE/REPLACE, ENODATA, ERANGE, size
limits, permission rules; and POSIX ACLs stored as system.posix_acl_* xattrs:
validation, minimal ACLs, chmod, inheritance and the umask, access checks
through an ACL, setgid, listxattr.

listxattr is compared as a sorted set: the order of names is unspecified."""

from __future__ import annotations

import os
import struct

from .cases_times import changes
from .framework import (
    OTHER_GID,
    OTHER_UID,
    SHARED_GID,
    THIRD_GID,
    THIRD_UID,
    Ctx,
    Recorder,
    case,
    errname,
)
from .libc import getxattr_sized, listxattr_sized

A = "xattr"
ACL = "acl"


def _touch(name: str, mode: int = 0o644) -> None:
    os.close(os.open(name, os.O_CREAT | os.O_WRONLY, mode))
    os.chmod(name, mode)


def _list(path: str, follow: bool = True) -> list[str]:
    return sorted(os.listxattr(path, follow_symlinks=follow))


@case(A)
def case_user_roundtrip(ctx: Ctx) -> None:
    _touch("f")
    r = ctx.rec
    r.call("set user.a", os.setxattr, "f", "user.a", b"value-a")
    r.call("set user.b empty", os.setxattr, "f", "user.b", b"")
    r.call("get user.a", os.getxattr, "f", "user.a")
    r.call("get user.b", os.getxattr, "f", "user.b")
    r.call("list", _list, "f")
    r.call("replace user.a", os.setxattr, "f", "user.a", b"x" * 3000)
    r.call("get user.a len", lambda: len(os.getxattr("f", "user.a")))
    r.call("remove user.a", os.removexattr, "f", "user.a")
    r.call("get removed", os.getxattr, "f", "user.a")
    r.call("remove again", os.removexattr, "f", "user.a")
    r.call("list", _list, "f")


@case(A)
def case_create_replace_flags(ctx: Ctx) -> None:
    _touch("f")
    r = ctx.rec
    r.call("REPLACE missing", os.setxattr, "f", "user.k", b"1", os.XATTR_REPLACE)
    r.call("CREATE new", os.setxattr, "f", "user.k", b"1", os.XATTR_CREATE)
    r.call("CREATE existing", os.setxattr, "f", "user.k", b"2", os.XATTR_CREATE)
    r.call("REPLACE existing", os.setxattr, "f", "user.k", b"3", os.XATTR_REPLACE)
    r.call("CREATE|REPLACE", os.setxattr, "f", "user.k", b"4",
           os.XATTR_CREATE | os.XATTR_REPLACE)
    r.call("bad flag", os.setxattr, "f", "user.k", b"5", 8)
    r.call("get", os.getxattr, "f", "user.k")


@case(A)
def case_erange(ctx: Ctx) -> None:
    _touch("f")
    os.setxattr("f", "user.long", b"0123456789" * 10)
    os.setxattr("f", "user.x", b"y")
    r = ctx.rec
    r.call("getxattr size query", getxattr_sized, "f", "user.long", 0)
    r.call("getxattr buf 10", getxattr_sized, "f", "user.long", 10)
    r.call("getxattr buf 100", getxattr_sized, "f", "user.long", 100)
    r.call("getxattr buf 99", getxattr_sized, "f", "user.long", 99)
    r.call("listxattr size query", listxattr_sized, "f", 0)
    r.call("listxattr buf 5", listxattr_sized, "f", 5)
    r.call("listxattr exact", lambda: sorted(
        listxattr_sized("f", listxattr_sized("f", 0)).split(b"\0")))


@case(A)
def case_value_size_limits(ctx: Ctx) -> None:
    _touch("f")
    r = ctx.rec
    for n in (4096, 65535, 65536, 65537, 200000):
        r.call(f"set value {n}", os.setxattr, "f", f"user.v{n}", b"z" * n)
        r.call(f"get value {n} len", lambda n=n: len(os.getxattr("f", f"user.v{n}")))


@case(A)
def case_name_limits(ctx: Ctx) -> None:
    _touch("f")
    r = ctx.rec
    r.call("name 255", os.setxattr, "f", "user." + "n" * 250, b"v")
    r.call("name 256", os.setxattr, "f", "user." + "n" * 251, b"v")
    r.call("get name 256", os.getxattr, "f", "user." + "n" * 251)
    r.call("empty suffix user.", os.setxattr, "f", "user.", b"v")
    r.call("empty name", os.setxattr, "f", "", b"v")
    r.call("no namespace", os.setxattr, "f", "plain", b"v")
    r.call("unknown namespace", os.setxattr, "f", "bogus.attr", b"v")
    r.call("get unknown namespace", os.getxattr, "f", "bogus.attr")
    r.call("list", _list, "f")


@case(A)
def case_many_attrs(ctx: Ctx) -> None:
    _touch("f")
    for i in range(100):
        os.setxattr("f", f"user.attr{i:03d}", b"%d" % i)
    r = ctx.rec
    r.note("count", len(os.listxattr("f")))
    r.note("sample", [os.getxattr("f", f"user.attr{i:03d}") for i in (0, 50, 99)])
    for i in range(0, 100, 3):
        os.removexattr("f", f"user.attr{i:03d}")
    r.note("after removal", _list("f"))


@case(A)
def case_on_dir_symlink_special(ctx: Ctx) -> None:
    """user.* is allowed only on regular files and directories."""
    os.mkdir("d")
    _touch("t")
    os.symlink("t", "s")
    os.mkfifo("p")
    os.mknod("c", 0o020644, os.makedev(1, 3))
    r = ctx.rec
    r.call("dir set", os.setxattr, "d", "user.k", b"d")
    r.call("dir get", os.getxattr, "d", "user.k")
    r.call("symlink lset", os.setxattr, "s", "user.k", b"s", follow_symlinks=False)
    r.call("symlink lget", os.getxattr, "s", "user.k", follow_symlinks=False)
    r.call("symlink llist", _list, "s", False)
    r.call("via symlink set (follows)", os.setxattr, "s", "user.t", b"t")
    r.call("target list", _list, "t")
    r.call("fifo set", os.setxattr, "p", "user.k", b"p")
    r.call("fifo get", os.getxattr, "p", "user.k")
    r.call("chr set", os.setxattr, "c", "user.k", b"c")
    r.call("symlink trusted lset", os.setxattr, "s", "trusted.k", b"s",
           follow_symlinks=False)
    r.call("symlink trusted lget", os.getxattr, "s", "trusted.k", follow_symlinks=False)


@case(A)
def case_trusted_and_security(ctx: Ctx) -> None:
    _touch("f", 0o666)
    r = ctx.rec
    r.call("root set trusted", os.setxattr, "f", "trusted.t", b"T")
    r.call("root set security", os.setxattr, "f", "security.s", b"S")
    r.call("root list", _list, "f")

    def body(rec: Recorder) -> None:
        rec.call("user get trusted", os.getxattr, "f", "trusted.t")
        rec.call("user set trusted", os.setxattr, "f", "trusted.u", b"u")
        rec.call("user list", _list, "f")
        rec.call("user get security", os.getxattr, "f", "security.s")
        rec.call("user set security", os.setxattr, "f", "security.u", b"u")
        rec.call("user remove trusted", os.removexattr, "f", "trusted.t")

    ctx.as_user(body)


@case(A)
def case_user_permissions(ctx: Ctx) -> None:
    """user.* needs read permission to get and write permission to set."""
    _touch("ro", 0o644)
    _touch("rw", 0o666)
    _touch("none", 0o600)
    for n in ("ro", "rw", "none"):
        os.setxattr(n, "user.k", b"root")

    def body(rec: Recorder) -> None:
        for n in ("ro", "rw", "none"):
            rec.call(f"get {n}", os.getxattr, n, "user.k")
            rec.call(f"set {n}", os.setxattr, n, "user.k", b"user")
            rec.call(f"list {n}", _list, n)
            rec.call(f"remove {n}", os.removexattr, n, "user.j")

    ctx.as_user(body)


@case(A)
def case_sticky_dir_user_xattr(ctx: Ctx) -> None:
    """user.* on a sticky directory is reserved to its owner (and root)."""
    os.mkdir("t")
    os.chmod("t", 0o1777)

    def body(rec: Recorder) -> None:
        rec.call("set on others' sticky dir", os.setxattr, "t", "user.k", b"v")
        rec.call("get on others' sticky dir", os.getxattr, "t", "user.k")

    ctx.as_user(body)


@case(A)
def case_survive_rename_and_link(ctx: Ctx) -> None:
    _touch("f")
    os.setxattr("f", "user.k", b"kept")
    os.rename("f", "g")
    os.link("g", "h")
    r = ctx.rec
    r.call("get via renamed", os.getxattr, "g", "user.k")
    r.call("get via link", os.getxattr, "h", "user.k")
    os.setxattr("h", "user.k", b"changed")
    r.call("change seen via other link", os.getxattr, "g", "user.k")
    os.unlink("g")
    os.unlink("h")
    _touch("g")
    r.call("new file has none", _list, "g")


@case(A)
def case_fd_calls(ctx: Ctx) -> None:
    _touch("f")
    fd = os.open("f", os.O_RDONLY)
    r = ctx.rec
    r.call("fsetxattr on O_RDONLY fd", os.setxattr, fd, "user.k", b"v")
    r.call("fgetxattr", os.getxattr, fd, "user.k")
    r.call("flistxattr", os.listxattr, fd)
    r.call("fremovexattr", os.removexattr, fd, "user.k")
    os.unlink("f")
    r.call("fsetxattr unlinked", os.setxattr, fd, "user.z", b"v")
    r.call("fgetxattr unlinked", os.getxattr, fd, "user.z")
    pfd = os.open(".", os.O_PATH)
    r.call("fsetxattr O_PATH", os.setxattr, pfd, "user.k", b"v")


@case(A)
def case_binary_values(ctx: Ctx) -> None:
    _touch("f")
    val = bytes(range(256)) * 4
    r = ctx.rec
    r.call("set binary", os.setxattr, "f", "user.bin", val)
    r.call("get binary equal", lambda: os.getxattr("f", "user.bin") == val)
    r.call("set with NUL in value", os.setxattr, "f", "user.nul", b"a\0b")
    r.call("get", os.getxattr, "f", "user.nul")


@case(A, mount="size=1m,nr_inodes=4")
def case_enospc_inode_budget(ctx: Ctx) -> None:
    """Xattrs are charged to the nr_inodes space (1 KiB per inode); setting more
    than it holds fails with ENOSPC."""
    _touch("f")
    r = ctx.rec
    done = 0
    err = None
    for i in range(200):
        try:
            os.setxattr("f", f"user.big{i}", b"v" * 500)
            done += 1
        except OSError as e:
            err = e.errno
            break
    r.note("set before failure", done)
    r.note("errno", errname(err) if err else None)
    r.call("small one", os.setxattr, "f", "user.s", b"")
    r.call("remove one", os.removexattr, "f", "user.big0")
    r.call("set again", os.setxattr, "f", "user.big0", b"v" * 500)
    r.call("create file when spent", os.mkfifo, "p")


# -- POSIX ACLs -------------------------------------------------------------

ACL_USER_OBJ, ACL_USER, ACL_GROUP_OBJ, ACL_GROUP, ACL_MASK, ACL_OTHER = (
    0x01, 0x02, 0x04, 0x08, 0x10, 0x20)
NO_ID = 0xFFFFFFFF


def acl_xattr(entries: list[tuple[int, int, int]]) -> bytes:
    """The system.posix_acl_* xattr encoding: version 2, then (tag, perm, id) entries."""
    return struct.pack("<I", 2) + b"".join(struct.pack("<HHI", t, p, i) for t, p, i in entries)


def acl_entries(blob: bytes) -> list[tuple[int, int, int]]:
    return [struct.unpack_from("<HHI", blob, 4 + 8 * k) for k in range((len(blob) - 4) // 8)]


@case(ACL)
def case_minimal_acl_sets_mode(ctx: Ctx) -> None:
    _touch("f", 0o644)
    r = ctx.rec
    blob = acl_xattr([(ACL_USER_OBJ, 7, NO_ID), (ACL_GROUP_OBJ, 5, NO_ID),
                      (ACL_OTHER, 0, NO_ID)])
    r.call("set minimal access ACL", os.setxattr, "f", "system.posix_acl_access", blob)
    r.stat("f")
    r.call("get access ACL", os.getxattr, "f", "system.posix_acl_access")
    r.call("list", _list, "f")


@case(ACL)
def case_extended_acl_grants_user(ctx: Ctx) -> None:
    _touch("f", 0o600)
    r = ctx.rec
    blob = acl_xattr([(ACL_USER_OBJ, 6, NO_ID), (ACL_USER, 6, OTHER_UID),
                      (ACL_GROUP_OBJ, 0, NO_ID), (ACL_MASK, 6, NO_ID), (ACL_OTHER, 0, NO_ID)])
    r.call("set extended ACL", os.setxattr, "f", "system.posix_acl_access", blob)
    r.stat("f")
    r.call("entries", lambda: acl_entries(os.getxattr("f", "system.posix_acl_access")))
    ctx.as_user(lambda rec: rec.open("f", os.O_RDWR, label="named user opens rw"),
                OTHER_UID, OTHER_GID)
    ctx.as_user(lambda rec: rec.open("f", os.O_RDONLY, label="other user opens"),
                OTHER_UID + 7, OTHER_GID + 7)
    r.call("chmod 0600 narrows mask", os.chmod, "f", 0o600)
    r.call("entries after chmod",
           lambda: acl_entries(os.getxattr("f", "system.posix_acl_access")))
    ctx.as_user(lambda rec: rec.open("f", os.O_RDWR, label="named user after mask 0"),
                OTHER_UID, OTHER_GID)


@case(ACL)
def case_default_acl_inherited(ctx: Ctx) -> None:
    os.mkdir("d")
    r = ctx.rec
    blob = acl_xattr([(ACL_USER_OBJ, 7, NO_ID), (ACL_USER, 5, OTHER_UID),
                      (ACL_GROUP_OBJ, 5, NO_ID), (ACL_MASK, 7, NO_ID), (ACL_OTHER, 0, NO_ID)])
    r.call("set default ACL", os.setxattr, "d", "system.posix_acl_default", blob)
    _touch("d/f", 0o666)
    os.mkdir("d/sub", 0o777)
    r.stat("d/f")
    r.stat("d/sub")
    r.call("file access ACL", lambda: acl_entries(
        os.getxattr("d/f", "system.posix_acl_access")))
    r.call("subdir default ACL", lambda: acl_entries(
        os.getxattr("d/sub", "system.posix_acl_default")))
    r.call("default ACL on file", os.setxattr, "d/f", "system.posix_acl_default", blob)


@case(ACL)
def case_invalid_acl(ctx: Ctx) -> None:
    _touch("f")
    r = ctx.rec
    r.call("garbage", os.setxattr, "f", "system.posix_acl_access", b"\x01\x02")
    r.call("bad version", os.setxattr, "f", "system.posix_acl_access",
           struct.pack("<I", 9) + struct.pack("<HHI", 1, 7, NO_ID))
    r.call("missing mask", os.setxattr, "f", "system.posix_acl_access",
           acl_xattr([(ACL_USER_OBJ, 7, NO_ID), (ACL_USER, 7, 5),
                      (ACL_GROUP_OBJ, 0, NO_ID), (ACL_OTHER, 0, NO_ID)]))
    r.call("get absent", os.getxattr, "f", "system.posix_acl_access")
    r.call("unknown system attr", os.setxattr, "f", "system.bogus", b"x")


# Each rule of fs/posix_acl.c that tmpfs applies, one case per rule. AA / AD
# are the two names; _acl(...) builds a blob from (tag, perm[, id]) pairs.

AA, AD = "system.posix_acl_access", "system.posix_acl_default"


def _acl(*entries: tuple[int, ...]) -> bytes:
    return acl_xattr([(e[0], e[1], e[2] if len(e) > 2 else NO_ID) for e in entries])


def _get(path: str, name: str = AA, follow: bool = True) -> list[tuple[int, int, int]]:
    return acl_entries(os.getxattr(path, name, follow_symlinks=follow))


def _mode(path: str) -> str:
    return oct(os.lstat(path).st_mode & 0o7777)


# a default ACL that names OTHER_UID and SHARED_GID, with a full mask
_DEFAULT = _acl((ACL_USER_OBJ, 7), (ACL_USER, 6, OTHER_UID), (ACL_GROUP_OBJ, 5),
                (ACL_GROUP, 7, SHARED_GID), (ACL_MASK, 7), (ACL_OTHER, 1))


@case(ACL)
def case_invalid_acls(ctx: Ctx) -> None:
    """posix_acl_from_xattr and posix_acl_valid: which blobs are refused, how."""
    _touch("f")
    r = ctx.rec
    bad = {
        "perm beyond rwx": _acl((ACL_USER_OBJ, 8), (ACL_GROUP_OBJ, 5), (ACL_OTHER, 0)),
        "unknown tag": _acl((ACL_USER_OBJ, 7), (ACL_GROUP_OBJ, 5), (0x40, 0), (ACL_OTHER, 0)),
        "no owner entry": _acl((ACL_GROUP_OBJ, 5), (ACL_OTHER, 0)),
        "no group entry": _acl((ACL_USER_OBJ, 7), (ACL_OTHER, 0)),
        "no other entry": _acl((ACL_USER_OBJ, 7), (ACL_GROUP_OBJ, 5)),
        "two owner entries": _acl((ACL_USER_OBJ, 7), (ACL_USER_OBJ, 7), (ACL_GROUP_OBJ, 5),
                                  (ACL_OTHER, 0)),
        "group before owner": _acl((ACL_GROUP_OBJ, 5), (ACL_USER_OBJ, 7), (ACL_OTHER, 0)),
        "named user after group": _acl((ACL_USER_OBJ, 7), (ACL_GROUP_OBJ, 5),
                                       (ACL_USER, 7, 5), (ACL_MASK, 7), (ACL_OTHER, 0)),
        "named group without mask": _acl((ACL_USER_OBJ, 7), (ACL_GROUP_OBJ, 5),
                                         (ACL_GROUP, 7, 5), (ACL_OTHER, 0)),
        "two masks": _acl((ACL_USER_OBJ, 7), (ACL_GROUP_OBJ, 5), (ACL_MASK, 7),
                          (ACL_MASK, 7), (ACL_OTHER, 0)),
        "mask after other": _acl((ACL_USER_OBJ, 7), (ACL_GROUP_OBJ, 5), (ACL_OTHER, 0),
                                 (ACL_MASK, 7)),
        "named user id -1": _acl((ACL_USER_OBJ, 7), (ACL_USER, 7, NO_ID), (ACL_GROUP_OBJ, 5),
                                 (ACL_MASK, 7), (ACL_OTHER, 0)),
        "version 1": struct.pack("<I", 1) + _acl((ACL_USER_OBJ, 7), (ACL_GROUP_OBJ, 5),
                                                 (ACL_OTHER, 0))[4:],
        "short header": b"\x02\x00",
        "ragged entry": _acl((ACL_USER_OBJ, 7), (ACL_GROUP_OBJ, 5), (ACL_OTHER, 0)) + b"x",
    }
    for label, blob in bad.items():
        r.call(label, os.setxattr, "f", AA, blob)
    r.stat("f")
    r.call("nothing stored", os.getxattr, "f", AA)
    os.mkdir("d")
    r.call("invalid default on a dir", os.setxattr, "d", AD, bad["no other entry"])
    r.call("invalid default on a file", os.setxattr, "f", AD, bad["no other entry"])
    r.call("bad version default on a file", os.setxattr, "f", AD, bad["version 1"])


@case(ACL)
def case_named_entries_neither_sorted_nor_unique(ctx: Ctx) -> None:
    """6.18 accepts named entries in any order and repeated, and keeps them so;
    the ids of the unnamed entries read back as -1."""
    _touch("f")
    r = ctx.rec
    r.call("unsorted users", os.setxattr, "f", AA, _acl(
        (ACL_USER_OBJ, 7, 5), (ACL_USER, 1, 2000), (ACL_USER, 2, 1000), (ACL_GROUP_OBJ, 5, 6),
        (ACL_GROUP, 4, 30), (ACL_GROUP, 1, 20), (ACL_MASK, 7, 8), (ACL_OTHER, 0, 9)))
    r.call("entries", _get, "f")
    r.call("repeated user", os.setxattr, "f", AA, _acl(
        (ACL_USER_OBJ, 7), (ACL_USER, 1, 1000), (ACL_USER, 2, 1000), (ACL_GROUP_OBJ, 5),
        (ACL_MASK, 3), (ACL_OTHER, 0)))
    r.call("entries", _get, "f")
    r.stat("f")


@case(ACL)
def case_minimal_acl_is_only_a_mode(ctx: Ctx) -> None:
    """An access ACL equivalent to mode bits changes the mode and is not kept; a
    mask makes it extended even without named entries."""
    _touch("f", 0o4644)
    r = ctx.rec
    for perms in ((7, 5, 0), (6, 0, 4), (0, 0, 0), (7, 7, 7)):
        u, g, o = perms
        r.call(f"set minimal {perms}", os.setxattr, "f", AA,
               _acl((ACL_USER_OBJ, u), (ACL_GROUP_OBJ, g), (ACL_OTHER, o)))
        r.note(f"mode {perms}", _mode("f"))
        r.call("get", os.getxattr, "f", AA)
        r.call("list", _list, "f")
    r.call("mask only", os.setxattr, "f", AA,
           _acl((ACL_USER_OBJ, 6), (ACL_GROUP_OBJ, 7), (ACL_MASK, 4), (ACL_OTHER, 1)))
    r.note("mode with mask", _mode("f"))
    r.call("entries", _get, "f")
    r.call("list", _list, "f")
    r.call("minimal again drops it", os.setxattr, "f", AA,
           _acl((ACL_USER_OBJ, 6), (ACL_GROUP_OBJ, 4), (ACL_OTHER, 4)))
    r.call("get", os.getxattr, "f", AA)
    r.note("mode", _mode("f"))


@case(ACL)
def case_acl_set_remove_and_flags(ctx: Ctx) -> None:
    """XATTR_CREATE/REPLACE mean nothing to ACLs; removing an absent ACL and an
    empty value both succeed; removal leaves the mode as the ACL made it."""
    _touch("f", 0o640)
    ext = _acl((ACL_USER_OBJ, 7), (ACL_USER, 5, OTHER_UID), (ACL_GROUP_OBJ, 4),
               (ACL_MASK, 1), (ACL_OTHER, 4))
    r = ctx.rec
    r.call("remove absent", os.removexattr, "f", AA)
    r.call("REPLACE absent", os.setxattr, "f", AA, ext, os.XATTR_REPLACE)
    r.call("CREATE existing", os.setxattr, "f", AA, ext, os.XATTR_CREATE)
    r.call("entries", _get, "f")
    r.note("mode", _mode("f"))
    r.call("remove", os.removexattr, "f", AA)
    r.call("get removed", os.getxattr, "f", AA)
    r.note("mode after remove", _mode("f"))
    r.call("set again", os.setxattr, "f", AA, ext)
    r.call("empty value removes", os.setxattr, "f", AA, b"")
    r.call("get", os.getxattr, "f", AA)
    r.call("set again", os.setxattr, "f", AA, ext)
    r.call("bare header removes", os.setxattr, "f", AA, struct.pack("<I", 2))
    r.call("get", os.getxattr, "f", AA)
    r.call("list", _list, "f")


@case(ACL)
def case_acls_by_file_type(ctx: Ctx) -> None:
    """Default ACLs only on directories; access ACLs on every type but symlinks."""
    os.mkdir("d")
    _touch("f")
    os.mkfifo("p")
    os.mknod("c", 0o020644, os.makedev(1, 3))
    os.symlink("f", "s")
    ext = _acl((ACL_USER_OBJ, 6), (ACL_USER, 4, OTHER_UID), (ACL_GROUP_OBJ, 4),
               (ACL_MASK, 4), (ACL_OTHER, 0))
    r = ctx.rec
    for n in ("d", "f", "p", "c"):
        r.call(f"{n} default", os.setxattr, n, AD, _DEFAULT)
        r.call(f"{n} remove default", os.removexattr, n, AD)
        r.call(f"{n} access", os.setxattr, n, AA, ext)
        r.call(f"{n} entries", _get, n)
        r.call(f"{n} list", _list, n)
        r.note(f"{n} mode", _mode(n))
    r.call("symlink lset access", os.setxattr, "s", AA, ext, follow_symlinks=False)
    r.call("symlink lset default", os.setxattr, "s", AD, _DEFAULT, follow_symlinks=False)
    r.call("symlink lget access", os.getxattr, "s", AA, follow_symlinks=False)
    r.call("symlink lremove", os.removexattr, "s", AA, follow_symlinks=False)
    r.call("symlink llist", _list, "s", False)
    r.call("through the symlink", _get, "s")


@case(ACL)
def case_only_the_owner_sets_acls(ctx: Ctx) -> None:
    _touch("f", 0o666)
    os.mkdir("d", 0o777)
    os.chmod("d", 0o777)
    ext = _acl((ACL_USER_OBJ, 6), (ACL_USER, 6, OTHER_UID), (ACL_GROUP_OBJ, 6),
               (ACL_MASK, 6), (ACL_OTHER, 6))
    r = ctx.rec
    r.call("root sets", os.setxattr, "f", AA, ext)

    def other(rec: Recorder) -> None:
        rec.call("non-owner sets access", os.setxattr, "f", AA, ext)
        rec.call("non-owner removes access", os.removexattr, "f", AA)
        rec.call("non-owner sets default", os.setxattr, "d", AD, _DEFAULT)
        rec.call("non-owner reads", _get, "f")
        rec.call("non-owner lists", _list, "f")

    ctx.as_user(other)
    os.chown("f", OTHER_UID, OTHER_GID)

    def owner(rec: Recorder) -> None:
        rec.call("owner replaces", os.setxattr, "f", AA, _acl(
            (ACL_USER_OBJ, 6), (ACL_GROUP_OBJ, 4), (ACL_MASK, 4), (ACL_OTHER, 0)))
        rec.call("entries", _get, "f")
        rec.call("owner removes", os.removexattr, "f", AA)

    ctx.as_user(owner)
    r.note("mode", _mode("f"))


@case(ACL)
def case_access_checks_through_the_acl(ctx: Ctx) -> None:
    """posix_acl_permission: owner entry, named user through the mask, owning and
    named groups (any matching group that grants, else denied even if other
    would allow), other."""
    _touch("f", 0o600)
    os.chown("f", THIRD_UID, THIRD_GID)
    os.setxattr("f", AA, _acl((ACL_USER_OBJ, 0), (ACL_USER, 6, OTHER_UID),
                              (ACL_USER, 7, 2001), (ACL_GROUP_OBJ, 4),
                              (ACL_GROUP, 2, SHARED_GID), (ACL_MASK, 6), (ACL_OTHER, 4)))
    ctx.rec.stat("f")

    def probe(rec: Recorder) -> None:
        for bit, nm in ((os.R_OK, "R"), (os.W_OK, "W"), (os.X_OK, "X")):
            rec.note(f"access {nm}", os.access("f", bit))
        rec.open("f", os.O_RDONLY)
        rec.open("f", os.O_WRONLY)
        rec.open("f", os.O_RDWR)

    ctx.as_user(probe, THIRD_UID, THIRD_GID, label="[owner, entry 0] ")
    ctx.as_user(probe, OTHER_UID, OTHER_GID, label="[named user rw] ")
    ctx.as_user(probe, 2001, OTHER_GID, label="[named user rwx, mask rw] ")
    ctx.as_user(probe, 2000, THIRD_GID, label="[owning group r] ")
    ctx.as_user(probe, 2000, 2000, groups=(SHARED_GID,), label="[named group w] ")
    ctx.as_user(probe, 2000, THIRD_GID, groups=(SHARED_GID,), label="[two groups] ")
    ctx.as_user(probe, 2000, 2000, label="[other r] ")
    ctx.rec.note("root X with mask x-less", os.access("f", os.X_OK))


@case(ACL)
def case_directory_acl_grants_create(ctx: Ctx) -> None:
    """A directory's access ACL decides who may search, list and create in it."""
    os.mkdir("d", 0o700)
    for uid in (OTHER_UID, THIRD_UID, 2000):
        _touch(f"d/f{uid}", 0o644)
    os.setxattr("d", AA, _acl((ACL_USER_OBJ, 7), (ACL_USER, 7, OTHER_UID),
                              (ACL_USER, 5, THIRD_UID), (ACL_GROUP_OBJ, 0),
                              (ACL_MASK, 7), (ACL_OTHER, 0)))
    ctx.rec.stat("d")

    def body(rec: Recorder) -> None:  # each user its own names: d/f<uid>, d/new<uid>
        me = os.getuid()
        rec.call("list", lambda: len(os.listdir("d")))
        rec.call("stat own file", lambda: os.stat(f"d/f{me}").st_size)
        rec.call("create", os.mkfifo, f"d/new{me}")
        rec.call("unlink", os.unlink, f"d/f{me}")

    ctx.as_user(body, OTHER_UID, OTHER_GID, label="[named rwx] ")
    ctx.as_user(body, THIRD_UID, THIRD_GID, label="[named r-x] ")
    ctx.as_user(body, 2000, 2000, label="[other ---] ")
    os.chmod("d", 0o750)  # the mask becomes r-x: the named rwx user loses w
    ctx.rec.call("entries after chmod", _get, "d")
    _touch(f"d/f{OTHER_UID}")
    os.unlink(f"d/new{OTHER_UID}")
    ctx.as_user(body, OTHER_UID, OTHER_GID, label="[named rwx, mask r-x] ")


@case(ACL)
def case_chmod_rewrites_the_acl(ctx: Ctx) -> None:
    """posix_acl_chmod: owner, mask and other take the new bits; named entries and
    the owning group entry stay; chmod never drops the ACL."""
    _touch("f", 0o644)
    os.setxattr("f", AA, _acl((ACL_USER_OBJ, 6), (ACL_USER, 7, OTHER_UID),
                              (ACL_GROUP_OBJ, 5), (ACL_GROUP, 3, SHARED_GID),
                              (ACL_MASK, 7), (ACL_OTHER, 4)))
    r = ctx.rec
    for m in (0o750, 0o700, 0o4777, 0o000, 0o644):
        r.call(f"chmod {m:o}", os.chmod, "f", m)
        r.note(f"mode {m:o}", _mode("f"))
        r.call(f"entries {m:o}", _get, "f")
    ctx.as_user(lambda rec: rec.open("f", os.O_RDWR, label="named user, mask r--"))
    os.mkdir("d")
    os.setxattr("d", AD, _DEFAULT)
    r.call("chmod dir", os.chmod, "d", 0o700)
    r.call("default ACL untouched", _get, "d", AD)
    r.call("dir has no access ACL", os.getxattr, "d", AA)


@case(ACL)
def case_default_acl_shapes_new_files(ctx: Ctx) -> None:
    """posix_acl_create for regular files, FIFOs and O_TMPFILE: the requested
    mode cuts the owner, mask and other entries; the umask is ignored."""
    os.mkdir("d")
    os.setxattr("d", AD, _DEFAULT)
    r = ctx.rec
    for umask in (0o022, 0o077, 0o000):
        os.umask(umask)
        for m in (0o666, 0o640, 0o604, 0o700, 0o4755, 0o000):
            name = f"d/f{m:o}-{umask:o}"
            os.close(os.open(name, os.O_CREAT | os.O_WRONLY | os.O_EXCL, m))
            r.note(f"{name} mode", _mode(name))
            r.call(f"{name} access ACL", _get, name)
            r.call(f"{name} default ACL", os.getxattr, name, AD)
    os.umask(0o022)
    os.mkfifo("d/p", 0o664)
    r.note("fifo mode", _mode("d/p"))
    r.call("fifo ACL", _get, "d/p")
    os.symlink("x", "d/s")
    r.note("symlink mode", _mode("d/s"))
    r.call("symlink list", _list, "d/s", False)
    fd = os.open("d", os.O_TMPFILE | os.O_RDWR, 0o640)
    r.note("tmpfile mode", oct(os.fstat(fd).st_mode & 0o7777))
    r.call("tmpfile ACL", lambda: acl_entries(os.getxattr(fd, AA)))
    os.close(fd)


@case(ACL)
def case_default_acl_inherited_by_dirs(ctx: Ctx) -> None:
    """A new directory gets the default ACL as its own default ACL, and an access
    ACL cut down by its mode; the inheritance goes on below it."""
    os.mkdir("d")
    os.setxattr("d", AD, _DEFAULT)
    r = ctx.rec
    os.umask(0o077)
    for m in (0o777, 0o750, 0o700, 0o1777):
        os.mkdir(f"d/s{m:o}", m)
        r.note(f"s{m:o} mode", _mode(f"d/s{m:o}"))
        r.call(f"s{m:o} access", _get, f"d/s{m:o}")
        r.call(f"s{m:o} default", _get, f"d/s{m:o}", AD)
    os.mkdir("d/s777/deeper", 0o755)
    os.close(os.open("d/s777/deeper/f", os.O_CREAT | os.O_WRONLY, 0o666))
    r.note("deeper mode", _mode("d/s777/deeper"))
    r.call("deeper default", _get, "d/s777/deeper", AD)
    r.note("deeper/f mode", _mode("d/s777/deeper/f"))
    r.call("deeper/f access", _get, "d/s777/deeper/f")
    os.removexattr("d/s777", AD)
    os.mkdir("d/s777/plain", 0o777)
    r.note("after removing the default: umask again", _mode("d/s777/plain"))
    r.call("no ACLs", _list, "d/s777/plain")


@case(ACL)
def case_minimal_default_acl(ctx: Ctx) -> None:
    """A default ACL of three entries is kept (defaults are never reduced to a
    mode) and replaces the umask; its children get no access ACL."""
    os.mkdir("d")
    r = ctx.rec
    r.call("set minimal default", os.setxattr, "d", AD,
           _acl((ACL_USER_OBJ, 7), (ACL_GROUP_OBJ, 5), (ACL_OTHER, 5)))
    r.call("kept", _get, "d", AD)
    r.call("list", _list, "d")
    os.umask(0o077)
    os.close(os.open("d/f", os.O_CREAT | os.O_WRONLY, 0o666))
    os.mkdir("d/sub", 0o777)
    os.mknod("d/c", 0o020666, os.makedev(1, 3))
    for n in ("d/f", "d/sub", "d/c"):
        r.note(f"{n} mode", _mode(n))
        r.call(f"{n} list", _list, n)


@case(ACL)
def case_umask_without_default_acl(ctx: Ctx) -> None:
    """Without a default ACL the umask applies to every kind of new inode."""
    r = ctx.rec
    for umask in (0o022, 0o077, 0o002, 0o000, 0o777):
        os.umask(umask)
        os.close(os.open(f"f{umask:o}", os.O_CREAT | os.O_WRONLY, 0o666))
        os.mkdir(f"d{umask:o}", 0o1777)
        os.mkfifo(f"p{umask:o}", 0o666)
        os.symlink("x", f"s{umask:o}")
        fd = os.open(".", os.O_TMPFILE | os.O_RDWR, 0o666)
        r.note(f"umask {umask:o}", [_mode(f"{k}{umask:o}") for k in "fdps"]
               + [oct(os.fstat(fd).st_mode & 0o7777)])
        os.close(fd)
        r.call(f"no ACLs {umask:o}", _list, f"d{umask:o}")


@case(ACL)
def case_default_acl_and_setgid_dirs(ctx: Ctx) -> None:
    """In a setgid directory with a default ACL a new subdirectory gets both the
    directory's group and S_ISGID, and the ACLs."""
    os.mkdir("d")
    os.chown("d", 0, SHARED_GID)
    os.chmod("d", 0o2775)
    os.setxattr("d", AD, _DEFAULT)
    r = ctx.rec

    def body(rec: Recorder) -> None:
        os.umask(0o022)
        rec.call("mkdir", os.mkdir, "d/sub", 0o777)
        rec.stat("d/sub")
        rec.call("sub access", _get, "d/sub")
        rec.call("create", lambda: os.close(os.open("d/f", os.O_CREAT | os.O_WRONLY, 0o2775)))
        rec.stat("d/f")

    ctx.as_user(body, OTHER_UID, OTHER_GID, groups=(SHARED_GID,))
    r.call("root reads sub default", _get, "d/sub", AD)


def _sgid_file(name: str) -> None:
    _touch(name, 0o644)
    os.chown(name, OTHER_UID, SHARED_GID)
    os.chmod(name, 0o2775)


@case(ACL)
def case_setting_acls_and_setgid(ctx: Ctx) -> None:
    """posix_acl_update_mode: setting (or removing) an access ACL drops S_ISGID
    when the caller is neither in the file's group nor privileged; a default ACL
    never does."""
    ext = _acl((ACL_USER_OBJ, 7), (ACL_USER, 5, THIRD_UID), (ACL_GROUP_OBJ, 7),
               (ACL_MASK, 7), (ACL_OTHER, 5))
    minimal = _acl((ACL_USER_OBJ, 7), (ACL_GROUP_OBJ, 5), (ACL_OTHER, 5))
    for n in ("out-ext", "out-min", "out-rm", "in-ext", "supp-ext", "root-ext"):
        _sgid_file(n)
    os.setxattr("out-rm", AA, ext)
    os.chmod("out-rm", 0o2775)
    os.mkdir("d")
    os.chown("d", OTHER_UID, SHARED_GID)
    os.chmod("d", 0o2775)

    def outsider(rec: Recorder) -> None:
        rec.call("extended", os.setxattr, "out-ext", AA, ext)
        rec.call("minimal", os.setxattr, "out-min", AA, minimal)
        rec.call("remove", os.removexattr, "out-rm", AA)
        rec.call("default on dir", os.setxattr, "d", AD, _DEFAULT)

    def member(rec: Recorder) -> None:
        rec.call("extended", os.setxattr, "in-ext", AA, ext)

    def supplementary(rec: Recorder) -> None:
        rec.call("extended", os.setxattr, "supp-ext", AA, ext)

    ctx.as_user(outsider, OTHER_UID, OTHER_GID, label="[owner not in group] ")
    ctx.as_user(member, OTHER_UID, SHARED_GID, label="[owner in group] ")
    ctx.as_user(supplementary, OTHER_UID, OTHER_GID, groups=(SHARED_GID,),
                label="[owner in group (supplementary)] ")
    ctx.rec.call("root", os.setxattr, "root-ext", AA, ext)
    for n in ("out-ext", "out-min", "out-rm", "in-ext", "supp-ext", "root-ext", "d"):
        ctx.rec.note(f"{n} mode", _mode(n))


@case(ACL)
def case_acls_follow_the_inode(ctx: Ctx) -> None:
    """ACLs belong to the inode: kept across rename and link, gone with it."""
    os.mkdir("d")
    os.setxattr("d", AD, _DEFAULT)
    os.close(os.open("d/f", os.O_CREAT | os.O_WRONLY, 0o640))
    os.rename("d/f", "g")
    os.link("g", "h")
    os.rename("d", "e")
    r = ctx.rec
    r.call("renamed file", _get, "g")
    r.call("hard link", _get, "h")
    r.call("renamed dir", _get, "e", AD)
    os.chmod("h", 0o600)
    r.call("chmod through the link", _get, "g")
    os.unlink("g")
    os.unlink("h")
    _touch("g")
    r.call("new file at the old name", _list, "g")


@case(ACL)
def case_acls_in_listxattr(ctx: Ctx) -> None:
    """listxattr names both ACLs next to the other attributes, to everyone."""
    os.mkdir("d", 0o755)
    os.setxattr("d", "user.u", b"1")
    os.setxattr("d", "trusted.t", b"2")
    os.setxattr("d", AD, _DEFAULT)
    os.setxattr("d", AA, _acl((ACL_USER_OBJ, 7), (ACL_GROUP_OBJ, 5), (ACL_MASK, 5),
                              (ACL_OTHER, 5)))
    r = ctx.rec
    r.call("root", _list, "d")
    r.call("sizes", lambda: listxattr_sized("d", 0))
    ctx.as_user(lambda rec: rec.call("user", _list, "d"))
    r.call("getxattr size probe", getxattr_sized, "d", AD, 0)
    r.call("getxattr too small", getxattr_sized, "d", AD, 10)


@case(ACL)
def case_acl_changes_ctime(ctx: Ctx) -> None:
    """Setting or removing an ACL -- even an absent one -- moves ctime; a refused
    one does not."""
    _touch("f")
    os.mkdir("d")
    ext = _acl((ACL_USER_OBJ, 6), (ACL_USER, 4, OTHER_UID), (ACL_GROUP_OBJ, 4),
               (ACL_MASK, 4), (ACL_OTHER, 4))
    r = ctx.rec
    changes(r, "set access", ["f"], lambda: os.setxattr("f", AA, ext))
    changes(r, "get access", ["f"], lambda: os.getxattr("f", AA))
    changes(r, "remove access", ["f"], lambda: os.removexattr("f", AA))
    changes(r, "remove absent", ["f"], lambda: os.removexattr("f", AA))
    changes(r, "set default", ["d"], lambda: os.setxattr("d", AD, _DEFAULT))
    changes(r, "default on a file", ["f"], lambda: os.setxattr("f", AD, _DEFAULT))
