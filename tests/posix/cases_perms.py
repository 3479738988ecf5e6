"""Permissions and ownership, checked by acting as other users: mode bits and
access(2), sticky directories, setgid directories and inheritance, chown/chmod by
non-owners, setuid/setgid cleared on write, truncate and chown."""

from __future__ import annotations

import os

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

A = "perms"
U, G = OTHER_UID, OTHER_GID


def _touch(name: str, mode: int = 0o644, data: bytes = b"") -> None:
    fd = os.open(name, os.O_CREAT | os.O_WRONLY, mode)
    os.write(fd, data)
    os.close(fd)
    os.chmod(name, mode)


def _create(rec: Recorder, name: str, mode: int = 0o644) -> None:
    fd = rec.open(name, os.O_CREAT | os.O_WRONLY | os.O_EXCL, mode)
    if fd is not None:
        os.close(fd)


@case(A)
def case_access_matrix(ctx: Ctx) -> None:
    """access(2) as the owner, a group member and others, for several modes."""
    modes = (0o000, 0o400, 0o040, 0o004, 0o200, 0o020, 0o002, 0o100, 0o010, 0o001,
             0o755, 0o640, 0o707, 0o070)
    for m in modes:
        _touch(f"f{m:o}", m)
        os.chown(f"f{m:o}", U, SHARED_GID)

    def probe(rec: Recorder) -> None:
        for m in modes:
            for bit, nm in ((os.R_OK, "R"), (os.W_OK, "W"), (os.X_OK, "X")):
                rec.note(f"access f{m:o} {nm}", os.access(f"f{m:o}", bit))

    ctx.as_user(probe, U, G, label="[owner] ")
    ctx.as_user(probe, THIRD_UID, THIRD_GID, groups=(SHARED_GID,), label="[group] ")
    ctx.as_user(probe, THIRD_UID, THIRD_GID, label="[other] ")


@case(A)
def case_root_access(ctx: Ctx) -> None:
    """Root ignores r/w bits, but X_OK needs some x bit on a regular file."""
    for m in (0o000, 0o100, 0o010, 0o001, 0o600):
        _touch(f"f{m:o}", m)
        for bit, nm in ((os.R_OK, "R"), (os.W_OK, "W"), (os.X_OK, "X")):
            ctx.rec.note(f"root access f{m:o} {nm}", os.access(f"f{m:o}", bit))
    os.mkdir("d", 0o000)
    ctx.rec.note("root X on dir 000", os.access("d", os.X_OK))


@case(A)
def case_open_denied(ctx: Ctx) -> None:
    _touch("ro", 0o444, b"r")
    _touch("wo", 0o222)
    _touch("none", 0o000)

    def body(rec: Recorder) -> None:
        rec.open("ro", os.O_RDONLY)
        rec.open("ro", os.O_WRONLY)
        rec.open("ro", os.O_RDWR)
        rec.open("wo", os.O_WRONLY)
        rec.open("wo", os.O_RDONLY)
        rec.open("none", os.O_RDONLY)
        rec.open("ro", os.O_RDONLY | os.O_TRUNC)
        rec.open("none", os.O_PATH)

    ctx.as_user(body)


@case(A)
def case_dir_search_and_read(ctx: Ctx) -> None:
    for mode in (0o700, 0o711, 0o744, 0o755, 0o733):
        os.mkdir(f"d{mode:o}")
        _touch(f"d{mode:o}/f")
        os.chmod(f"d{mode:o}", mode)

    def body(rec: Recorder) -> None:
        for mode in (0o700, 0o711, 0o744, 0o755, 0o733):
            d = f"d{mode:o}"
            rec.call(f"listdir {d}", lambda d=d: sorted(os.listdir(d)))
            rec.call(f"stat {d}/f", lambda d=d: os.stat(f"{d}/f").st_size)
            rec.call(f"create in {d}", os.mkfifo, f"{d}/new")
            rec.call(f"unlink in {d}", os.unlink, f"{d}/f")

    ctx.as_user(body)


