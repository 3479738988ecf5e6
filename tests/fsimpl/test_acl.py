"""POSIX ACLs: the pure rules of fsimpl/acl.py, then how ShmFs applies them
(set/get/remove through the xattr calls, chmod, inheritance at creation).
The behaviour itself is compared with a kernel tmpfs in tests/posix (acl.*)."""

from __future__ import annotations

import errno
import os
import stat
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fsimpl import Ctx, FsError, ShmFs, acl
from fsimpl.acl import (
    ACL_GROUP,
    ACL_GROUP_OBJ,
    ACL_MASK,
    ACL_OTHER,
    ACL_UNDEFINED_ID,
    ACL_USER,
    ACL_USER_OBJ,
    XATTR_POSIX_ACL_ACCESS,
    XATTR_POSIX_ACL_DEFAULT,
)
from fsimpl.types import RENAME_WHITEOUT, XATTR_CREATE

from .conftest import ROOT, USER, Clock

N = ACL_UNDEFINED_ID
AA, AD = XATTR_POSIX_ACL_ACCESS, XATTR_POSIX_ACL_DEFAULT
MINIMAL = ((ACL_USER_OBJ, 7, N), (ACL_GROUP_OBJ, 5, N), (ACL_OTHER, 0, N))
EXTENDED = ((ACL_USER_OBJ, 6, N), (ACL_USER, 7, 1000), (ACL_GROUP_OBJ, 4, N),
            (ACL_GROUP, 2, 1500), (ACL_MASK, 6, N), (ACL_OTHER, 4, N))
DEFAULT = ((ACL_USER_OBJ, 7, N), (ACL_USER, 6, 1000), (ACL_GROUP_OBJ, 5, N),
           (ACL_MASK, 7, N), (ACL_OTHER, 1, N))


def raises(code: int, fn, *args, **kw) -> None:
    with pytest.raises(FsError) as e:
        fn(*args, **kw)
    assert e.value.errno == code, e.value


def blob(entries: tuple[tuple[int, int, int], ...], version: int = 2) -> bytes:
    return struct.pack("<I", version) + b"".join(struct.pack("<HHI", *e) for e in entries)


# --- the encoding -------------------------------------------------------------------------------


def test_xattr_roundtrip_drops_the_ids_of_unnamed_entries() -> None:
    raw = ((ACL_USER_OBJ, 6, 5), (ACL_USER, 7, 1000), (ACL_GROUP_OBJ, 4, 6),
           (ACL_GROUP, 2, 1500), (ACL_MASK, 6, 0), (ACL_OTHER, 4, 9))
    decoded = acl.from_xattr(blob(raw))
    assert decoded == EXTENDED
    assert acl.to_xattr(EXTENDED) == blob(EXTENDED)


def test_an_empty_value_or_a_bare_header_is_no_acl() -> None:
    assert acl.from_xattr(b"") is None
    assert acl.from_xattr(struct.pack("<I", 2)) is None


@pytest.mark.parametrize(("value", "err"), [
    (b"\x02\x00", errno.EINVAL),                       # shorter than the header
    (blob(MINIMAL) + b"x", errno.EINVAL),              # not header + 8 * n
    (blob(MINIMAL, version=1), errno.EOPNOTSUPP),
    (blob(((0x40, 0, N),)), errno.EINVAL),             # unknown tag
    (blob(((ACL_USER, 7, N),)), errno.EINVAL),         # named entry without an id
    (blob(((ACL_GROUP, 7, N),)), errno.EINVAL),
])
def test_undecodable_values(value: bytes, err: int) -> None:
    raises(err, acl.from_xattr, value)


# --- validity -----------------------------------------------------------------------------------


def test_valid_acls() -> None:
    acl.check_valid(MINIMAL)
    acl.check_valid(EXTENDED)
    acl.check_valid(((ACL_USER_OBJ, 7, N), (ACL_GROUP_OBJ, 5, N), (ACL_MASK, 1, N),
                     (ACL_OTHER, 0, N)))
    # 6.18: named entries need not be sorted or unique
    acl.check_valid(((ACL_USER_OBJ, 7, N), (ACL_USER, 1, 9), (ACL_USER, 1, 3),
                     (ACL_USER, 1, 3), (ACL_GROUP_OBJ, 5, N), (ACL_MASK, 7, N),
                     (ACL_OTHER, 0, N)))


