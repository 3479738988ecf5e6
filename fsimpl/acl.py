"""POSIX ACLs as values: the xattr encoding and the rules of fs/posix_acl.c.

tmpfs (CONFIG_TMPFS_POSIX_ACL) keeps an inode's ACLs only in the inode's ACL
cache; this module is the arithmetic on them, with no inode and no I/O, so
each rule can be tested on its own:

- ``from_xattr`` / ``to_xattr``: the ``system.posix_acl_*`` value (version 2
  header, then 8-byte little-endian ``(tag, perm, id)`` entries). An empty
  value or a bare header means "no ACL" (None), as posix_acl_from_xattr says.
- ``check_valid``: posix_acl_valid. 6.18 neither sorts named entries nor
  rejects duplicates (checked on tmpfs: both are stored as given).
- ``equiv_mode``: posix_acl_equiv_mode -- is the ACL just the mode bits?
- ``inherit``: posix_acl_create -- what a new inode gets from its directory's
  default ACL (or, without one, the umask).
- ``chmod``: __posix_acl_chmod -- chmod rewrites the owner, mask (or group)
  and other entries.
- ``permission``: posix_acl_permission, for access(2).

An ACL is a tuple of ``(tag, perm, id)``; ``id`` is ACL_UNDEFINED_ID except
for ACL_USER and ACL_GROUP entries (the kernel drops the others' ids).
"""

from __future__ import annotations

import errno
import stat
import struct

from .errors import FsError

ACL_USER_OBJ = 0x01
ACL_USER = 0x02
ACL_GROUP_OBJ = 0x04
ACL_GROUP = 0x08
ACL_MASK = 0x10
ACL_OTHER = 0x20
ACL_READ, ACL_WRITE, ACL_EXECUTE = 0x04, 0x02, 0x01
ACL_UNDEFINED_ID = 0xFFFFFFFF
POSIX_ACL_XATTR_VERSION = 2

XATTR_POSIX_ACL_ACCESS = b"system.posix_acl_access"
XATTR_POSIX_ACL_DEFAULT = b"system.posix_acl_default"

Entry = tuple[int, int, int]
Acl = tuple[Entry, ...]

_HEADER = struct.Struct("<I")
_ENTRY = struct.Struct("<HHI")
_NAMED = (ACL_USER, ACL_GROUP)
_KNOWN = (ACL_USER_OBJ, ACL_USER, ACL_GROUP_OBJ, ACL_GROUP, ACL_MASK, ACL_OTHER)
_RWX = ACL_READ | ACL_WRITE | ACL_EXECUTE


def from_xattr(value: bytes) -> Acl | None:
    """Decode a ``system.posix_acl_*`` value; None when it holds no entry.

    EINVAL for a short or ragged value, an unknown tag, or a named entry
    whose id is -1; EOPNOTSUPP for a version other than 2 (all as
    posix_acl_from_xattr). Ids of the unnamed entries are dropped."""
    if not value:
        return None
    if len(value) < _HEADER.size:
        raise FsError(errno.EINVAL, "ACL shorter than its header")
    if _HEADER.unpack_from(value)[0] != POSIX_ACL_XATTR_VERSION:
        raise FsError(errno.EOPNOTSUPP, "ACL version is not 2")
    body = memoryview(value)[_HEADER.size:]
    if len(body) % _ENTRY.size:
        raise FsError(errno.EINVAL, "ACL size is not header + 8 * n")
    acl: list[Entry] = []
    for tag, perm, ident in _ENTRY.iter_unpack(body):
        if tag not in _KNOWN:
            raise FsError(errno.EINVAL, f"ACL tag {tag:#x}")
        if tag in _NAMED:
            if ident == ACL_UNDEFINED_ID:
                raise FsError(errno.EINVAL, "named ACL entry without an id")
        else:
            ident = ACL_UNDEFINED_ID
        acl.append((tag, perm, ident))
    return tuple(acl) or None


def to_xattr(acl: Acl) -> bytes:
    """Encode ``acl`` as posix_acl_to_xattr does."""
    return _HEADER.pack(POSIX_ACL_XATTR_VERSION) + b"".join(_ENTRY.pack(*e) for e in acl)


