"""Directory entries with stable readdir cookies.

Why: FUSE readdir resumes at the ``off`` of the last entry the kernel consumed,
and entries may be created or unlinked between two READDIR requests. Like the
kernel's simple_offset (mm/shmem.c since 6.6), every entry gets a cookie when it
is linked in, and that cookie never changes. Cookies increase monotonically, so
"resume after cookie c" means "every live entry with a cookie > c": an entry that
existed throughout is seen exactly once, whatever happens around it.

Cookies 1 and 2 belong to '.' and '..'; real entries start at 3. Order is the
insertion order (tmpfs on 6.18 lists newest first; any stable order is POSIX).

A listing ends: like libfs's offset_dir_open, a directory handle remembers
``next_cookie`` when it is opened (and again when it is rewound, READDIR at
offset 0, as offset_dir_llseek does), and ``entries_after(c, end)`` stops
before ``end``. An entry renamed away and back gets a new cookie past that
end, so an open listing never meets it a second time -- without the limit a
loop that renames every name it reads would never finish.

Storage: ``_names`` maps name -> (cookie, ino); ``_cookies`` is an append-only
sorted list of cookies (bisect to resume) with tombstones compacted lazily, and
``_by_cookie`` maps live cookies back to names.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Iterator

FIRST_COOKIE = 3  # 1 = after '.', 2 = after '..'


class Directory:
    """The entries of one directory inode (names are bytes, no '.' or '..')."""

    __slots__ = ("_by_cookie", "_cookies", "_dead", "_names", "_next_cookie")

    def __init__(self) -> None:
        self._names: dict[bytes, tuple[int, int]] = {}
        self._by_cookie: dict[int, bytes] = {}
        self._cookies: list[int] = []
        self._dead = 0
        self._next_cookie = FIRST_COOKIE

    def __len__(self) -> int:
        return len(self._names)

    @property
    def next_cookie(self) -> int:
        """The cookie the next new entry will get: a listing's end."""
        return self._next_cookie

    def __contains__(self, name: bytes) -> bool:
        return name in self._names

    def get(self, name: bytes) -> int | None:
        """The inode number linked at ``name``, or None."""
        ent = self._names.get(name)
        return None if ent is None else ent[1]

    def add(self, name: bytes, ino: int) -> int:
        """Link a new entry; returns its cookie. The name must not exist."""
        assert name not in self._names, name
        cookie = self._next_cookie
        self._next_cookie += 1
        self._names[name] = (cookie, ino)
        self._by_cookie[cookie] = name
        self._cookies.append(cookie)
        return cookie

    def remove(self, name: bytes) -> int:
        """Unlink ``name``; returns the inode number it named."""
        cookie, ino = self._names.pop(name)
        del self._by_cookie[cookie]
        self._dead += 1
        if self._dead > 32 and self._dead > len(self._names):
            self._cookies = [c for c in self._cookies if c in self._by_cookie]
            self._dead = 0
        return ino

    def replace(self, name: bytes, ino: int) -> int:
        """Point an existing entry at another inode, keeping its cookie
        (RENAME_EXCHANGE, as simple_offset_rename_exchange swaps offsets)."""
        cookie, old = self._names[name]
        self._names[name] = (cookie, ino)
        return old

    def names(self) -> Iterator[tuple[bytes, int]]:
        """(name, ino) in cookie order."""
        for name, (_cookie, ino) in self._names.items():
            yield name, ino

    def entries_after(self, cookie: int, end: int | None = None
                      ) -> Iterator[tuple[bytes, int, int]]:
        """(name, ino, cookie) of live entries with ``cookie`` < their cookie < ``end``.

        Safe against add/remove between ``next()`` calls: the list is only
        appended to or replaced wholesale, and each cookie is re-checked.
        """
        cookies = self._cookies
        i = bisect_right(cookies, cookie)
        while True:
            if cookies is not self._cookies:  # compacted meanwhile: re-find our place
                cookies = self._cookies
                i = bisect_right(cookies, cookie)
            if i >= len(cookies):
                return
            c = cookies[i]
            if end is not None and c >= end:
                return
            i += 1
            name = self._by_cookie.get(c)
            if name is None:
                continue
            cookie = c
            yield name, self._names[name][1], c
