"""An unprivileged user on an ``allow_other`` shmfs: a file opened O_RDONLY cannot
be written by any route, one opened O_WRONLY cannot be read by any route --
exactly as on a kernel tmpfs (the oracle), now that regular-file READ and WRITE are
answered by the C hot path (native/hotpath.c) and window I/O by native/win*.c.

Every route is tried from a forked child that dropped to nobody (as
tests/reliability/test_security.py does); the errnos are compared with tmpfs's,
and the files' bytes are checked unchanged afterwards. Window routes exist only
on shmfs: there the explicit expectation (EACCES, nothing stored) is asserted.
"""

from __future__ import annotations

import errno
import mmap
import os
from collections.abc import Callable
from pathlib import Path

import pytest

from mount.winapi import client as win
from tests.live.helpers import as_user, fallocate
from tests.support.mounts import shmfs_mount, tmpfs_mount

pytestmark = pytest.mark.mount

NOBODY = 65534
RO_BYTES = b"A" * 300_000  # more than a 256 KiB chunk
WO_BYTES = b"B" * 10_000


def _setup(d: Path) -> tuple[Path, Path]:
    os.chmod(d, 0o1777)
    ro, wo = d / "readable", d / "writable"
    ro.write_bytes(RO_BYTES)
    os.chmod(ro, 0o644)  # nobody may open it O_RDONLY only
    wo.write_bytes(WO_BYTES)
    os.chmod(wo, 0o622)  # nobody may open it O_WRONLY only
    return ro, wo


def _try(fn: Callable[[], object]) -> str:
    try:
        fn()
        return "ok"
    except OSError as e:
        return errno.errorcode.get(e.errno, str(e.errno))
    except ValueError as e:  # mmap's own refusals
        return f"ValueError {e}"


def _read_only_routes(ro: Path) -> dict[str, str]:
    """Every way to change a file through a descriptor opened O_RDONLY."""
    fd = os.open(ro, os.O_RDONLY)
    src = os.open("/proc/self/cmdline", os.O_RDONLY)
    try:
        return {
            "write": _try(lambda: os.write(fd, b"x")),
            "pwrite": _try(lambda: os.pwrite(fd, b"x", 10)),
            "pwritev big": _try(lambda: os.pwritev(fd, [b"x" * 400_000], 100)),
            "pwritev2 append": _try(lambda: os.pwritev(fd, [b"x"], 0, os.RWF_APPEND)),
            "mmap shared write": _try(lambda: mmap.mmap(fd, 4096, mmap.MAP_SHARED,
                                                        mmap.PROT_READ | mmap.PROT_WRITE)),
            "fallocate": _try(lambda: fallocate(fd, 0, 0, 1 << 20)),
            "punch hole": _try(lambda: fallocate(fd, 3, 0, 4096)),
            "ftruncate": _try(lambda: os.ftruncate(fd, 0)),
            "copy_file_range into": _try(lambda: os.copy_file_range(src, fd, 10, 0, 0)),
            "sendfile into": _try(lambda: os.sendfile(fd, src, 0, 5)),
        }
    finally:
        os.close(src)
        os.close(fd)


def _write_only_routes(wo: Path) -> dict[str, str]:
    """Every way to read a file through a descriptor opened O_WRONLY."""
    fd = os.open(wo, os.O_WRONLY)
    null = os.open("/dev/null", os.O_WRONLY)
    try:
        return {
            "read": _try(lambda: os.read(fd, 10)),
            "pread": _try(lambda: os.pread(fd, 10, 0)),
            "preadv big": _try(lambda: os.preadv(fd, [bytearray(400_000)], 0)),
            "mmap shared read": _try(lambda: mmap.mmap(fd, 4096, mmap.MAP_SHARED,
                                                       mmap.PROT_READ)),
            "copy_file_range from": _try(lambda: os.copy_file_range(fd, null, 10, 0, 0)),
            "sendfile from": _try(lambda: os.sendfile(null, fd, 0, 5)),
            "write still works": _try(lambda: os.pwrite(fd, b"C", 0)),
        }
    finally:
        os.close(null)
        os.close(fd)


