"""The inputs a request's handling takes from outside the request: recorded live,
given back on replay, so that replaying a journal reproduces the state exactly.

* the clock: fsimpl asks ``ShmFs._now()`` several times per request; here it
  returns one value per request (taken by ``begin``), which the record keeps;
* the caller's credentials read from /proc (mount/server/creds.py ``hook``);
* the random attach tokens a GRANT mints (fsimpl/wingrant.py ``token_source``);
* the session's answer whether a NOTIFY_STORE is still queued (``store_queued``);
* the mount's atime options (``atime_mode``), which a remount changes: only a
  change is recorded, with the first request that saw it.

Everything else a handler does is a function of the state and the request
bytes (node ids and handle numbers are counters, frame allocation is
deterministic, fsimpl iterates no set whose order depends on the hash seed).
"""

from __future__ import annotations

import os
import pickle
import time
from collections.abc import Iterator
from typing import Any


class ReplayMismatch(RuntimeError):
    """A replayed request asked for an input its record does not hold."""


class Inputs:
    """Clock, credentials and tokens of the request being handled."""

    def __init__(self) -> None:
        self.now = time.time_ns()
        self.consumed: list[Any] = []  # live: what the current request took, in order
        self._replay: Iterator[Any] | None = None
        self.store_source: Any = None  # the session's store_queued, wrapped by store_queued
        self.atime_source: Any = None  # the daemon's atime_mode (MountFlagsWatch)
        self.atime_last: Any = None  # the atime options as the journal last recorded them
        self._peek: tuple[str, Any] | None = None  # replay: the next recorded input

    # -- the sources ---------------------------------------------------------------------

    def clock(self) -> int:
        """fsimpl's clock: the request's one time value."""
        return self.now

    def creds(self, pid: int, uid: int, gid: int) -> Any:
        if self._replay is not None:
            return self._next("creds")
        from mount.server.creds import read_creds_proc

        value = read_creds_proc(pid, uid, gid)
        self.consumed.append(("creds", value))
        return value

    def token(self, n: int) -> bytes:
        if self._replay is not None:
            return self._next("token")
        value = os.urandom(n)
        self.consumed.append(("token", value))
        return value

    def store_queued(self, ino: int, page: int) -> bool:
        """fsimpl's question to the session whether a NOTIFY_STORE of (ino, page) is
        still queued (fsimpl/wincoherence.py): its answer depends on the writer
        thread's progress, so it is an input too."""
        if self._replay is not None:
            return bool(self._next("store"))
        src = self.store_source
        value = bool(src(ino, page)) if src is not None else False
        self.consumed.append(("store", value))
        return value

    def atime_mode(self) -> Any:
        """fsimpl's question for the mount's atime options (mount/server/mountflags.py
        reads them from mountinfo: ``mount -o remount,noatime`` changes them behind
        the daemon). Only a change is recorded, with the request that first saw it."""
        if self._replay is not None:
            nxt = self._peek
            if nxt is not None and nxt[0] == "atime":
                self._peek = None
                self.atime_last = nxt[1]
            return self.atime_last
        src = self.atime_source
        value = src() if src is not None else self.atime_last
        if value != self.atime_last:
            self.atime_last = value
            self.consumed.append(("atime", value))
        return value

    def _next(self, kind: str) -> Any:
        if self._peek is not None:
            got, value = self._peek
            self._peek = None
        else:
            try:
                got, value = next(self._replay)  # type: ignore[arg-type]
            except StopIteration:
                raise ReplayMismatch(f"replay asked for {kind}, the record has no more") from None
        if got == "atime":  # a change the live run saw before this input: take it, go on
            self.atime_last = value
            return self._next(kind)
        if got != kind:
            raise ReplayMismatch(f"replay asked for {kind}, the record has {got}")
        return value

    # -- per request ---------------------------------------------------------------------

    def start_live(self, now: int) -> None:
        self.now = now
        self.consumed.clear()
        self._replay = None

    def side_bytes(self) -> bytes:
        """The consumed inputs of the current request, pickled (b"" when none)."""
        return pickle.dumps(self.consumed, protocol=5) if self.consumed else b""

    def start_replay(self, now: int, side: bytes) -> None:
        self.now = now
        self.consumed.clear()
        self._replay = iter(pickle.loads(side) if side else ())
        self._peek = next(self._replay, None)  # (atime_mode looks at it without taking it)

    def end_replay(self) -> None:
        if self._peek is not None and self._peek[0] == "atime":  # seen by a last call
            self.atime_last = self._peek[1]
        self._replay = None
        self._peek = None

    def install(self) -> None:
        """Route the creds and token sources of this process through this object."""
        from fsimpl import wingrant
        from mount.server import creds

        creds.hook = self.creds
        wingrant.token_source = self.token

    @staticmethod
    def uninstall() -> None:
        from fsimpl import wingrant
        from mount.server import creds

        creds.hook = None
        wingrant.token_source = os.urandom
