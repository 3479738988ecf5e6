"""Extended attributes: namespaces, XATTR_CREATE/REPLACE, ENODATA, ERANGE, size
limits, permission rules, and POSIX ACLs stored as system.posix_acl_* xattrs.

listxattr is compared as a sorted set: the order of names is unspecified."""

from __future__ import annotations

import os
import struct

from .framework import OTHER_GID, OTHER_UID, Ctx, Recorder, case, errname
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
