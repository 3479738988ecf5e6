"""A status line at most once a second, on stderr (so stdout can carry the JSON)."""

from __future__ import annotations

import signal
import sys
import time
from collections.abc import Callable


class Progress:
    """``tick()`` often; every ``interval`` seconds it prints ``render()``."""

    def __init__(self, label: str, render: Callable[[], str], interval: float = 1.0,
                 quiet: bool = False) -> None:
        self.label = label
        self.render = render
        self.interval = interval
        self.quiet = quiet
        self.t0 = time.monotonic()
        self.next = self.t0 + interval

    def tick(self) -> None:
        now = time.monotonic()
        if now >= self.next:
            self.next = now + self.interval
            self.line(now)

    def line(self, now: float | None = None) -> None:
        if self.quiet:
            return
        now = time.monotonic() if now is None else now
        print(f"[{self.label} {now - self.t0:6.1f}s] {self.render()}", file=sys.stderr,
              flush=True)


class Interrupted(KeyboardInterrupt):
    """SIGTERM (or SIGINT) arrived: unwind through every ``finally`` (unmount, munmap)."""


def _interrupt(signum: int, _frame: object) -> None:
    raise Interrupted(signal.Signals(signum).name)


def handle_signals() -> None:
    """Make Ctrl-C and SIGTERM unwind the tool, even if it was started with SIGINT
    ignored (as a shell's background job is), so fresh mounts are always unmounted."""
    signal.signal(signal.SIGINT, _interrupt)
    signal.signal(signal.SIGTERM, _interrupt)