def check_valid(acl: Acl) -> None:
    """posix_acl_valid: permissions within rwx; one owner, owning-group and
    other entry, in the order user-obj, users, group-obj, groups, mask, other;
    a mask whenever there is a named entry. EINVAL otherwise."""
    state = ACL_USER_OBJ
    needs_mask = False
    for tag, perm, _ident in acl:
        if perm & ~_RWX:
            raise FsError(errno.EINVAL, "ACL permission beyond rwx")
        if tag == ACL_USER_OBJ and state == ACL_USER_OBJ:
            state = ACL_USER
        elif tag == ACL_USER and state == ACL_USER:
            needs_mask = True
        elif tag == ACL_GROUP_OBJ and state == ACL_USER:
            state = ACL_GROUP
        elif tag == ACL_GROUP and state == ACL_GROUP:
            needs_mask = True
        elif tag == ACL_MASK and state == ACL_GROUP:
            state = ACL_OTHER
        elif tag == ACL_OTHER and (state == ACL_OTHER or (state == ACL_GROUP and not needs_mask)):
            state = 0
        else:
            raise FsError(errno.EINVAL, f"ACL entry {tag:#x} out of place")
    if state != 0:
        raise FsError(errno.EINVAL, "ACL lacks a required entry")


def equiv_mode(acl: Acl, mode: int) -> tuple[int, bool]:
    """posix_acl_equiv_mode: ``mode`` with its rwx bits taken from the ACL
    (owner, mask-or-group, other), and whether the ACL says more than those
    bits (it has a mask or a named entry). Special and type bits are kept."""
    bits = 0
    extended = False
    for tag, perm, _ident in acl:
        if tag == ACL_USER_OBJ:
            bits |= (perm & 7) << 6
        elif tag == ACL_GROUP_OBJ:
            bits |= (perm & 7) << 3
        elif tag == ACL_OTHER:
            bits |= perm & 7
        elif tag == ACL_MASK:
            bits = (bits & ~0o070) | (perm & 7) << 3
            extended = True
        else:
            extended = True
    return (mode & ~0o777) | bits, extended


def inherit(default: Acl | None, mode: int, umask: int) -> tuple[int, Acl | None, Acl | None]:
    """posix_acl_create for a new inode of ``mode`` (type included) in a
    directory whose default ACL is ``default``.

    Returns (mode, access ACL, default ACL). Without a default ACL only the
    umask applies. With one the umask is ignored: the new access ACL is the
    default one with its owner, mask (or group) and other entries cut down to
    the requested mode, the mode takes its bits from the result, and that
    access ACL is kept only if it says more than the mode. A new directory
    also inherits the default ACL itself. Symlinks take nothing."""
    if stat.S_ISLNK(mode):
        return mode, None, None
    if default is None:
        return mode & ~(umask & 0o777), None, None
    entries = [list(e) for e in default]
    group = mask = None
    extended = False
    for e in entries:
        tag = e[0]
        if tag == ACL_USER_OBJ:
            e[1] &= mode >> 6
            mode &= (e[1] << 6) | ~0o700
        elif tag == ACL_OTHER:
            e[1] &= mode
            mode &= e[1] | ~0o007
        elif tag == ACL_GROUP_OBJ:
            group = e
        elif tag == ACL_MASK:
            mask = e
            extended = True
        else:
            extended = True
    last = mask if mask is not None else group
    if last is None:
        raise FsError(errno.EIO, "default ACL without a group entry")
    last[1] &= mode >> 3
    mode &= (last[1] << 3) | ~0o070
    access = tuple((t, p, i) for t, p, i in entries) if extended else None
    return mode, access, default if stat.S_ISDIR(mode) else None


def chmod(acl: Acl, mode: int) -> Acl:
    """__posix_acl_chmod: the owner, other and mask (the owning group when
    there is no mask) entries take the new mode's bits; named entries stay."""
    has_mask = any(tag == ACL_MASK for tag, _p, _i in acl)
    out: list[Entry] = []
    for tag, perm, ident in acl:
        if tag == ACL_USER_OBJ:
            perm = (mode >> 6) & 7
        elif tag == ACL_OTHER:
            perm = mode & 7
        elif tag == ACL_MASK or (tag == ACL_GROUP_OBJ and not has_mask):
            perm = (mode >> 3) & 7
        out.append((tag, perm, ident))
    return tuple(out)


def permission(acl: Acl, want: int, uid: int, gids: frozenset[int] | set[int],
               owner: int, group: int) -> bool:
    """posix_acl_permission: may ``uid`` in groups ``gids`` do ``want`` (rwx
    bits) to an inode owned by ``owner``:``group``? The owner entry, else a
    named user (through the mask), else every matching group entry -- one
    that grants all of ``want`` wins (through the mask) -- else other, unless
    some group matched."""
    want &= _RWX
    mask = next((p for t, p, _i in acl if t == ACL_MASK), _RWX)
    matched_group = False
    for tag, perm, ident in acl:
        if tag == ACL_USER_OBJ and uid == owner:
            return perm & want == want
        if tag == ACL_USER and ident == uid:
            return perm & mask & want == want
        if (tag == ACL_GROUP_OBJ and group in gids) or (tag == ACL_GROUP and ident in gids):
            matched_group = True
            if perm & want == want:
                return perm & mask & want == want
        if tag == ACL_OTHER:
            return not matched_group and perm & want == want
    return False
