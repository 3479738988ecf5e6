"""Window op kinds for the stress workers: remaps, loads, stores, MADV_REMOVE.

Each owned file gets a window file (``p<proc>/w<i>``, WIN_PAGES pages) the
first time a window op picks it, through the ABI client (mount/winapi/client.py).
The worker tracks which object page every window page shows, so the file's
FileModel is also the oracle for what a window page must read:

* a page within the object's last page or before: the object's bytes there,
  zeros past i_size;
* a page past the object's end: EIO (docs/windows.md);
* a store writes the object's bytes in that page (only below i_size: a store
  through a window never extends the object);
* MADV_REMOVE punches the object page the window page shows.

Coherence is what a program is promised, no more: a window read is preceded
by an INFO ioctl, whose reply the session writes only after every queued
invalidation (a write(2) to the object invalidates windows a moment after it
returns), and a window store is followed by fsync of the window before the
object is read again. On a filesystem without windows (``--tmpfs``) ATTACH
fails and the window ops become no-ops that still draw the same numbers.
"""

from __future__ import annotations

import errno as E
import os
from typing import Any

from stresslib.oracle import PAGE, Mismatch, first_difference
from stresslib.worker import OwnedFile, Worker

WIN_PAGES = 16


class _Win:
    """One window over one owned file (by inode): the client and its page map."""

    def __init__(self, ino: int, path: str, client: Any) -> None:
        self.ino = ino
        self.path = path
        self.client = client
        self.pgoffs = list(range(WIN_PAGES))


def _window(w: Worker, f: OwnedFile) -> _Win | None:
    """The window over f's current inode, made (or remade) on demand; None without windows."""
    state: dict[Any, Any] | None = getattr(w, "_windows", None)
    if state is None:
        state = w._windows = {}  # type: ignore[attr-defined]
    if state.get("unsupported"):
        return None
    i = w.files.index(f)
    ino = os.fstat(f.fd).st_ino
    win = state.get(i)
    if win is not None and win.ino == ino:
        return win
    if win is not None:  # the file was replaced (rename/unlink ops): a new window
        win.client.close()
        os.unlink(win.path)
    from mount.winapi.client import Window, grant

    path = str(w.dir / f"w{i}")
    try:  # the token comes from the descriptor the worker holds: no path race
        client = Window.create(path, grant(f.fd), npages=WIN_PAGES)
    except OSError as e:
        if e.errno not in (E.ENOTTY, E.EINVAL, E.EOPNOTSUPP):
            raise
        state["unsupported"] = True
        if os.path.exists(path):
            os.unlink(path)
        return None
    state[i] = win = _Win(ino, path, client)
    return win


def _pick(w: Worker) -> tuple[OwnedFile, int]:
    f = w.pick_file()
    return f, w.rng.randrange(WIN_PAGES)


def op_win_remap(w: Worker) -> None:
    f, i = _pick(w)
    pgoff = w.rng.randrange(w.params.max_size // PAGE + 2)  # sometimes past the end
    w.note(f"window remap {f.path} page {i} -> object page {pgoff}")
    win = _window(w, f)
    if win is None:
        return
    win.client.remap(i, 1, pgoff=pgoff)
    win.pgoffs[i] = pgoff


def op_win_load(w: Worker) -> None:
    f, i = _pick(w)
    w.note(f"window load {f.path} page {i}")
    win = _window(w, f)
    if win is None:
        return
    win.client.info()  # ordered behind every queued invalidation
    pgoff = win.pgoffs[i]
    lo = pgoff * PAGE
    size = f.model.size
    try:
        got = win.client.pread(i * PAGE, PAGE)
    except OSError as e:
        if e.errno == E.EIO and lo >= size and (size == 0 or lo >= -(-size // PAGE) * PAGE):
            return  # past the object's end, as documented
        raise
    if lo >= -(-size // PAGE) * PAGE:
        raise Mismatch("window-load", f.path, f"page {i} shows pgoff {pgoff} past EOF "
                       f"(size {size}) but read {len(got)} bytes")
    want = bytes(f.model.data[lo:lo + PAGE]).ljust(PAGE, b"\0")
    if got != want:
        raise Mismatch("window-load", f.path,
                       f"window page {i} (object page {pgoff}): {first_difference(got, want)}")
    w.verified(len(got))


def op_win_store(w: Worker) -> None:
    f, i = _pick(w)
    r = w.rng
    a, b = r.randrange(PAGE), r.randrange(PAGE)
    data = r.randbytes(max(a, b) - min(a, b) + 1)
    w.note(f"window store {f.path} page {i} +{min(a, b)} len={len(data)}, fsync")
    win = _window(w, f)
    if win is None:
        return
    lo = win.pgoffs[i] * PAGE + min(a, b)
    n = max(0, min(len(data), f.model.size - lo))  # only below i_size
    if n == 0:
        return
    done = win.client.pwrite(i * PAGE + min(a, b), data[:n])
    if done != n:
        raise Mismatch("window-store", f.path, f"pwrite of {n} returned {done}")
    win.client.sync()
    f.model.write(lo, data[:n])
    w.bytes_written += n


def op_win_remove(w: Worker) -> None:
    f, i = _pick(w)
    w.note(f"window MADV_REMOVE {f.path} page {i}")
    win = _window(w, f)
    if win is None:
        return
    from mount.winapi.client import MADV_REMOVE

    win.client.madvise(i, 1, MADV_REMOVE)
    f.model.punch(win.pgoffs[i] * PAGE, PAGE)


WINDOW_OPS: list[tuple[str, int, Any]] = [
    ("win_remap", 3, op_win_remap),
    ("win_load", 4, op_win_load),
    ("win_store", 3, op_win_store),
    ("win_remove", 2, op_win_remove),
]
