"""Ask the kernel what it says about one mount option, without mounting.

fsopen(2) a filesystem context and fsconfig(2) one parameter into it: the
kernel parses it exactly as at mount time, and a refusal leaves its message
("e tmpfs: Bad value for 'uid'") in the context's log, read back from the fd.
This is the oracle for shmfs's option messages (tests/mount/test_options.py).
"""

from __future__ import annotations

import ctypes
import os

SYS_FSOPEN, SYS_FSCONFIG = 430, 431  # x86_64 and the asm-generic table alike
FSOPEN_CLOEXEC = 1
FSCONFIG_SET_FLAG, FSCONFIG_SET_STRING = 0, 1

_libc = ctypes.CDLL(None, use_errno=True)


def kernel_says(fstype: str, key: str, value: str | None) -> str | None:
    """None if the kernel's ``fstype`` accepts ``key[=value]``, else its message
    without the "e FSTYPE: " prefix. Root only (fsopen needs CAP_SYS_ADMIN)."""
    fd = _libc.syscall(SYS_FSOPEN, fstype.encode(), FSOPEN_CLOEXEC)
    if fd < 0:
        raise OSError(ctypes.get_errno(), f"fsopen({fstype})")
    try:
        if value is None:
            rc = _libc.syscall(SYS_FSCONFIG, fd, FSCONFIG_SET_FLAG, key.encode(), None, 0)
        else:
            rc = _libc.syscall(SYS_FSCONFIG, fd, FSCONFIG_SET_STRING, key.encode(),
                               value.encode(), 0)
        if rc == 0:
            return None
        msg = os.read(fd, 4096).decode().strip()
        return msg.split(": ", 1)[1] if ": " in msg else msg
    finally:
        os.close(fd)
