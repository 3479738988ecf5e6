"""File handles across mounts: a handle names (node id, generation); node ids
start again at 1 in every mount, so only the per-mount generation keeps a
handle from an earlier mount from opening another file (docs/fuse-protocol.md).
tmpfs gets the same from its random i_generation. Also: LOOKUP of "." and ".."
on the wire, as fuse_get_dentry / fuse_get_parent send them."""

from __future__ import annotations

import errno
import os

import pytest

from tests.posix.cases_handles import drop_caches, name_to_handle, open_by_handle
from tests.support.mounts import shmfs_mount, tmpfs_mount

pytestmark = pytest.mark.mount


def _stale_across_mounts(mount) -> None:  # type: ignore[no-untyped-def]
    with mount("") as a:
        (a / "f").write_bytes(b"first mount")
        h = name_to_handle(str(a / "f"))
    with mount("") as b:
        (b / "f").write_bytes(b"second mount")  # same path, same first node id
        drop_caches()
        mfd = os.open(b, os.O_RDONLY | os.O_DIRECTORY)
        try:
            with pytest.raises(OSError) as e:
                os.close(open_by_handle(mfd, h, os.O_RDONLY))
            assert e.value.errno == errno.ESTALE
            fd = open_by_handle(mfd, name_to_handle(str(b / "f")), os.O_RDONLY)
            assert os.read(fd, 100) == b"second mount"
            os.close(fd)
        finally:
            os.close(mfd)


def test_handle_from_another_mount_is_stale_tmpfs() -> None:
    _stale_across_mounts(tmpfs_mount)


def test_handle_from_another_mount_is_stale_shmfs() -> None:
    _stale_across_mounts(shmfs_mount)
