"""The in-memory inode (shmem_inode_info + struct inode, the parts tmpfs uses).

Lifetime (why three counters): the kernel may hold an inode through dentries
(``nlookup``, raised by every reply that hands it an entry and lowered by
FORGET), through open files (``nopen``), and the namespace holds it through
links (``nlink``). The inode is evicted -- its Mapping released, its frames back
in the arena, its ispace back in the pool -- only when all three are zero,
exactly like iput() -> shmem_evict_inode() after the last dput and fput.

One refinement (state.FsCore._reclaim): the *storage* (frames, budget, ispace)
is given back as soon as nlink == 0 and nopen == 0, because FUSE delivers the
FORGET for such an inode only after the asynchronous RELEASE was answered;
only the record and its number wait for nlookup == 0.
"""

from __future__ import annotations

import stat
from typing import TYPE_CHECKING, Any

from .directory import Directory
from .types import BOGO_DIRENT_SIZE, PAGE_SIZE, Attr

if TYPE_CHECKING:
    from collections.abc import Callable

    from .acl import Acl
    from .backing import MappingLike


class Inode:
    """One file, directory, symlink or special file."""

    __slots__ = (
        "acl_access",
        "acl_default",
        "atime_ns",
        "btime_ns",
        "ctime_ns",
        "dir",
        "fsflags",
        "gid",
        "ino",
        "linkable",
        "mapping",
        "mode",
        "mtime_ns",
        "nlink",
        "nlookup",
        "nopen",
        "parent",
        "rdev",
        "reclaimed",
        "symlink_pages",
        "target",
        "uid",
        "window_blocks",
        "xattr_space",
        "xattrs",
    )

    def __init__(self, ino: int, mode: int, uid: int, gid: int, now_ns: int) -> None:
        self.ino = ino
        self.mode = mode
        self.uid = uid
        self.gid = gid
        self.rdev = 0
        self.nlink = 0
        self.nlookup = 0
        self.nopen = 0
        self.atime_ns = self.mtime_ns = self.ctime_ns = now_ns
        self.btime_ns = now_ns  # shmem_get_inode: i_crtime = the first mtime
        self.mapping: MappingLike | None = None  # regular files only
        self.dir: Directory | None = Directory() if stat.S_ISDIR(mode) else None
        self.parent = 0  # directories: the inode number '..' names
        self.target: bytes | None = None  # symlinks only
        self.symlink_pages = 0  # 1 when the target lives in a (charged) page
        self.xattrs: dict[bytes, bytes] = {}
        # POSIX ACLs (fsimpl/acl.py), kept apart from xattrs and not charged to
        # ispace, like tmpfs's i_acl / i_default_acl; None = none
        self.acl_access: Acl | None = None
        self.acl_default: Acl | None = None  # directories only
        self.xattr_space = 0  # ispace charged for xattrs (0 when nr_inodes is unlimited)
        self.linkable = False  # an O_TMPFILE inode that link() may still name
        self.reclaimed = False  # pages and ispace already given back (see state.py)
        # a window file: st_blocks of the object pages it shows (fsimpl/winextent.py)
        self.window_blocks: Callable[[], int] | None = None
        self.fsflags = 0  # FS_*_FL of chattr (fsimpl/fsflags.py)

    @property
    def is_dir(self) -> bool:
        return stat.S_ISDIR(self.mode)

    @property
    def is_reg(self) -> bool:
        return stat.S_ISREG(self.mode)

    @property
    def is_lnk(self) -> bool:
        return stat.S_ISLNK(self.mode)

    @property
    def size(self) -> int:
        """i_size: bytes for files, len(target) for symlinks, 20 per entry for dirs
        (2 * BOGO_DIRENT_SIZE for '.' and '..' included, as shmem_get_inode sets it)."""
        if self.mapping is not None:
            return int(self.mapping.size)
        if self.dir is not None:
            return BOGO_DIRENT_SIZE * (2 + len(self.dir))
        if self.target is not None:
            return len(self.target)
        return 0

    @property
    def blocks(self) -> int:
        """st_blocks in 512-byte units: charged pages only (dirs 0, short symlinks 0); a
        window's are those of the object pages it shows."""
        if self.window_blocks is not None:
            return self.window_blocks()
        if self.mapping is not None:
            return int(self.mapping.blocks())
        return self.symlink_pages * (PAGE_SIZE // 512)

    def evictable(self) -> bool:
        return self.nlink == 0 and self.nlookup == 0 and self.nopen == 0

    def attr(self) -> Attr:
        # positional (in Attr's field order): keyword arguments cost ~0.4 us more, and
        # every GETATTR, LOOKUP and CREATE builds one
        return Attr(self.ino, self.mode, self.nlink, self.uid, self.gid, self.rdev, self.size,
                    self.blocks, self.atime_ns, self.mtime_ns, self.ctime_ns, 4096,
                    self.btime_ns)

    def d_type(self) -> int:
        """DT_* for readdir: the S_IFMT bits shifted down (DT_REG = 8, DT_DIR = 4 ...)."""
        return stat.S_IFMT(self.mode) >> 12

    def __repr__(self) -> str:  # pragma: no cover - debugging aid
        extra: dict[str, Any] = {"nlink": self.nlink, "nlookup": self.nlookup}
        return f"<Inode {self.ino} {stat.filemode(self.mode)} {extra}>"