UO, GO, OT, MK = (ACL_USER_OBJ, 7, N), (ACL_GROUP_OBJ, 5, N), (ACL_OTHER, 0, N), (ACL_MASK, 7, N)


@pytest.mark.parametrize("entries", [
    (),
    (UO, GO),
    (UO, OT),
    (GO, OT),
    (UO, UO, GO, OT),
    (GO, UO, OT),
    (UO, GO, OT, OT),
    (UO, (ACL_USER, 7, 5), GO, OT),  # a named entry needs a mask
    (UO, GO, (ACL_GROUP, 7, 5), OT),
    (UO, GO, (ACL_USER, 7, 5), MK, OT),  # named user after the owning group
    (UO, GO, MK, MK, OT),
    (UO, GO, OT, MK),
    (UO, MK, GO, OT),
    ((ACL_USER_OBJ, 8, N), GO, OT),  # a permission beyond rwx
])
def test_invalid_acls(entries: acl.Acl) -> None:
    raises(errno.EINVAL, acl.check_valid, entries)


# --- mode arithmetic ----------------------------------------------------------------------------


def test_equiv_mode() -> None:
    assert acl.equiv_mode(MINIMAL, stat.S_IFREG | 0o4000) == (stat.S_IFREG | 0o4750, False)
    # the mask, not the owning group, gives the group bits
    assert acl.equiv_mode(EXTENDED, 0o777) == (0o664, True)
    assert acl.equiv_mode(((ACL_USER_OBJ, 7, N), (ACL_GROUP_OBJ, 7, N), (ACL_MASK, 1, N),
                           (ACL_OTHER, 0, N)), 0) == (0o710, True)


def test_inherit_without_a_default_acl_is_the_umask() -> None:
    assert acl.inherit(None, stat.S_IFREG | 0o4666, 0o027) == (stat.S_IFREG | 0o4640, None, None)
    assert acl.inherit(None, stat.S_IFDIR | 0o777, 0o7077) == (stat.S_IFDIR | 0o700, None, None)


def test_inherit_a_file() -> None:
    mode, access, default = acl.inherit(DEFAULT, stat.S_IFREG | 0o4640, 0o077)
    assert mode == stat.S_IFREG | 0o4640  # the umask is ignored
    assert access == ((ACL_USER_OBJ, 6, N), (ACL_USER, 6, 1000), (ACL_GROUP_OBJ, 5, N),
                      (ACL_MASK, 4, N), (ACL_OTHER, 0, N))
    assert default is None


def test_inherit_a_directory_keeps_the_default_acl() -> None:
    mode, access, default = acl.inherit(DEFAULT, stat.S_IFDIR | 0o1777, 0o022)
    assert mode == stat.S_IFDIR | 0o1771
    assert access == DEFAULT
    assert default is DEFAULT


def test_inherit_a_minimal_default_gives_no_access_acl() -> None:
    mode, access, default = acl.inherit(MINIMAL, stat.S_IFREG | 0o666, 0)
    assert (mode, access, default) == (stat.S_IFREG | 0o640, None, None)
    mode, access, default = acl.inherit(MINIMAL, stat.S_IFDIR | 0o777, 0)
    assert (mode, access, default) == (stat.S_IFDIR | 0o750, None, MINIMAL)


def test_inherit_skips_symlinks() -> None:
    assert acl.inherit(DEFAULT, stat.S_IFLNK | 0o777, 0o077) == (stat.S_IFLNK | 0o777, None,
                                                                None)


def test_chmod_rewrites_owner_mask_and_other() -> None:
    assert acl.chmod(EXTENDED, 0o751) == (
        (ACL_USER_OBJ, 7, N), (ACL_USER, 7, 1000), (ACL_GROUP_OBJ, 4, N),
        (ACL_GROUP, 2, 1500), (ACL_MASK, 5, N), (ACL_OTHER, 1, N))
    # no mask: the owning group entry takes the group bits
    assert acl.chmod(MINIMAL, 0o123) == (
        (ACL_USER_OBJ, 1, N), (ACL_GROUP_OBJ, 2, N), (ACL_OTHER, 3, N))


