"""Sides (a kernel tmpfs, shmfs, or any directory) and running the suite on them.

A :class:`Side` is either a fixed directory or a mount factory (``options ->
context manager yielding a mountpoint``).  The bulk of the cases share one
mount per side, each in a fresh subdirectory; a case that declares mount
options gets a private mount on each side (and is reported as not run on a
side that is only a directory).
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path

from tests.support.mounts import shmfs_mount, tmpfs_mount

from .framework import CASE_TIMEOUT, Case, CaseResult, run_case

MountFactory = Callable[[str], AbstractContextManager[Path]]


# The oracle is the shared fixture's kernel tmpfs (its parent is world-searchable,
# so cases acting as another user reach the mount).
kernel_tmpfs = tmpfs_mount


@contextlib.contextmanager
def shmfs_allow_other(options: str = "") -> Iterator[Path]:
    """A fresh shmfs with allow_other: cases act as other uids, which FUSE refuses
    to anyone but the mounter without it."""
    with shmfs_mount(",".join(o for o in (options, "allow_other") if o)) as mnt:
        yield mnt


def make_traversable(path: Path) -> None:
    """Give o+x to the private temporary directories above ``path`` (mkdtemp makes
    them 0700), so another uid can reach the mount; system directories are left alone."""
    tmp = Path(tempfile.gettempdir()).resolve()
    for p in path.resolve().parents:
        if p == tmp or tmp not in p.parents:
            break
        st = p.stat()
        if st.st_mode & 0o001 == 0:
            os.chmod(p, (st.st_mode & 0o7777) | 0o055)


@dataclass
class Side:
    """One filesystem to run the suite on."""

    name: str
    mount: MountFactory | None = None
    directory: Path | None = None


class SideRun(contextlib.ExitStack):
    """An open side: the shared root for plain cases, private mounts on demand."""

    def __init__(self, side: Side) -> None:
        super().__init__()
        self.side = side
        self.root: Path | None = None

    def __enter__(self) -> SideRun:
        super().__enter__()
        if self.side.mount is not None:
            mnt = self.enter_context(self.side.mount(""))
            make_traversable(mnt)
            self.root = mnt
        else:
            assert self.side.directory is not None
            self.root = Path(tempfile.mkdtemp(prefix="posix-", dir=self.side.directory))
            os.chmod(self.root, 0o755)
        return self

    def can_run(self, c: Case) -> bool:
        return c.mount is None or self.side.mount is not None

    def run(self, c: Case, timeout: float = CASE_TIMEOUT) -> CaseResult:
        if c.mount is None:
            assert self.root is not None
            return run_case(c, self.root, timeout)
        assert self.side.mount is not None
        try:
            with self.side.mount(c.mount) as mnt:
                make_traversable(mnt)
                return run_case(c, mnt, timeout)
        except Exception as e:  # a mount that fails is this case's result, not the run's
            return CaseResult(c.name, [], f"mount -o {c.mount} failed: {type(e).__name__}: {e}")
