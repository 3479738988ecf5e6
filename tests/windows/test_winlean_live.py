"""The window engine's slot reads and cached exports (winlean) on a live mount.

The same deterministic sequence of window REMAPs -- over two windows, with the
object truncated and rewritten in between so that its page-cache arrays are replaced
under the engine's export cache -- on a mount with ``SHMFS_WINLEAN`` on and on one
with it off: ``shmfs stat --json`` reports the same fault, window and pager counters,
the engine answered the REMAPs both times, and the cache was on exactly when asked.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest

from mount.server import winfast
from mount.winapi.client import Window
from tests.support.mounts import shmfs_mount
from tests.windows.helpers import make_object

pytestmark = [pytest.mark.mount,
              pytest.mark.skipif(not winfast.available(),
                                 reason="the C extension is not built (scripts/bootstrap.sh)")]

ROOT = Path(__file__).resolve().parents[2]


def _stat(mnt: Path) -> dict:
    """`shmfs stat --json` of the mount, through the CLI."""
    out = subprocess.run([sys.executable, "-m", "mount.cli.main", "stat", "--json", str(mnt)],
                         capture_output=True, text=True, timeout=60, cwd=ROOT, check=True)
    return json.loads(out.stdout)


def _sequence(mnt: Path) -> dict:
    d = mnt / "d"
    d.mkdir()
    obj = d / "obj"
    make_object(obj, 64)
    rng = random.Random(42)
    with Window.create(d / "w1", obj, 600) as w1, Window.create(d / "w2", obj, 600) as w2:
        for w in (w1, w2):
            w.remap(0, 1, 40, populate=True)  # the first remap (nonlinear now): Python
        for rnd in range(3):
            for _ in range(120):
                w = w1 if rng.random() < 0.5 else w2
                w.remap(rng.randrange(600), 1, rng.randrange(64), populate=True)
            # the object's page cache freed and made again: new arrays under the cache
            fd = os.open(obj, os.O_RDWR)
            try:
                os.ftruncate(fd, 0)
                os.pwrite(fd, bytes([rnd + 1]) * (64 * 4096), 0)
            finally:
                os.close(fd)
        return _stat(mnt)


def _counters(st: dict) -> dict:
    pager = {k: v for k, v in st["windows"]["pager"].items() if k != "dirty_pages"}
    return {"faults": st["faults"], "windows": st["windows"]["counters"], "pager": pager,
            "kernel_cached": st["windows"]["kernel_cached_pages"]}


def test_stat_counters_equal_with_and_without_the_cache(monkeypatch: pytest.MonkeyPatch) -> None:
    got = {}
    for lean in ("1", "0"):
        monkeypatch.setenv("SHMFS_WINLEAN", lean)
        with shmfs_mount() as mnt:
            st = _sequence(mnt)
        native = st["session"]["winfast"]
        assert native["lean"]["enabled"] == int(lean), native["lean"]
        assert native["remaps"] > 200, native  # the engine's, not Python's
        if lean == "1":
            assert native["lean"]["reuses"] > native["lean"]["exports"] > 0, native["lean"]
        got[lean] = _counters(st)
    assert got["1"] == got["0"]
    assert got["1"]["windows"]["remaps"] == 2 + 360
