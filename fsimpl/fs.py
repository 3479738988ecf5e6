"""ShmFs: tmpfs semantics over vmcore Mappings (internal-api.md section 3).

The class is assembled from small mixins, each a readable module:

    state.FsCore        inode table, lifetime, ispace, handles, events
    attrs.AttrOps       getattr/setattr, remember/forget, statfs, remount, access
    namespace.NamespaceOps  lookup, mknod, mkdir, symlink, link, unlink, rmdir,
                        rename, readdir
    files.FileOps       open/create/read/write/fallocate/lseek, directory handles
    xattr.XattrOps      extended attributes
    fsflags.FlagOps     chattr flags (FS_IOC_GETFLAGS ...) and their enforcement

No I/O and no trio: the mount layer calls these methods and turns FsError into
FUSE error replies. Not thread-safe: one trio task drives it.
"""

from __future__ import annotations

from .fsflags import FlagOps
from .xattr import XattrOps


class ShmFs(FlagOps, XattrOps):
    """One mounted filesystem: ``ShmFs(FsOptions(size_bytes=..., nr_inodes=...))``."""

    ROOT_INO = 1