def test_permission() -> None:
    a = ((ACL_USER_OBJ, 0, N), (ACL_USER, 7, 1000), (ACL_GROUP_OBJ, 4, N),
         (ACL_GROUP, 2, 1500), (ACL_MASK, 6, N), (ACL_OTHER, 4, N))

    def may(want: int, uid: int, *gids: int) -> bool:
        return acl.permission(a, want, uid, set(gids), 1001, 1001)

    assert not may(os.R_OK, 1001, 1001)                 # the owner's entry, no mask
    assert may(os.R_OK | os.W_OK, 1000, 1000)           # named user through the mask
    assert not may(os.X_OK, 1000, 1000)                 # ... which has no x
    assert may(os.R_OK, 2000, 1001)                     # owning group
    assert not may(os.W_OK, 2000, 1001)
    assert may(os.W_OK, 2000, 1500)                     # named group
    assert not may(os.R_OK, 2000, 1500)                 # matched a group: other is not asked
    assert may(os.R_OK, 2000, 1001, 1500) and may(os.W_OK, 2000, 1001, 1500)
    assert may(os.R_OK, 2000, 2000) and not may(os.W_OK, 2000, 2000)  # other


entries = st.lists(st.tuples(st.sampled_from([ACL_USER, ACL_GROUP]), st.integers(0, 7),
                             st.integers(0, 5000)), max_size=4)


@st.composite
def valid_acls(draw: st.DrawFn) -> acl.Acl:
    named = draw(entries)
    perms = [draw(st.integers(0, 7)) for _ in range(4)]
    out = [(ACL_USER_OBJ, perms[0], N)] + [e for e in named if e[0] == ACL_USER]
    out += [(ACL_GROUP_OBJ, perms[1], N)] + [e for e in named if e[0] == ACL_GROUP]
    if named or draw(st.booleans()):
        out.append((ACL_MASK, perms[2], N))
    out.append((ACL_OTHER, perms[3], N))
    return tuple(out)


@given(valid_acls(), st.integers(0, 0o7777))
def test_chmod_then_the_acl_is_the_mode(a: acl.Acl, mode: int) -> None:
    acl.check_valid(a)
    changed = acl.chmod(a, mode)
    acl.check_valid(changed)
    assert acl.equiv_mode(changed, 0)[0] == mode & 0o777
    assert acl.from_xattr(acl.to_xattr(changed)) == changed


@given(valid_acls(), st.integers(0, 0o7777), st.sampled_from([stat.S_IFREG, stat.S_IFDIR]))
def test_inherited_mode_agrees_with_the_access_acl(d: acl.Acl, mode: int, fmt: int) -> None:
    new_mode, access, _ = acl.inherit(d, fmt | mode, 0o777)
    assert new_mode & ~0o777 == fmt | (mode & ~0o777)
    assert new_mode & 0o777 & ~mode == 0  # never more than asked for
    if access is not None:
        acl.check_valid(access)
        assert acl.equiv_mode(access, new_mode) == (new_mode, True)


# --- ShmFs: the xattr calls ---------------------------------------------------------------------


def reg(fs: ShmFs, name: bytes = b"f", mode: int = 0o644, ctx: Ctx = ROOT) -> int:
    return fs.mknod(1, name, stat.S_IFREG | mode, 0, ctx).ino


def test_a_minimal_acl_only_sets_the_mode(fs: ShmFs, clock: Clock) -> None:
    f = reg(fs, mode=0o4644)
    t = clock.tick()
    fs.setxattr(f, AA, blob(MINIMAL), 0)
    attr = fs.getattr(f)
    assert (attr.mode, attr.ctime_ns) == (stat.S_IFREG | 0o4750, t)
    raises(errno.ENODATA, fs.getxattr, f, AA)
    assert fs.listxattr(f) == []


def test_an_extended_acl_is_kept_and_sets_the_mode(fs: ShmFs) -> None:
    f = reg(fs)
    fs.setxattr(f, b"user.a", b"1", 0)
    fs.setxattr(f, AA, blob(EXTENDED), XATTR_CREATE)
    fs.setxattr(f, AA, blob(EXTENDED), XATTR_CREATE)  # the flags mean nothing to ACLs
    assert fs.getattr(f).mode == stat.S_IFREG | 0o664
    assert fs.getxattr(f, AA) == blob(EXTENDED)
    assert fs.listxattr(f) == [AA, b"user.a"]