@case(A)
def case_create_needs_write_and_search(ctx: Ctx) -> None:
    os.mkdir("w", 0o777)
    os.chmod("w", 0o777)
    os.mkdir("nw", 0o755)
    os.mkdir("wnx", 0o666)
    os.chmod("wnx", 0o666)

    def body(rec: Recorder) -> None:
        _create(rec, "w/f")
        _create(rec, "nw/f")
        _create(rec, "wnx/f")
        rec.call("mkdir in nw", os.mkdir, "nw/d")
        rec.call("symlink in nw", os.symlink, "x", "nw/s")
        rec.stat("w/f")

    ctx.as_user(body)


@case(A)
def case_sticky_dir(ctx: Ctx) -> None:
    """In a sticky directory only the file's owner, the dir's owner or root may remove
    or rename an entry."""
    os.mkdir("t")
    os.chmod("t", 0o1777)

    def owner(rec: Recorder) -> None:
        _create(rec, "t/mine", 0o666)
        rec.call("mkdir t/mydir", os.mkdir, "t/mydir", 0o777)

    def intruder(rec: Recorder) -> None:
        rec.call("unlink others' file", os.unlink, "t/mine")
        rec.call("rename others' file", os.rename, "t/mine", "t/stolen")
        rec.call("rename over others' file", os.rename, "t/own", "t/mine")
        rec.call("rmdir others' dir", os.rmdir, "t/mydir")
        rec.call("write others' 0666 file",
                 lambda: os.close(os.open("t/mine", os.O_WRONLY)))
        rec.call("unlink own file", os.unlink, "t/own")

    ctx.as_user(owner, U, G)
    ctx.as_user(lambda rec: _create(rec, "t/own"), THIRD_UID, THIRD_GID)
    ctx.as_user(intruder, THIRD_UID, THIRD_GID)
    ctx.rec.note("after", sorted(os.listdir("t")))
    ctx.as_user(lambda rec: rec.call("owner unlinks", os.unlink, "t/mine"), U, G)


@case(A)
def case_sticky_dir_owner_may_delete(ctx: Ctx) -> None:
    os.mkdir("t")
    os.chown("t", U, G)
    os.chmod("t", 0o1777)
    ctx.as_user(lambda rec: _create(rec, "t/theirs"), THIRD_UID, THIRD_GID)
    ctx.as_user(lambda rec: rec.call("dir owner unlinks", os.unlink, "t/theirs"), U, G)
    ctx.as_user(lambda rec: _create(rec, "t/again"), THIRD_UID, THIRD_GID)
    ctx.rec.call("root unlinks", os.unlink, "t/again")


@case(A)
def case_sticky_rename_dir_out(ctx: Ctx) -> None:
    os.mkdir("t")
    os.chmod("t", 0o1777)
    os.mkdir("dst", 0o777)
    os.chmod("dst", 0o777)
    ctx.as_user(lambda rec: rec.call("mkdir", os.mkdir, "t/d"), U, G)

    def mover(rec: Recorder) -> None:
        rec.call("move others' dir out", os.rename, "t/d", "dst/d")

    ctx.as_user(mover, THIRD_UID, THIRD_GID)
    ctx.as_user(lambda rec: rec.call("owner moves", os.rename, "t/d", "dst/d"), U, G)


@case(A)
def case_setgid_dir_inheritance(ctx: Ctx) -> None:
    """Entries made in a setgid directory take its group; subdirectories also take
    S_ISGID."""
    os.mkdir("sg")
    os.chown("sg", 0, SHARED_GID)
    os.chmod("sg", 0o2777)
    r = ctx.rec
    _create(r, "sg/rootfile")
    r.call("mkdir sg/rootdir", os.mkdir, "sg/rootdir", 0o755)
    r.stat("sg/rootfile")
    r.stat("sg/rootdir")

    def body(rec: Recorder) -> None:
        _create(rec, "sg/userfile")
        rec.call("mkdir", os.mkdir, "sg/userdir", 0o777)
        rec.call("mkfifo", os.mkfifo, "sg/fifo")
        rec.call("symlink", os.symlink, "x", "sg/link")
        rec.stat("sg/userfile")
        rec.stat("sg/userdir")
        rec.stat("sg/fifo")
        rec.stat("sg/link", follow=False)
        _create(rec, "sg/userdir/deeper")
        rec.stat("sg/userdir/deeper")

    ctx.as_user(body, U, G)


