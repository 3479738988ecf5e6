"""Window files copy like files: real ``cp`` and ``tar -S`` get a window's bytes (issue 11).

Copying tools skip what ``st_blocks`` and SEEK_DATA/SEEK_HOLE call holes, so a window
(which owns no pages) must report the object pages it shows: before, cp copied an
all-zero file from a window full of data, with rc 0.
"""

from __future__ import annotations

import errno
import os
import subprocess
from pathlib import Path

import pytest

from mount.winapi.client import Window
from tests.windows.helpers import P, page_of

pytestmark = pytest.mark.mount

SEEK_DATA, SEEK_HOLE = 3, 4


def _window(wdir: Path) -> tuple[Path, bytes]:
    """A 12-page nonlinear window over a sparse 16-page object; its expected bytes."""
    obj = wdir / "obj"
    with open(obj, "wb") as f:
        f.truncate(16 * P)
        for pg in (1, 2, 5, 9, 14):  # the rest of the object is holes
            f.seek(pg * P)
            f.write(page_of(pg))
    shows = [14, 3, 9, 1, 0, 2, 7, 5, 5, 11, 12, 13]  # page i of the window shows this
    with Window.create(wdir / "win", obj, len(shows)) as w:
        for i, pg in enumerate(shows):
            w.remap(i, 1, pg)
    want = b"".join(page_of(pg) if pg in (1, 2, 5, 9, 14) else bytes(P) for pg in shows)
    return wdir / "win", want


def test_stat_and_seek_of_a_window_describe_its_data(wdir: Path) -> None:
    win, want = _window(wdir)
    st = os.stat(win)
    assert st.st_size == len(want)
    assert st.st_blocks == 6 * (P // 512)  # the pages that show allocated object pages
    fd = os.open(win, os.O_RDONLY)
    try:
        assert os.lseek(fd, 0, SEEK_DATA) == 0
        assert os.lseek(fd, 0, SEEK_HOLE) == P
        assert os.lseek(fd, P, SEEK_DATA) == 2 * P
        assert os.lseek(fd, 4 * P, SEEK_HOLE) == 4 * P
        assert os.lseek(fd, 7 * P, SEEK_HOLE) == 9 * P
        with pytest.raises(OSError) as ei:  # pages 9..11 show holes: no data to the end
            os.lseek(fd, 9 * P, SEEK_DATA)
        assert ei.value.errno == errno.ENXIO
        assert os.pread(fd, len(want), 0) == want
        # reading a hole through a window allocates it (a read fault through a shared
        # mapping does): every page is data now
        assert os.lseek(fd, 0, SEEK_HOLE) == 12 * P
    finally:
        os.close(fd)


@pytest.mark.parametrize("argv", [["cp"], ["cp", "--sparse=never"], ["cp", "--sparse=always"]],
                         ids=" ".join)
def test_cp_copies_a_windows_bytes(wdir: Path, tmp_path: Path, argv: list[str]) -> None:
    win, want = _window(wdir)
    dst = tmp_path / "copy"
    r = subprocess.run([*argv, str(win), str(dst)], capture_output=True, text=True, check=False)
    assert r.returncode == 0, r.stderr
    assert dst.read_bytes() == want


def test_tar_sparse_archives_a_windows_bytes(wdir: Path, tmp_path: Path) -> None:
    win, want = _window(wdir)
    archive = tmp_path / "w.tar"
    r = subprocess.run(["tar", "-S", "-cf", str(archive), "-C", str(win.parent), win.name],
                       capture_output=True, text=True, check=False)
    assert r.returncode == 0, r.stderr
    out = tmp_path / "out"
    out.mkdir()
    r = subprocess.run(["tar", "-xf", str(archive), "-C", str(out)], capture_output=True,
                       text=True, check=False)
    assert r.returncode == 0, r.stderr
    assert (out / "win").read_bytes() == want
