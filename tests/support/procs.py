"""Waiting for processes without sleeping: a pidfd becomes readable when its process exits."""

from __future__ import annotations

import os
import select


def exited(pid: int, timeout: float = 30.0) -> bool:
    """Block until ``pid`` exits (True) or ``timeout`` seconds pass (False).

    Works for processes that are not our children (a daemonised shmfs) as well as
    for children (a zombie counts as exited); a pid that no longer exists has exited."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return True
    try:
        return bool(select.select([fd], [], [], timeout)[0])
    finally:
        os.close(fd)
