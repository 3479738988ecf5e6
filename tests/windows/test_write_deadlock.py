"""Regression: concurrent write-backs through windows sharing object pages must
not hang the session (the reply-ordering rule in mount/server/session.py).

Runs tests/windows/repro_write_deadlock.py for a bounded time: three processes
store through mmaps of three windows over one object, a fourth through the
object itself. Before the fix a WRITE's reply waited behind invalidations that
waited on another WRITE's writeback, and the mount froze within a minute.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.mount

SCRIPT = Path(__file__).with_name("repro_write_deadlock.py")


def test_concurrent_window_writebacks_do_not_hang() -> None:
    r = subprocess.run([sys.executable, str(SCRIPT), "15"], capture_output=True, text=True,
                       timeout=180, check=False)
    assert r.returncode == 0, r.stdout + r.stderr
