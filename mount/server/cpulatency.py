"""Keep idle CPUs out of deep sleep while requests stream in (PM QoS).

Every FUSE request is two wake-ups: the daemon's (covered by the session's
spin) and the client's, which sleeps until the reply. On a VM whose cpuidle
driver halts at once (haltpoll with guest_halt_poll_ns=0, this project's
machine), waking a halted vCPU costs tens of microseconds -- more than the
request itself. The kernel's CPU latency QoS (/dev/cpu_dma_latency, the
interface tuned's latency-performance profile uses) lets a process say "wake-up
latency must stay below N µs": with N=0 the cpuidle governor picks its polling
state, so a CPU waiting for our reply is woken in a few microseconds.

The request is held only while the filesystem is busy: the session engages it
when a request arrives after a quiet spell and releases it after
``RELEASE_AFTER_S`` without requests, so an idle mount costs nothing. The
kernel drops the request when the file is closed, including when the daemon
dies. Opening the device needs root; without it (or with ``-o
cpu_latency=off``) this is a no-op. Figures: docs/performance.md, change 5.
"""

from __future__ import annotations

import logging
import os
import struct

log = logging.getLogger("shmfs.cpulatency")

DEVICE = "/dev/cpu_dma_latency"
# Held this long after the last request. Long enough to cover a client's own work
# between two requests (ls, a compiler, a benchmark loop), short enough that an idle
# mount lets the CPUs halt almost at once.
RELEASE_AFTER_S = 0.002
# Writing PM_QOS_CPU_LATENCY_DEFAULT_VALUE (2000 s) withdraws the constraint
# while keeping the file open for the next burst.
_NO_CONSTRAINT_US = 2_000_000_000


class CpuLatencyHold:
    """A CPU latency QoS request that the session engages and releases."""

    def __init__(self, latency_us: int | None, device: str = DEVICE) -> None:
        """latency_us None: disabled. Opening fails quietly (logged) without root."""
        self.latency_us = latency_us
        self.engaged = False
        self.engagements = 0
        self._fd: int | None = None
        if latency_us is None:
            return
        try:
            self._fd = os.open(device, os.O_WRONLY | os.O_CLOEXEC)
        except OSError as e:
            log.info("cpu latency QoS unavailable (%s): client wake-ups may halt-exit", e)
            return
        # Opening registers a request at the default (no constraint) value.
        self._set(_NO_CONSTRAINT_US)

    @property
    def available(self) -> bool:
        """True when the device is open and engage() has an effect."""
        return self._fd is not None

    def engage(self) -> None:
        """Ask for the low wake-up latency (idempotent, cheap when already held)."""
        if self._fd is not None and not self.engaged:
            self._set(self.latency_us or 0)
            self.engaged = True
            self.engagements += 1

    def release(self) -> None:
        """Withdraw the constraint; CPUs may halt again."""
        if self._fd is not None and self.engaged:
            self._set(_NO_CONSTRAINT_US)
            self.engaged = False

    def close(self) -> None:
        """Drop the request for good."""
        if self._fd is not None:
            fd, self._fd = self._fd, None
            self.engaged = False
            os.close(fd)

    def _set(self, value_us: int) -> None:
        assert self._fd is not None
        try:
            os.write(self._fd, struct.pack("=i", value_us))
        except OSError as e:  # never fatal: the filesystem works without it
            log.warning("cpu latency QoS write failed (%s); disabling it", e)
            os.close(self._fd)
            self._fd = None
            self.engaged = False
