"""Attach tokens: the proof that a window's creator could open its object.

A window shows another file's pages, so making one must need what open(2) of
that file needs.  The kernel does that check (path walk, search permission on
every directory, the file's mode and ACL, with ``default_permissions``) when a
process opens the object; the daemon only sees the result: a FUSE handle and
the O_ACCMODE it was opened with.  GRANT, issued on such a handle, turns it into
a token; ATTACH spends the token.  An inode number is never enough, for anyone
(docs/windows.md, "Access rules").

A token is 128 random bits bound to (object inode, the protections it allows,
the uid that asked for it, the handle it came from).  It is single-use, dies
with its handle (RELEASE) and is only good for ATTACH by the same uid.  Only
this daemon mints tokens, from handles of this mount, so a window and its
object are on one filesystem by construction.

The table is bounded: at most ``PER_HANDLE`` live tokens per handle (a new one
retires the oldest) and ``PER_UID`` per uid (more is EAGAIN), so its memory is
``O(open handles)`` with a hard per-user cap.
"""

from __future__ import annotations

import errno
import os
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

from .errors import FsError

TOKEN_BYTES = 16
# Where tokens come from: a restartable mount (mount/server/persist) journals them,
# so that replaying a GRANT mints the same token (fsimpl stays free of the journal).
token_source: Callable[[int], bytes] = os.urandom
PER_HANDLE = 8
PER_UID = 1024


@dataclass(slots=True, frozen=True)
class Grant:
    """What one token allows: ATTACH by ``uid`` over ``ino`` with at most ``prot``."""

    ino: int
    prot: int
    uid: int
    fh: int


class GrantTable:
    """Live attach tokens of one filesystem."""

    def __init__(self, per_handle: int = PER_HANDLE, per_uid: int = PER_UID) -> None:
        self.per_handle = per_handle
        self.per_uid = per_uid
        self._tokens: dict[bytes, Grant] = {}
        self._by_fh: dict[int, list[bytes]] = {}
        self._by_uid: Counter[int] = Counter()

    def __len__(self) -> int:
        return len(self._tokens)

    def mint(self, ino: int, fh: int, uid: int, prot: int) -> bytes:
        """A new token for ``uid`` over ``ino``, tied to handle ``fh``."""
        mine = self._by_fh.setdefault(fh, [])
        if len(mine) >= self.per_handle:
            self._forget(mine[0])  # retire the handle's oldest token
            mine = self._by_fh.setdefault(fh, [])
        if self._by_uid[uid] >= self.per_uid:
            raise FsError(errno.EAGAIN, f"uid {uid} holds {self.per_uid} unused attach tokens")
        token = token_source(TOKEN_BYTES)
        while token in self._tokens:  # pragma: no cover - 2^-128
            token = token_source(TOKEN_BYTES)
        self._tokens[token] = Grant(ino, prot, uid, fh)
        mine.append(token)
        self._by_uid[uid] += 1
        return token

    def take(self, token: bytes, uid: int) -> Grant:
        """Spend ``token``: its Grant, if it is live and was minted for ``uid``.

        Any presented live token is spent, whoever presents it: a token another uid
        holds has leaked, and its owner simply asks again.  Every refusal is the same
        EACCES, so a caller learns nothing about which tokens exist."""
        g = self._tokens.get(bytes(token))
        if g is not None:
            self._forget(bytes(token))
        if g is None or g.uid != uid:
            raise FsError(errno.EACCES, "no such attach token for this user")
        return g

    def handle_released(self, fh: int) -> None:
        """RELEASE of ``fh``: its tokens die with it."""
        for token in list(self._by_fh.get(fh, ())):
            self._forget(token)

    def _forget(self, token: bytes) -> None:
        g = self._tokens.pop(token, None)
        if g is None:
            return
        mine = self._by_fh.get(g.fh)
        if mine is not None:
            mine.remove(token)
            if not mine:
                del self._by_fh[g.fh]
        self._by_uid[g.uid] -= 1
        if self._by_uid[g.uid] <= 0:
            del self._by_uid[g.uid]
