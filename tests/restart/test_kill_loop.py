"""The stress oracle on a restartable mount while a loop SIGKILLs the serving child
(issue 17 a): at least 50 kills, zero wrong or lost bytes, no ENOTCONN (or any other
unexpected errno) in any worker, windows coherent (the window kinds of the stress
tool check every byte seen through a window against the object's model).

The window kinds run too (remap, load, store, MADV_REMOVE through a window
over each worker's files): their short reads after a restart (the kernel's
stale i_size of a window file: a GETATTR answered behind the restart's
invalidations is dropped) are fixed by the size store of ATTACH and of a
restart (fsimpl/windows.py ``size_store``; test_window_size.py reproduces
the cause deterministically).

The CI version of scripts/restart_kill_loop.py: 50 kills at random moments
(uniform 0..0.2 s after each child starts serving): measured 40 s at load 5
(median restart 0.44 s) and 67 s at load 6 (1.27 s); the stress run lasts
90 s so that a loaded machine still gets its 50 kills. The
longer runs and their figures are in docs/reliability.md.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.mounts import ROOT, leftovers

pytestmark = pytest.mark.mount

SCRIPT = ROOT / "scripts" / "restart_kill_loop.py"
WINDOW_KINDS = {"win_remap", "win_load", "win_store", "win_remove"}


def test_fifty_kills_under_the_stress_oracle(tmp_path: Path) -> None:
    out = tmp_path / "summary.json"
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--seconds", "90", "--kills", "50", "--gap", "0.1",
         "--procs", "3", "--seed", "1707", "--size", "512m", "--json", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=900,
        env={**os.environ, "TMPDIR": str(tmp)})
    s = json.loads(out.read_text())
    report = proc.stdout[-6000:] + proc.stderr[-3000:]
    assert s["errors"] == 0 and not s["failures"] and not s["shared_errors"], report
    assert "ENOTCONN" not in report and "not connected" not in report, report
    assert s["killer_error"] is None, report
    assert s["kills"] >= 50, report
    assert s["supervisor_alive"], report  # the supervisor lived through every kill
    assert not s["log_errors"], s["log_errors"]
    assert WINDOW_KINDS <= set(s["per_kind"]), report  # every window kind ran and was checked
    assert {"write", "mmap_store", "punch", "rename", "copy_range"} <= set(s["per_kind"]), report
    assert proc.returncode == 0, report
    assert leftovers(tmp) == []
