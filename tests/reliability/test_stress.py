"""scripts/stress.py in the suite: a short run on a fresh shmfs must verify everything,
and the oracle must catch a corruption (else a PASS would mean nothing).

The long runs (10 minutes on shmfs and on tmpfs) are documented in
docs/reliability.md; here the tool runs briefly as a regression test.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
STRESS = REPO / "scripts" / "stress.py"

pytestmark = pytest.mark.mount

OWNED_KINDS = {"write", "read", "verify", "mmap_store", "mmap_load", "truncate", "fallocate",
               "punch", "rename", "link", "unlink"}
SHARED_KINDS = {"sh_create", "sh_link", "sh_unlink", "sh_rename", "sh_read"}


def _our_mounts() -> list[str]:
    with open("/proc/self/mounts") as f:
        return [ln.split()[1] for ln in f if "-stress-" in ln.split()[1]]


def _stress(tmp_path: Path, *args: str, timeout: float = 120) -> tuple[int, str, dict]:
    out = tmp_path / "summary.json"
    proc = subprocess.run([sys.executable, str(STRESS), *args, "--json", str(out)], cwd=REPO,
                          capture_output=True, text=True, timeout=timeout)
    summary = json.loads(out.read_text()) if out.exists() else {}
    return proc.returncode, proc.stdout + proc.stderr, summary


def test_short_run_on_shmfs_verifies_everything(tmp_path: Path) -> None:
    before = _our_mounts()
    rc, text, s = _stress(tmp_path, "--seconds", "12", "--procs", "3", "--seed", "4242")
    assert rc == 0, text
    assert s["target"] == "shmfs"
    assert s["errors"] == 0 and not s["failures"] and not s["shared_errors"], text
    assert OWNED_KINDS | SHARED_KINDS <= set(s["per_kind"]), text
    assert s["bytes_verified"] > 0
    assert "PASS" in text and "[" in text  # progress lines and the verdict were printed
    assert _our_mounts() == before  # the shmfs it mounted is gone again


def test_oracle_catches_a_corruption_and_prints_the_replay(tmp_path: Path) -> None:
    # --inject changes one byte behind the oracle's back; the run must fail, say where,
    # and its replay (process 0 alone, same seed) must fail the same way.
    rc, text, s = _stress(tmp_path, "--tmpfs", "--ops", "200", "--procs", "2", "--seed", "99",
                          "--inject", "120")
    assert rc == 1, text
    assert s["errors"] >= 1
    failure = s["failures"][0]
    assert "VERIFICATION FAILED" in failure and "p0/f0" in failure
    assert "seed 99, process 0, operation #120" in failure
    assert "#119 " in failure  # the history leading up to it
    replay = failure.split("replay: ")[1].split(" [")[0].split()[1:]
    rc2, text2, s2 = _stress(tmp_path, *replay, "--tmpfs")
    assert rc2 == 1, text2
    assert "operation #120 (inject-corruption)" in s2["failures"][0]
    # The same stream: the histories printed by the run and by the replay agree.
    hist = [ln.strip() for ln in failure.splitlines() if ln.strip().startswith("#")]
    hist2 = [ln.strip() for ln in s2["failures"][0].splitlines() if ln.strip().startswith("#")]
    assert hist and hist == hist2
