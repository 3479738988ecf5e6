"""The window tools (scripts/uml_physmem.py, scripts/vlm_window.py) against live mounts.

Each tool runs as a separate program, as a user would run it, with ``--quick``:
on a shmfs it mounts itself (plus the kernel tmpfs of ``--compare-tmpfs``) and
on one mounted by the ``shmfs_mount`` fixture (``--mount``).  The checks are on
exit status, the JSON report's shape and sanity (positive counts and rates,
nothing left mounted or running in the tool's private TMPDIR), and on the
max_map_count wall: the kernel's emulation must stop with ENOMEM where the
shmfs window does not.  No timing thresholds.
The oracles themselves are checked too: a backend that returns stale data must
make them fail.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.support.mounts import daemon_pid, leftovers, shmfs_mount

REPO = Path(__file__).resolve().parents[2]
SCRIPTS = REPO / "scripts"
sys.path.insert(0, str(SCRIPTS))

pytestmark = pytest.mark.mount
TIMEOUT = 240


def _max_map_count() -> int:
    return int(Path("/proc/sys/vm/max_map_count").read_text())


def _tool_mounts(tmp_path: Path) -> list[str]:
    """What the tool runs left in their TMPDIR: mounts, daemons, directories."""
    tmp = tmp_path / "tmp"
    return leftovers(tmp) + [p.name for p in tmp.iterdir()]


def _run(tool: str, tmp_path: Path, *args: str) -> dict[str, Any]:
    out = tmp_path / f"{tool}.json"
    tmp = tmp_path / "tmp"  # the tool's fresh mounts go here: checked by _tool_mounts
    tmp.mkdir(exist_ok=True)
    r = subprocess.run([sys.executable, str(SCRIPTS / f"{tool}.py"), "--quick",
                        "--json", str(out), *args],
                       cwd=REPO, capture_output=True, text=True, timeout=TIMEOUT,
                       env=dict(os.environ, TMPDIR=str(tmp)))
    assert r.returncode == 0, f"{tool} failed:\n{r.stdout}\n{r.stderr}"
    assert "all verifications passed" in r.stdout
    doc = json.loads(out.read_text())
    assert doc["ok"] is True
    return doc


def _check_wall(doc: dict[str, Any], wall_pages: int) -> None:
    sh, tm = doc["wall"]["shmfs"], doc["wall"]["tmpfs"]
    assert sh["errors"] == [] and tm["errors"] == []
    assert sh["remaps_done"] == sh["remaps_wanted"] == wall_pages
    assert sh["window_vmas_in_daemon"] == 1
    assert sh["process_vmas"] < 1000  # one mmap of the window, not one VMA per page
    assert tm["enomem_at"] is not None and 0 < tm["enomem_at"] < wall_pages
    assert tm["remaps_done"] == tm["enomem_at"]
    assert tm["verified_pages"] > 0 and sh["verified_pages"] > 0
    assert sh["remaps_per_s"] > 0 and tm["remaps_per_s"] > 0


def test_uml_physmem_quick_with_tmpfs_comparison(tmp_path: Path) -> None:
    wall_pages = _max_map_count() + 64
    doc = _run("uml_physmem", tmp_path, "--compare-tmpfs", "--wall-pages", str(wall_pages),
               "--physmem", str(wall_pages * 4096))
    assert set(doc["runs"]) == {"shmfs", "tmpfs"}
    sh, tm = doc["runs"]["shmfs"], doc["runs"]["tmpfs"]
    for r in (sh, tm):
        assert r["errors"] == []
        assert r["remaps"] > 0 and r["remaps_per_s"] > 0
        assert r["loads"] > 0 and r["stores"] > 0 and r["frees"] > 0
        assert r["verified_bytes"] == r["loads"] * 4096
        assert r["returned_bytes"] > 0 and r["used_after_free"] <= r["used_before_free"]
    # the same seeded operation stream on both filesystems
    assert sh["op_counts"] == tm["op_counts"]
    assert sh["daemon_faults"] > 0 and sh["faults_per_s"] > 0
    assert sh["denied"] > 0 and sh["queries"] > 0  # EACCES and QUERY checks ran
    assert sh["daemon_rss_before_free"] > 0 and sh["daemon_rss_after_free"] > 0
    _check_wall(doc, wall_pages)
    assert _tool_mounts(tmp_path) == []


def test_vlm_window_quick_with_tmpfs_comparison(tmp_path: Path) -> None:
    wall_pages = _max_map_count() + 64
    doc = _run("vlm_window", tmp_path, "--compare-tmpfs", "--wall-pages", str(wall_pages))
    sh, tm = doc["runs"]["shmfs"], doc["runs"]["tmpfs"]
    for r in (sh, tm):
        assert r["errors"] == []
        assert r["accesses"] == doc["accesses"] > 0
        assert r["hits"] + r["misses"] == r["accesses"]
        assert 0 < r["hit_ratio"] < 1
        assert r["remaps"] == r["misses"] and r["remaps_per_s"] > 0
        assert r["reads"] == r["accesses"] and r["writes"] > 0 and r["object_checks"] > 0
        assert r["map_count_wall"] is None
    assert sh["hit_ratio"] == tm["hit_ratio"]  # same access stream, same LRU
    assert sh["daemon_faults"] > 0
    _check_wall(doc, wall_pages)
    assert _tool_mounts(tmp_path) == []


def test_tools_on_an_existing_mount(tmp_path: Path) -> None:
    with shmfs_mount("size=512m") as mnt:
        pid = str(daemon_pid(mnt))
        uml = _run("uml_physmem", tmp_path, "--mount", str(mnt), "--daemon-pid", pid,
                   "--physmem", "64m", "--ops", "600")
        vlm = _run("vlm_window", tmp_path, "--mount", str(mnt), "--daemon-pid", pid,
                   "--object-size", "4g", "--accesses", "800")
        assert list(mnt.iterdir()) == []  # the tools clean up after themselves
    r = uml["runs"]["shmfs"]
    assert r["loads"] > 0 and r["remaps"] > 0 and r["daemon_rss_before_free"] > 0
    v = vlm["runs"]["shmfs"]
    assert v["accesses"] == 800 and v["remaps"] > 0 and v["daemon_rss"] > 0


# ----------------------------------------------------------- the oracles can fail
class _StaleSlots:
    """A buffer-cache backend that loses one store: the oracle must notice."""

    kind = "fake"

    def __init__(self, bsize: int) -> None:
        self.bsize = bsize
        self.blocks: dict[int, bytes] = {}
        self.shows: dict[int, int] = {}
        self.stores = 0
        self.remap_seconds = 0.0

    def remap(self, slot: int, block: int) -> None:
        self.shows[slot] = block

    def load(self, slot: int, via: str) -> bytes:
        return self.blocks.get(self.shows[slot], bytes(self.bsize))

    def store(self, slot: int, via: str, data: bytes) -> bool:
        self.stores += 1
        if self.stores != 5:  # the fifth store is lost
            self.blocks[self.shows[slot]] = data
        return False

    def writeback(self, slot: int) -> None:
        pass

    def read_object(self, block: int) -> bytes:
        return self.blocks.get(block, bytes(self.bsize))


def test_vlm_oracle_catches_a_lost_store() -> None:
    import argparse

    import vlm_window

    args = argparse.Namespace(block_size=8192, hot_blocks=64, seed=3, write_fraction=0.5)
    slots = _StaleSlots(8192)
    wl = vlm_window.Workload(slots, 16, 1 << 20, args)
    with pytest.raises(vlm_window.Mismatch):
        for _ in range(5000):
            wl.access()
    assert slots.stores >= 5


def test_uml_guest_check_catches_a_stale_page() -> None:
    from windowlib import guest
    from windowlib.pattern import expected

    class StaleGuest:
        def load(self, i: int, via: str) -> bytes:
            return expected(7, 1, 4096)  # version 1 where the oracle expects 2

        def second_look(self, i: int, frame: int) -> str:
            return "n/a"

    c = dict.fromkeys(guest.COUNTERS, 0.0)
    with pytest.raises(guest.SliceError) as e:
        guest._run_slice(StaleGuest(), [("load", 0, "mmap", 7, 1), ("load", 0, "pread", 7, 2)],
                         c)
    assert e.value.index == 1 and "version 1" in e.value.msg
    assert c["loads"] == 1