@case(A)
def case_setgid_create_by_nonmember(ctx: Ctx) -> None:
    """A file created with S_ISGID in a setgid dir by a non-member of the dir's
    group loses S_ISGID; a member keeps it."""
    os.mkdir("sg")
    os.chown("sg", 0, SHARED_GID)
    os.chmod("sg", 0o2777)

    def nonmember(rec: Recorder) -> None:
        os.umask(0)
        _create(rec, "sg/a", 0o2775)
        rec.stat("sg/a")
        rec.call("mkdir 02777", os.mkdir, "sg/dd", 0o2777)
        rec.stat("sg/dd")

    def member(rec: Recorder) -> None:
        os.umask(0)
        _create(rec, "sg/b", 0o2775)
        rec.stat("sg/b")

    ctx.as_user(nonmember, U, G)
    ctx.as_user(member, THIRD_UID, THIRD_GID, groups=(SHARED_GID,))


@case(A)
def case_setgid_cleared_by_chmod_nonmember(ctx: Ctx) -> None:
    """chmod g+s by an owner who is not in the file's group silently drops S_ISGID."""
    _touch("f", 0o644)
    os.chown("f", U, SHARED_GID)
    _touch("g", 0o644)
    os.chown("g", U, G)

    def body(rec: Recorder) -> None:
        rec.call("chmod 2755 (not in group)", os.chmod, "f", 0o2755)
        rec.stat("f")
        rec.call("chmod 2755 (own group)", os.chmod, "g", 0o2755)
        rec.stat("g")
        rec.call("chmod 4755", os.chmod, "g", 0o4755)
        rec.stat("g")

    ctx.as_user(body, U, G)


@case(A)
def case_chmod_by_non_owner(ctx: Ctx) -> None:
    _touch("f", 0o666)

    def body(rec: Recorder) -> None:
        rec.call("chmod others' file", os.chmod, "f", 0o777)
        rec.call("chmod own dir? (cwd is root's)", os.chmod, ".", 0o777)

    ctx.as_user(body)
    ctx.rec.stat("f")


@case(A)
def case_chown_rules(ctx: Ctx) -> None:
    """Only root changes the owner; the owner may chgrp to a group it belongs to."""
    _touch("f", 0o644)
    os.chown("f", U, G)
    _touch("other", 0o666)

    def body(rec: Recorder) -> None:
        rec.call("chown to another uid", os.chown, "f", THIRD_UID, -1)
        rec.call("chown to self (no-op)", os.chown, "f", U, -1)
        rec.call("chgrp to supplementary group", os.chown, "f", -1, SHARED_GID)
        rec.stat("f")
        rec.call("chgrp to non-member group", os.chown, "f", -1, THIRD_GID)
        rec.call("chgrp others' file", os.chown, "other", -1, G)
        rec.call("chown -1 -1 others' file", os.chown, "other", -1, -1)
        rec.stat("f")

    ctx.as_user(body, U, G, groups=(SHARED_GID,))
    ctx.rec.call("root chown", os.chown, "f", THIRD_UID, THIRD_GID)
    ctx.rec.stat("f")


@case(A)
def case_chown_clears_suid_sgid(ctx: Ctx) -> None:
    """chown of a regular file drops S_ISUID, and S_ISGID when group-exec is set."""
    for name, mode in (("su", 0o4755), ("sg", 0o2755), ("sgnx", 0o2745), ("both", 0o6777)):
        _touch(name, mode)
        os.chmod(name, mode)
    r = ctx.rec
    for name in ("su", "sg", "sgnx", "both"):
        r.call(f"chown {name}", os.chown, name, U, G)
        r.stat(name)
    os.mkdir("d")
    os.chmod("d", 0o6755)
    r.call("chown dir", os.chown, "d", U, G)
    r.stat("d")
    _touch("keep", 0o4755)
    r.call("chown -1 -1", os.chown, "keep", -1, -1)
    r.stat("keep")


