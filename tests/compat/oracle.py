"""Running a workload of tests/compat/workloads.py on a mounted directory, and the
kernel tmpfs's summaries that the shmfs runs are compared with."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.compat import workloads
from tests.support.mounts import ROOT, tmpfs_mount


def summary(name: str, where: Path) -> dict[str, object]:
    """The summary of workload ``name`` run in a fresh interpreter under ``where``."""
    d = where / "work"
    d.mkdir()
    p = subprocess.run([sys.executable, "-m", "tests.compat.workloads", name, str(d)],
                       cwd=ROOT, capture_output=True, text=True, timeout=300, check=False)
    assert p.returncode == 0, p.stderr
    return json.loads(p.stdout)


def tmpfs_summaries() -> dict[str, dict[str, object]]:
    """Every workload's summary on one kernel tmpfs (the oracle)."""
    with tmpfs_mount("size=256m") as t:
        out = {}
        for name in workloads.NAMES:
            out[name] = summary(name, t)
            subprocess.run(["rm", "-rf", str(t / "work")], check=True)
        return out
