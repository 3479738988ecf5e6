"""fsimpl: tmpfs semantics (inodes, names, attributes, xattrs, limits) over the
pager's Mappings. Raises FsError(errno); never imports trio or mount."""

from .errors import FsError
from .fs import ShmFs
from .types import Attr, Ctx, FsOptions, InvalEntry, InvalInode, StatFs

__all__ = ["Attr", "Ctx", "FsError", "FsOptions", "InvalEntry", "InvalInode", "ShmFs", "StatFs"]
