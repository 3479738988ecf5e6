"""``shmfs restart MOUNTPOINT``: a live upgrade with a file open for writing here and a
window mmapped in another process (issue 17 c).

The restart is the real command (a new interpreter importing the code now
installed). Across it: the descriptor open for writing keeps writing at its
offset and fsync covers it, the other process's existing MAP_SHARED mapping of
the window keeps showing the object pages the window maps, a write(2) to the
object is seen through that mapping (the kernel's cached copy was
invalidated), and a REMAP after the restart moves what the mapping shows.
"""

from __future__ import annotations

import os
import subprocess
import sys

from mount.winapi.client import Window
from tests.restart.restartable import restartable_mount
from tests.support.mounts import ROOT
from tests.support.procs import exited
from tests.windows.helpers import MapChild, make_object, page_of

P = 4096


def test_live_upgrade_keeps_open_files_and_mapped_windows() -> None:
    with restartable_mount("size=64m") as m:
        old, _ = m.serving()
        obj = m.path / "obj"
        make_object(obj, 8)
        win = Window.create(m.path / "win", obj, 4)
        win.remap(0, 4, 2)  # window pages 0..3 show object pages 2..5
        mapper = MapChild(m.path / "win", 4 * P)
        try:
            assert mapper.read(0, P) == page_of(2)
            fd = os.open(m.path / "log", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
            try:
                assert os.write(fd, b"before restart\n") == 15
                r = subprocess.run([sys.executable, "-m", "mount.cli", "restart", str(m.path)],
                                   cwd=ROOT, capture_output=True, text=True, timeout=120)
                assert r.returncode == 0, r.stderr
                assert "generation 1" in r.stdout
                assert exited(old, 10)
                new = m.child()
                assert new != old and m.serving() == (new, 1)
                assert os.write(fd, b"after restart\n") == 14
                os.fsync(fd)
            finally:
                os.close(fd)
            assert (m.path / "log").read_bytes() == b"before restart\nafter restart\n"
            # the existing mapping in the other process still shows the same object pages
            assert [mapper.read(i * P, 16) for i in range(4)] == [
                page_of(i)[:16] for i in (2, 3, 4, 5)]
            # a write to the object after the restart is seen through the old mapping
            # (guaranteed from the writer's fsync on, docs/windows.md "Coherence")
            ofd = os.open(obj, os.O_RDWR)
            try:
                assert os.pwrite(ofd, page_of(3, gen=7), 3 * P) == P
                os.fsync(ofd)
            finally:
                os.close(ofd)
            assert mapper.read(P, P) == page_of(3, gen=7)
            # and a store through the mapping reaches the object
            mapper.store(2 * P, b"S" * 32)
            assert mapper.msync() == 0
            assert obj.read_bytes()[4 * P:4 * P + 32] == b"S" * 32
            # a remap by the new server moves what the old mapping shows
            win.remap(0, 1, 7)
            assert mapper.read(0, P) == page_of(7)
        finally:
            mapper.close()
            win.close()