@case(A)
def case_chown_by_owner_clears_suid(ctx: Ctx) -> None:
    _touch("f", 0o6755)
    os.chown("f", U, G)
    os.chmod("f", 0o6755)

    def body(rec: Recorder) -> None:
        rec.call("chgrp by owner", os.chown, "f", -1, SHARED_GID)
        rec.stat("f")

    ctx.as_user(body, U, G, groups=(SHARED_GID,))


@case(A)
def case_write_clears_suid_sgid(ctx: Ctx) -> None:
    """A write by a user without CAP_FSETID clears S_ISUID and (with g+x) S_ISGID."""
    for name, mode in (("su", 0o4777), ("sg", 0o2777), ("sgnx", 0o2767), ("both", 0o6777)):
        _touch(name, mode)
        os.chmod(name, mode)

    def body(rec: Recorder) -> None:
        for name in ("su", "sg", "sgnx", "both"):
            fd = rec.open(name, os.O_WRONLY)
            if fd is not None:
                rec.call(f"write {name}", os.write, fd, b"x")
                os.close(fd)
            rec.stat(name)

    ctx.as_user(body)


@case(A)
def case_root_write_keeps_suid(ctx: Ctx) -> None:
    _touch("f", 0o6777)
    os.chmod("f", 0o6777)
    fd = os.open("f", os.O_WRONLY)
    ctx.rec.call("root write", os.write, fd, b"x")
    ctx.rec.stat("f")


@case(A)
def case_truncate_clears_suid(ctx: Ctx) -> None:
    _touch("f", 0o6777, b"data")
    os.chmod("f", 0o6777)
    _touch("g", 0o6777, b"data")
    os.chmod("g", 0o6777)

    def body(rec: Recorder) -> None:
        rec.call("truncate", os.truncate, "f", 1)
        rec.stat("f")
        fd = os.open("g", os.O_WRONLY)
        rec.call("ftruncate", os.ftruncate, fd, 10)
        rec.stat("g")

    ctx.as_user(body)


@case(A)
def case_owner_write_clears_suid(ctx: Ctx) -> None:
    _touch("f", 0o6755)
    os.chown("f", U, G)
    os.chmod("f", 0o6755)

    def body(rec: Recorder) -> None:
        fd = os.open("f", os.O_WRONLY)
        rec.call("pwrite", os.pwrite, fd, b"zz", 100)
        rec.stat("f")

    ctx.as_user(body, U, G)


@case(A)
def case_utime_permissions(ctx: Ctx) -> None:
    """Setting explicit times needs ownership; 'now' needs write access or ownership."""
    _touch("rw", 0o666)
    _touch("ro", 0o644)
    _touch("mine", 0o444)
    os.chown("mine", U, G)

    def body(rec: Recorder) -> None:
        rec.call("utime now, writable", os.utime, "rw")
        rec.call("utime now, read-only", os.utime, "ro")
        rec.call("utime explicit, writable", os.utime, "rw", ns=(1, 2))
        rec.call("utime explicit, own 0444", os.utime, "mine", ns=(10**9, 2 * 10**9))
        rec.call("utime now, own 0444", os.utime, "mine")

    ctx.as_user(body, U, G)


@case(A)
def case_truncate_permissions(ctx: Ctx) -> None:
    _touch("ro", 0o644, b"abc")
    _touch("rw", 0o666, b"abc")

    def body(rec: Recorder) -> None:
        rec.call("truncate read-only", os.truncate, "ro", 0)
        rec.call("truncate writable", os.truncate, "rw", 1)
        fd = os.open("ro", os.O_RDONLY)
        rec.call("ftruncate O_RDONLY fd", os.ftruncate, fd, 0)

    ctx.as_user(body)
    ctx.rec.call("sizes", lambda: (os.stat("ro").st_size, os.stat("rw").st_size))


