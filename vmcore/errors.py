"""Errors raised by the pager.  Expected outcomes of a fault are VmFaultResult
bits; these exceptions are for callers that turn a result into a failure
(write(2) at ENOSPC, a window access that must deliver SIGBUS/SIGSEGV)."""

from __future__ import annotations

import errno as _errno
import os


class VmError(Exception):
    """Base: carries an errno so the filesystem layer can translate it once."""

    def __init__(self, errno: int, msg: str = "") -> None:
        super().__init__(errno, msg or os.strerror(errno))
        self.errno = errno
        self.msg = msg or os.strerror(errno)

    def __str__(self) -> str:
        return f"[{_errno.errorcode.get(self.errno, self.errno)}] {self.msg}"


class NoSpace(VmError):
    """The Budget (size= limit) could not charge a page: ENOSPC."""

    def __init__(self, msg: str = "no space left in the filesystem budget") -> None:
        super().__init__(_errno.ENOSPC, msg)


class Sigbus(VmError):
    """An access the kernel would answer with SIGBUS (beyond EOF, ENOSPC on a fault)."""

    def __init__(self, address: int | None, reason: str, errno: int = _errno.EFAULT) -> None:
        super().__init__(errno, reason)
        self.address = address
        self.reason = reason


class Sigsegv(VmError):
    """An access the kernel would answer with SIGSEGV (no vma, protection)."""

    def __init__(self, address: int | None, reason: str, errno: int = _errno.EFAULT) -> None:
        super().__init__(errno, reason)
        self.address = address
        self.reason = reason
