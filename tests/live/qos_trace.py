"""Watch CPU latency QoS requests from outside the daemon, through the kernel's
tracepoints (power:pm_qos_add_request -- an open -- pm_qos_update_request and
pm_qos_update_target).

Why not read /dev/cpu_dma_latency? A second reader gets the system-wide
aggregate -- the minimum over every request -- and on a shared machine other
shmfs daemons hold 0 whenever they are busy, so the value says nothing about
*our* daemon. The tracepoints fire in the context of the process that writes
the device, with the value it asked for and the aggregate the kernel computed
right after: with ``record-tgid`` each event names the daemon's pid.

A private tracefs mount and a trace instance of our own (its own buffer and
event switches) keep this from disturbing other tracing on the machine; both
are removed on exit. Needs root.
"""

from __future__ import annotations

import os
import re
import select
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

NO_CONSTRAINT = 2_000_000_000  # PM_QOS_CPU_LATENCY_DEFAULT_VALUE: "no constraint"

# "<comm>-<tid> (<tgid>) [cpu] flags ts: <event>: <fields>"
_LINE = re.compile(r"-\d+\s+\(\s*(?P<tgid>\d+)\)\s.*?\s"
                   r"(?P<event>pm_qos_(?:add|update)_\w+): (?P<rest>.*)")


@dataclass
class QosWrite:
    """One write of the device: the value a process asked for, and the aggregate
    constraint the kernel computed right after (None until its event is read)."""

    value: int
    aggregate: int | None = None


@dataclass
class QosTrace:
    """The CPU latency requests processes made since the trace started, by tgid."""

    pipe: int
    writes: dict[int, list[QosWrite]] = field(default_factory=dict)
    _buf: bytes = b""

    def of(self, pid: int) -> list[QosWrite]:
        """The writes of process ``pid`` (any of its threads) read so far."""
        return self.writes.get(pid, [])

    def drain(self) -> None:
        """Take in every event already in the buffer, without waiting."""
        while select.select([self.pipe], [], [], 0)[0] and self._read():
            pass

    def wait_until(self, cond: Callable[[QosTrace], bool], timeout: float = 10,
                   pid: int | None = None) -> None:
        """Read events as they come (poll on trace_pipe, no timer) until cond holds;
        AssertionError after ``timeout`` seconds, quoting the writes of ``pid``."""
        deadline = time.monotonic() + timeout
        self.drain()
        while not cond(self):
            left = deadline - time.monotonic()
            seen = self.of(pid)[-12:] if pid is not None else self.writes
            assert left > 0, f"no such QoS event within {timeout:g} s; seen (last): {seen}"
            if select.select([self.pipe], [], [], left)[0]:
                self._read()

    def _read(self) -> int:
        try:
            chunk = os.read(self.pipe, 1 << 16)
        except BlockingIOError:
            return 0
        *lines, self._buf = (self._buf + chunk).split(b"\n")
        for raw in lines:
            m = _LINE.search(raw.decode(errors="replace"))
            if m is None:
                continue
            tgid = int(m["tgid"])
            if m["event"] in ("pm_qos_add_request", "pm_qos_update_request"):
                value = int(m["rest"].rsplit("value=", 1)[1])
                self.writes.setdefault(tgid, []).append(QosWrite(value))
            elif m["event"] == "pm_qos_update_target" and "REMOVE_REQ" not in m["rest"]:
                own = self.writes.get(tgid)
                if own and own[-1].aggregate is None:
                    own[-1].aggregate = int(m["rest"].rsplit("curr_value=", 1)[1])
        return len(chunk)


@contextmanager
def qos_trace() -> Iterator[QosTrace]:
    """Trace CPU latency QoS writes from now until the block ends."""
    top = tempfile.mkdtemp(prefix="shmfs-qos-trace-")
    subprocess.run(["mount", "-t", "tracefs", "nodev", top], check=True)
    inst = os.path.join(top, "instances", os.path.basename(top))
    pipe = -1
    try:
        os.mkdir(inst)
        for knob in ("options/record-tgid", "events/power/pm_qos_add_request/enable",
                     "events/power/pm_qos_update_request/enable",
                     "events/power/pm_qos_update_target/enable"):
            with open(os.path.join(inst, knob), "w") as f:
                f.write("1")
        pipe = os.open(os.path.join(inst, "trace_pipe"), os.O_RDONLY | os.O_NONBLOCK)
        yield QosTrace(pipe)
    finally:
        if pipe >= 0:
            os.close(pipe)
        if os.path.isdir(inst):
            os.rmdir(inst)  # an instance goes with its buffer and event switches
        subprocess.run(["umount", top], check=False)
        os.rmdir(top)