@case(A)
def case_rename_needs_write_on_both_dirs(ctx: Ctx) -> None:
    os.mkdir("src", 0o777)
    os.chmod("src", 0o777)
    os.mkdir("ro", 0o755)
    os.mkdir("dst", 0o777)
    os.chmod("dst", 0o777)
    _touch("src/f", 0o666)

    def body(rec: Recorder) -> None:
        rec.call("rename into read-only dir", os.rename, "src/f", "ro/f")
        rec.call("rename into writable dir", os.rename, "src/f", "dst/f")
        rec.call("rename dir without write on it", os.rename, "ro", "src/ro")

    ctx.as_user(body)


@case(A)
def case_rename_dir_needs_write_on_itself(ctx: Ctx) -> None:
    """Moving a directory to another parent rewrites its '..', so it needs write
    permission on the directory itself."""
    os.mkdir("a", 0o777)
    os.chmod("a", 0o777)
    os.mkdir("b", 0o777)
    os.chmod("b", 0o777)
    os.mkdir("a/d", 0o755)

    def body(rec: Recorder) -> None:
        rec.call("move root's dir to another parent", os.rename, "a/d", "b/d")
        rec.call("rename root's dir in place", os.rename, "a/d", "a/e")

    ctx.as_user(body)


@case(A)
def case_hardlink_protection(ctx: Ctx) -> None:
    """With fs.protected_hardlinks (same sysctl for both sides), users may not link
    files they neither own nor can read and write."""
    os.chmod(".", 0o777)
    _touch("rootonly", 0o600)
    _touch("rootrw", 0o666)

    def body(rec: Recorder) -> None:
        rec.call("link unreadable file", os.link, "rootonly", "l1")
        rec.call("link rw file", os.link, "rootrw", "l2")

    ctx.as_user(body)


@case(A)
def case_group_permission_precedence(ctx: Ctx) -> None:
    """The owner class wins even when it grants less than group or other."""
    _touch("f", 0o077, b"x")
    os.chown("f", U, G)
    ctx.as_user(lambda rec: rec.open("f", os.O_RDONLY, label="owner open 077"), U, G)
    _touch("g", 0o407, b"x")
    os.chown("g", 0, SHARED_GID)
    ctx.as_user(lambda rec: rec.open("g", os.O_RDONLY, label="group member open 407"),
                U, G, groups=(SHARED_GID,))
    ctx.as_user(lambda rec: rec.open("g", os.O_RDONLY, label="other open 407"), U, G)


@case(A)
def case_exec_permission(ctx: Ctx) -> None:
    fd = os.open("script", os.O_CREAT | os.O_WRONLY, 0o644)
    os.write(fd, b"#!/bin/sh\nexit 7\n")
    os.close(fd)

    def run(rec: Recorder) -> None:
        pid = os.fork()
        if pid == 0:
            try:
                os.execv("./script", ["script"])
            except OSError as e:
                os._exit(100 + e.errno)
        _, status = os.waitpid(pid, 0)
        rec.note("exit", os.waitstatus_to_exitcode(status))

    ctx.in_child(run, "[644] ")
    os.chmod("script", 0o755)
    ctx.in_child(run, "[755] ")


@case(A)
def case_mkdir_as_user_owner_and_mode(ctx: Ctx) -> None:
    os.chmod(".", 0o777)

    def body(rec: Recorder) -> None:
        os.umask(0o027)
        rec.call("mkdir", os.mkdir, "d", 0o777)
        rec.stat("d")
        _create(rec, "f", 0o666)
        rec.stat("f")
        rec.call("symlink", os.symlink, "f", "s")
        rec.stat("s", follow=False)

    ctx.as_user(body, U, G, groups=(SHARED_GID,))


@case(A)
def case_fchmod_fchown_on_fd(ctx: Ctx) -> None:
    _touch("f", 0o600)
    os.chown("f", U, G)

    def body(rec: Recorder) -> None:
        fd = os.open("f", os.O_RDONLY)
        rec.call("fchmod own file via O_RDONLY fd", os.fchmod, fd, 0o640)
        rec.call("fchown to other", os.fchown, fd, THIRD_UID, -1)
        rec.fstat(fd)

    ctx.as_user(body, U, G)
