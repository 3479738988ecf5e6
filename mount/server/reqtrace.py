"""A per-request timeline of the session, for measuring where latency goes.

Switched on by ``SHMFS_REQTRACE=FILE`` in the daemon's environment (a
measurement tool, not a mount option: scripts/latency_under_streams.py
``--trace`` sets it). Every request then gets one record::

    (unique, opcode, length, thread, t_read_start, t_read, t_locked, t_done, cpu_ns)

all times ``time.perf_counter_ns()`` (CLOCK_MONOTONIC, the clock the kernel's
``fuse_request_send``/``fuse_request_end`` tracepoints use with
``trace_clock=mono``): when the reader called read(2) on the device, when
the request was in our buffer, when the fs lock was taken (readers=2; equal to
t_read with one reader), when the handler and the reply were done, and the
thread CPU time the handling used (wall minus CPU: time the handling thread
was not running -- preempted, or waiting for the GIL). The records go to FILE
as JSON lines when the session ends. Memory: at most ``LIMIT`` records.

Joined with the kernel's tracepoints on ``unique`` this splits a request's
latency into: queued in the kernel (send -> read start), the read itself,
waiting for the fs lock, handling, and reply -> end (docs/performance.md,
change 24).
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable

ENV = "SHMFS_REQTRACE"
LIMIT = 2_000_000


class RequestTrace:
    """Records kept in a list (appending is atomic under the GIL), written at close."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.records: list[tuple[int, ...]] = []
        self.local = threading.local()

    @classmethod
    def from_env(cls) -> RequestTrace | None:
        path = os.environ.get(ENV)
        return cls(path) if path else None

    def read_start(self) -> None:
        """Called by a reader just before read(2) of the device."""
        self.local.t_rs = time.perf_counter_ns()

    def read_done(self) -> None:
        """Called by a reader once read(2) returned a request."""
        self.local.t_read = time.perf_counter_ns()

    def wrap(self, handle: Callable[[memoryview], None]) -> Callable[[memoryview], None]:
        """``handle`` (Session._handle), recording one record per call."""
        clock, cpu, local, records = time.perf_counter_ns, time.thread_time_ns, self.local, \
            self.records
        tid = threading.get_native_id

        def traced(msg: memoryview) -> None:
            t_locked = clock()
            c0 = cpu()
            try:
                handle(msg)
            finally:
                if len(records) < LIMIT and len(msg) >= 16:
                    records.append((
                        int.from_bytes(msg[8:16], "little"), msg[4], len(msg), tid(),
                        getattr(local, "t_rs", t_locked), getattr(local, "t_read", t_locked),
                        t_locked, clock(), cpu() - c0))
        return traced

    def close(self) -> None:
        """Write the records as JSON lines (best effort: a measurement aid)."""
        try:
            with open(self.path, "w") as f:
                for r in self.records:
                    f.write(json.dumps(r) + "\n")
        except OSError:
            pass
