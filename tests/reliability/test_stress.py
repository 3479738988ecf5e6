"""scripts/stress.py in the suite: a short run on a fresh shmfs must verify everything,
and the oracle must catch a corruption (else a PASS would mean nothing).

The long runs (10 minutes on shmfs and on tmpfs) are documented in
docs/reliability.md; here the tool runs briefly as a regression test.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mount.mounting.managed import ManagedMount, managed_shmfs
from tests.support.mounts import leftovers

REPO = Path(__file__).resolve().parents[2]
STRESS = REPO / "scripts" / "stress.py"

pytestmark = pytest.mark.mount

OWNED_KINDS = {"write", "read", "verify", "mmap_store", "mmap_load", "truncate", "fallocate",
               "punch", "rename", "link", "unlink", "copy_range"}
SHARED_KINDS = {"sh_create", "sh_link", "sh_unlink", "sh_rename", "sh_read"}


def _left(tmp_path: Path) -> list[str]:
    """What the runs left in their TMPDIR: mounts, daemons, directories."""
    tmp = tmp_path / "tmp"
    return leftovers(tmp) + [p.name for p in tmp.iterdir()]


def _stress(tmp_path: Path, *args: str, timeout: float = 120) -> tuple[int, str, dict]:
    out = tmp_path / "summary.json"
    tmp = tmp_path / "tmp"  # its fresh mounts go here: checked by _left
    tmp.mkdir(exist_ok=True)
    proc = subprocess.run([sys.executable, str(STRESS), *args, "--json", str(out)], cwd=REPO,
                          capture_output=True, text=True, timeout=timeout,
                          env=dict(os.environ, TMPDIR=str(tmp)))
    summary = json.loads(out.read_text()) if out.exists() else {}
    return proc.returncode, proc.stdout + proc.stderr, summary


def test_short_run_on_shmfs_verifies_everything(tmp_path: Path) -> None:
    rc, text, s = _stress(tmp_path, "--seconds", "12", "--procs", "3", "--seed", "4242")
    assert rc == 0, text
    assert s["target"] == "shmfs"
    assert s["errors"] == 0 and not s["failures"] and not s["shared_errors"], text
    assert OWNED_KINDS | SHARED_KINDS <= set(s["per_kind"]), text
    assert s["bytes_verified"] > 0
    assert "PASS" in text and "[" in text  # progress lines and the verdict were printed
    assert _left(tmp_path) == []  # the shmfs it mounted is gone again, and its daemon


def test_fsx_kinds_on_shmfs(tmp_path: Path) -> None:
    """--fsx adds fsx's checks (zeros past EOF in the EOF page through a mapping,
    mapped writes that extend the file, O_DIRECT I/O); they must all pass, and
    the replay command must carry --fsx (it shapes the op stream)."""
    rc, text, s = _stress(tmp_path, "--seconds", "8", "--procs", "2", "--seed", "77", "--fsx")
    assert rc == 0, text
    assert s["errors"] == 0 and not s["failures"], text
    assert {"eofpage", "mapwrite_extend", "direct_io"} <= set(s["per_kind"]), text
    rc, text, s = _stress(tmp_path, "--tmpfs", "--ops", "80", "--procs", "1", "--seed", "77",
                          "--fsx", "--inject", "60")
    assert rc == 1, text
    assert "--fsx" in s["failures"][0].split("replay:")[1], text
    assert not _left(tmp_path)


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


def test_a_daemon_that_died_during_the_run_is_an_error(tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    # Told by the daemon's exit status, not by a syscall on the mount (that hangs if the
    # daemon hangs); the dead mount is still taken down.
    monkeypatch.syspath_prepend(str(REPO / "scripts"))
    from stresslib import runner

    seen: list[ManagedMount] = []

    @contextlib.contextmanager
    def spy(*args: Any, **kw: Any) -> Iterator[ManagedMount]:
        with managed_shmfs(*args, parent=tmp_path, **kw) as m:
            seen.append(m)
            yield m

    monkeypatch.setattr(runner, "managed_shmfs", spy)
    with pytest.raises(RuntimeError, match="died during the run") as exc, \
            runner.target("shmfs", None, "64m") as root:
        (root / "f").write_bytes(b"x")
        os.kill(seen[0].pid, signal.SIGKILL)
        pidfd = os.pidfd_open(seen[0].pid)
        assert select.select([pidfd], [], [], 30)[0], "the daemon did not die"
        os.close(pidfd)
    assert "exit status -9" in str(exc.value)
    assert leftovers(tmp_path) == [] and list(tmp_path.iterdir()) == []