def test_removal_succeeds_even_when_absent(fs: ShmFs, clock: Clock) -> None:
    f = reg(fs)
    fs.setxattr(f, AA, blob(EXTENDED), 0)
    fs.removexattr(f, AA)
    raises(errno.ENODATA, fs.getxattr, f, AA)
    assert fs.getattr(f).mode == stat.S_IFREG | 0o664  # what the ACL made it
    t = clock.tick()
    fs.removexattr(f, AA)
    assert fs.getattr(f).ctime_ns == t
    fs.setxattr(f, AA, blob(EXTENDED), 0)
    fs.setxattr(f, AA, b"", 0)  # an empty value removes too
    raises(errno.ENODATA, fs.getxattr, f, AA)


def test_invalid_acls_change_nothing(fs: ShmFs) -> None:
    f = reg(fs)
    bad = blob(((ACL_USER_OBJ, 7, N), (ACL_USER, 7, 5), (ACL_GROUP_OBJ, 0, N),
                (ACL_OTHER, 0, N)))
    raises(errno.EINVAL, fs.setxattr, f, AA, bad, 0)
    raises(errno.EOPNOTSUPP, fs.setxattr, f, AA, blob(MINIMAL, version=3), 0)
    raises(errno.E2BIG, fs.setxattr, f, AA, bytes(65537), 0)
    assert fs.getattr(f).mode == stat.S_IFREG | 0o644
    assert fs.listxattr(f) == []


def test_default_acls_only_on_directories(fs: ShmFs) -> None:
    f = reg(fs)
    p = fs.mknod(1, b"p", stat.S_IFIFO | 0o644, 0, ROOT).ino
    d = fs.mkdir(1, b"d", 0o755, ROOT).ino
    for ino in (f, p):
        raises(errno.EACCES, fs.setxattr, ino, AD, blob(DEFAULT), 0)
        fs.removexattr(ino, AD)  # nothing to remove: no error
        raises(errno.ENODATA, fs.getxattr, ino, AD)
    fs.setxattr(p, AA, blob(EXTENDED), 0)  # access ACLs on any type but symlinks
    fs.setxattr(d, AD, blob(MINIMAL), 0)  # a default ACL is kept even when minimal
    assert fs.getxattr(d, AD) == blob(MINIMAL)
    assert fs.getattr(d).mode == stat.S_IFDIR | 0o755
    assert fs.listxattr(d) == [AD]


def test_symlinks_have_no_acls(fs: ShmFs) -> None:
    lnk = fs.symlink(1, b"l", b"t", ROOT).ino
    raises(errno.EOPNOTSUPP, fs.setxattr, lnk, AA, blob(EXTENDED), 0)
    raises(errno.EOPNOTSUPP, fs.removexattr, lnk, AA)
    raises(errno.ENODATA, fs.getxattr, lnk, AA)


def test_acls_cost_no_ispace(make_fs) -> None:
    fs = make_fs(nr_inodes=4)
    f = reg(fs)
    free = fs.free_ispace
    fs.setxattr(f, AA, blob(EXTENDED), 0)
    assert fs.free_ispace == free


def test_kill_sgid_drops_s_isgid_with_an_access_acl_only(fs: ShmFs) -> None:
    f = reg(fs, mode=0o2775)
    d = fs.mkdir(1, b"d", 0o2775, ROOT).ino
    fs.setxattr(d, AD, blob(DEFAULT), 0, kill_sgid=True)
    assert fs.getattr(d).mode & stat.S_ISGID
    fs.setxattr(f, AA, blob(EXTENDED), 0)
    assert fs.getattr(f).mode == stat.S_IFREG | 0o2664
    fs.setxattr(f, AA, blob(MINIMAL), 0, kill_sgid=True)
    assert fs.getattr(f).mode == stat.S_IFREG | 0o750


def test_removal_by_a_non_member_drops_s_isgid(fs: ShmFs) -> None:
    f = reg(fs, mode=0o2775)
    fs.setattr(f, ROOT, uid=USER.uid, gid=1500, mode=0o2775)
    fs.removexattr(f, AA, ROOT)
    fs.removexattr(f, AA, Ctx(USER.uid, 1500, 3))
    fs.removexattr(f, AA)
    assert fs.getattr(f).mode & stat.S_ISGID
    fs.removexattr(f, AA, USER)  # the primary group is all fsimpl knows
    assert not fs.getattr(f).mode & stat.S_ISGID


def test_chmod_rewrites_the_access_acl(fs: ShmFs) -> None:
    f = reg(fs)
    fs.setxattr(f, AA, blob(EXTENDED), 0)
    fs.setattr(f, ROOT, mode=0o4710)
    assert acl.from_xattr(fs.getxattr(f, AA)) == acl.chmod(EXTENDED, 0o710)
    fs.setattr(f, ROOT, uid=5)  # chown leaves the ACL alone
    assert acl.from_xattr(fs.getxattr(f, AA)) == acl.chmod(EXTENDED, 0o710)