def _observe(d: Path) -> tuple[object, object, bytes, bytes]:
    ro, wo = _setup(d)
    r = as_user(NOBODY, NOBODY, lambda: _read_only_routes(ro))
    w = as_user(NOBODY, NOBODY, lambda: _write_only_routes(wo))
    return r, w, ro.read_bytes(), wo.read_bytes()


@pytest.mark.parametrize("options", ["", "readers=1", "writeback_cache"])
def test_open_mode_is_enforced_on_every_route_as_on_tmpfs(options: str) -> None:
    with tmpfs_mount() as t:
        expected = _observe(t)
    with shmfs_mount(",".join(x for x in ("allow_other", options) if x)) as s:
        got = _observe(s)
    assert got == expected
    r, w, ro_bytes, wo_bytes = expected
    assert r == ("ok", {k: ("EINVAL" if k == "ftruncate" else
                            "EACCES" if k.startswith("mmap") else "EBADF") for k in r[1]})
    assert w[1]["write still works"] == "ok" and w[1]["mmap shared read"] == "EACCES"
    assert {w[1][k] for k in ("read", "pread", "preadv big", "sendfile from")} == {"EBADF"}
    assert ro_bytes == RO_BYTES and wo_bytes == b"C" + WO_BYTES[1:]


def _window_routes(ro: Path, wo: Path, d: Path) -> dict[str, object]:
    """The window ioctls as nobody, on a file it may only read and one it may only
    write: no window may write the first or read the second."""
    out: dict[str, object] = {}
    fr = os.open(ro, os.O_RDONLY)
    fw = os.open(wo, os.O_WRONLY)
    try:
        out["grant rw on O_RDONLY"] = _try(lambda: win.grant(fr, win.PROT_READ | win.PROT_WRITE))
        out["grant r on O_WRONLY"] = _try(lambda: win.grant(fw, win.PROT_READ))
        out["window rw by path"] = _try(lambda: win.Window.create(d / "w1", ro, 2))
        out["window rw by read token"] = _try(lambda: win.Window.create(
            d / "w2", win.grant(fr, win.PROT_READ), 2, prot=win.PROT_READ | win.PROT_WRITE))
        w = win.Window.create(d / "w3", win.grant(fr, win.PROT_READ), 2, prot=win.PROT_READ)
        out["read-only window: pread"] = os.pread(w.fd, 4, 0)
        out["read-only window: pwrite"] = _try(lambda: os.pwrite(w.fd, b"EVIL", 0))
        out["read-only window: protect rw"] = _try(
            lambda: w.protect(0, 1, win.PROT_READ | win.PROT_WRITE))

        def store() -> None:
            with w.mmap() as m:
                m[0:4] = b"EVIL"
                m.flush()

        out["read-only window: mmap store"] = _try(store)
        out["read-only window: fsync"] = _try(lambda: os.fsync(w.fd))
        w.close()
        out["object after"] = os.pread(fr, 8, 0)
    finally:
        os.close(fr)
        os.close(fw)
    return out


def test_windows_grant_no_more_than_the_open_mode() -> None:
    with shmfs_mount("allow_other") as s:
        ro, wo = _setup(s)
        got = as_user(NOBODY, NOBODY, lambda: _window_routes(ro, wo, s))
        assert ro.read_bytes() == RO_BYTES and wo.read_bytes() == WO_BYTES
    assert got[0] == "ok", got
    routes = got[1]
    assert routes.pop("read-only window: pread") == b"AAAA"
    assert routes.pop("object after") == b"A" * 8
    fsync = routes.pop("read-only window: fsync")
    assert fsync in ("ok", "EACCES")  # the refused store was already reported
    assert routes == {k: "EACCES" for k in routes}, routes
