"""POSIX ACLs: the pure rules of fsimpl/acl.py."""

from __future__ import annotations

import errno
import os
import stat
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fsimpl import FsError, acl
from fsimpl.acl import (
    ACL_GROUP,
    ACL_GROUP_OBJ,
    ACL_MASK,
    ACL_OTHER,
    ACL_UNDEFINED_ID,
    ACL_USER,
    ACL_USER_OBJ,
)

N = ACL_UNDEFINED_ID
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