def test_access_goes_through_the_acl(fs: ShmFs) -> None:
    f = reg(fs, mode=0o600)
    fs.setxattr(f, AA, blob(((ACL_USER_OBJ, 6, N), (ACL_USER, 6, USER.uid),
                             (ACL_GROUP_OBJ, 0, N), (ACL_MASK, 4, N), (ACL_OTHER, 0, N))), 0)
    fs.access(f, os.R_OK, USER)
    raises(errno.EACCES, fs.access, f, os.W_OK, USER)  # the mask
    raises(errno.EACCES, fs.access, f, os.R_OK, Ctx(2000, 2000, 3))
    fs.access(f, os.R_OK | os.W_OK, ROOT)


# --- ShmFs: inheritance and the umask -----------------------------------------------------------


def test_the_umask_applies_without_a_default_acl(fs: ShmFs) -> None:
    ctx = Ctx(0, 0, 1, umask=0o027)
    assert fs.mknod(1, b"f", stat.S_IFREG | 0o666, 0, ctx).mode == stat.S_IFREG | 0o640
    assert fs.mkdir(1, b"d", 0o777, ctx).mode == stat.S_IFDIR | 0o750
    attr, _fh = fs.create(1, b"c", 0o666, os.O_WRONLY, ctx)
    assert attr.mode == stat.S_IFREG | 0o640
    attr, _fh = fs.tmpfile(1, 0o666, os.O_RDWR, ctx)
    assert attr.mode == stat.S_IFREG | 0o640
    assert fs.symlink(1, b"l", b"t", ctx).mode == stat.S_IFLNK | 0o777


def test_new_inodes_inherit_the_default_acl(fs: ShmFs) -> None:
    d = fs.mkdir(1, b"d", 0o755, ROOT).ino
    fs.setxattr(d, AD, blob(DEFAULT), 0)
    ctx = Ctx(0, 0, 1, umask=0o077)  # ignored under a default ACL
    f = fs.mknod(d, b"f", stat.S_IFREG | 0o666, 0, ctx)
    assert f.mode == stat.S_IFREG | 0o660
    assert acl.from_xattr(fs.getxattr(f.ino, AA)) == acl.inherit(DEFAULT, f.mode, 0)[1]
    raises(errno.ENODATA, fs.getxattr, f.ino, AD)
    sub = fs.mkdir(d, b"sub", 0o777, ctx)
    assert sub.mode == stat.S_IFDIR | 0o771
    assert fs.getxattr(sub.ino, AD) == blob(DEFAULT)
    assert fs.getxattr(sub.ino, AA) == blob(DEFAULT)
    deeper = fs.create(sub.ino, b"g", 0o640, os.O_WRONLY, ctx)[0]
    assert deeper.mode == stat.S_IFREG | 0o640
    tmp = fs.tmpfile(d, 0o600, os.O_RDWR, ctx)[0]
    assert tmp.mode == stat.S_IFREG | 0o600
    assert fs.listxattr(tmp.ino) == [AA]
    lnk = fs.symlink(d, b"l", b"t", ctx)
    assert (lnk.mode, fs.listxattr(lnk.ino)) == (stat.S_IFLNK | 0o777, [])


def test_a_whiteout_inherits_too(fs: ShmFs) -> None:
    d = fs.mkdir(1, b"d", 0o755, ROOT).ino
    fs.setxattr(d, AD, blob(DEFAULT), 0)
    reg(fs, mode=0o644)
    fs.rename(1, b"f", d, b"g")
    fs.rename(d, b"g", 1, b"h", RENAME_WHITEOUT)
    w = fs.lookup(d, b"g")
    assert stat.S_ISCHR(w.mode) and w.mode & 0o7777 == 0
    assert fs.listxattr(w.ino) == [AA]


def test_acls_go_with_the_inode(fs: ShmFs) -> None:
    f = reg(fs)
    fs.setxattr(f, AA, blob(EXTENDED), 0)
    inode = fs._inodes[f]
    fs.unlink(1, b"f")
    fs.forget(f, 1)
    assert f not in fs._inodes
    assert inode.acl_access is None and inode.acl_default is None
