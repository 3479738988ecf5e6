"""Regression: concurrent write-backs through windows sharing object pages must
not hang the session (the reply-ordering rule in mount/server/session.py).

Runs tests/windows/repro_write_deadlock.py for a bounded time: three processes
store through mmaps of three windows over one object, a fourth through the
object itself. Before the fix a WRITE's reply waited behind invalidations that
waited on another WRITE's writeback, and the mount froze within a minute.
The reproducer passes only if no worker stalls (no progress for its STALL_S),
every worker exits 0, and the object and windows hold exactly the workers'
final records; the tests below also run its judge on plain files, where
workers die or the contents cannot match, and it must fail.
"""

from __future__ import annotations

import importlib.util
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
    assert "no hang; 4 workers exited 0, contents exact" in r.stdout, r.stdout + r.stderr


def _repro():  # the script as a module, for its judge
    spec = importlib.util.spec_from_file_location("repro_write_deadlock", SCRIPT)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_the_reproducer_fails_when_workers_die(tmp_path: Path) -> None:
    """The case issue 18 found: on a plain directory without the windows, three
    workers die with FileNotFoundError -- the old script still said "no hang"."""
    repro = _repro()
    (tmp_path / "obj").write_bytes(bytes(repro.NPAGES * repro.P))
    status, message = repro.run(tmp_path, 1.0)
    assert status == 2, message
    assert "FileNotFoundError" in message and "w1" in message, message


def test_the_reproducer_fails_on_wrong_contents(tmp_path: Path) -> None:
    """Four independent plain files: every worker succeeds, but no file holds
    the other workers' records, as a shared object must."""
    repro = _repro()
    for n in repro.NAMES:
        (tmp_path / n).write_bytes(bytes(repro.NPAGES * repro.P))
    status, message = repro.run(tmp_path, 1.0)
    assert status == 3, message
    assert "wrong contents" in message, message
