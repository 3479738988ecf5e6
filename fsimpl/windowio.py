"""READ and WRITE of window files (mixin of WindowTable).

Each page resolves through the window's page table (``Mm.views``: a load or
store fault through fault()); write-backs of pages whose view changed since
they were stored go where the store was made (fsimpl/windows.py, ``pending``).
"""


from __future__ import annotations

import errno

from vmcore.errors import Sigbus, Sigsegv, VmError
from vmcore.vma import (
    PROT_WRITE,
)

from .errors import FsError
from .types import PAGE_SIZE
from .windowstate import (
    DISCARD,
    FUSE_WRITE_CACHE,
    PAGE_SHIFT,
    TableState,
    WinState,
    _runs,
    _store_errno,
    _vm,
)


class WindowIO(TableState):
    """The data path of WindowTable."""

    # -------------------------------------------------------------- data path
    def read(self, ino: int, off: int, size: int) -> list[memoryview]:
        """READ of a window: views of the object pages the window shows (faults as loads).
        A page that cannot be read fails the whole READ (never a short one): EIO past the
        object's end, EACCES without read permission."""
        ws = self._win(ino)
        size = max(0, min(size, ws.size - off))
        if size <= 0:
            return []
        lo, hi = off >> PAGE_SHIFT, ((off + size - 1) >> PAGE_SHIFT) + 1
        # The only event a READ queues: the object's attributes when a read fault
        # allocated a hole (st_blocks, as tmpfs shows it at once).  An attribute-only
        # INVAL_INODE locks no page, so the session writes it from the reader, before
        # the reply, which never waits behind a queued notification (docs/windows.md
        # "Coherence": a page INVAL may wait for pages this READ holds).
        blocks = ws.obj.blocks
        try:
            views = ws.window.read_views(off, size)
        except Sigbus as e:
            self.stats["read_sigbus"] += 1
            raise FsError(errno.EIO, str(e)) from e
        except Sigsegv as e:
            self.stats["read_sigsegv"] += 1
            raise FsError(errno.EACCES, str(e)) from e
        except VmError as e:
            raise _vm(e) from e
        for i in range(lo, hi):
            ws.pending.pop(i, None)
            ws.pushed.discard(i)
        ws.cached.update(range(lo, hi))
        if ws.obj.blocks != blocks:
            self._inval_object(ws.obj.ino, (), attrs=True)
        self.stats["reads"] += 1
        self.stats["read_bytes"] += size
        return views

    def write(self, ino: int, off: int, data: memoryview, write_flags: int = 0) -> int:
        """WRITE of a window (write(2), or a write-back of mmap stores with FUSE_WRITE_CACHE).
        Returns the bytes written; a short count stops at the first page that refused."""
        ws = self._win(ino)
        n = max(0, min(len(data), ws.size - off))
        if n <= 0:
            return 0
        data = data[:n]
        cache = bool(write_flags & FUSE_WRITE_CACHE)
        lo, hi = off >> PAGE_SHIFT, ((off + n - 1) >> PAGE_SHIFT) + 1
        if ws.pushed:
            for i in range(lo, hi):
                self._settle(ws, i)  # type: ignore[attr-defined]
        if cache and any(i in ws.pending for i in range(lo, hi)):
            return self._write_back_pending(ws, off, data)
        done = 0
        err: VmError | None = None
        blocks = ws.obj.blocks  # a store fault may allocate a hole: st_blocks changes
        try:
            views = ws.window.write_views(off, n)
        except VmError:
            views = []
            for i in range(lo, hi):  # page by page up to the one that refuses
                a = max(off, i << PAGE_SHIFT)
                b = min(off + n, (i + 1) << PAGE_SHIFT)
                try:
                    views.extend(ws.window.write_views(a, b - a))
                except VmError as e:
                    err = e
                    break
        for v in views:
            k = len(v)
            v[:] = data[done : done + k]
            done += k
        if done:
            self._stored(ws, off, done, ws.obj.blocks != blocks)
        elif ws.obj.blocks != blocks:  # allocated, then refused: the count still moved
            self._inval_object(ws.obj.ino, (), attrs=True)
        if not cache:
            for i in range(lo, hi):
                ws.pending.pop(i, None)
                ws.pushed.discard(i)
        first_refused = hi if err is None else (off + done) >> PAGE_SHIFT
        ws.cached.update(range(lo, first_refused))
        if err is not None:
            # The kernel already copied the refused bytes into its folios (write(2)) or
            # holds them in its cache (write-back): drop those pages, after our reply.
            self.stats["write_refused"] += 1
            self._refused(ws, range(first_refused, hi))
            if not done:
                raise FsError(_store_errno(err), str(err))
        self.stats["writes"] += 1
        self.stats["write_bytes"] += done
        return done

    def _stored(self, ws: WinState, off: int, n: int, allocated: bool = False) -> None:
        """A window store changed object pages: invalidate the object's and other windows'
        cached copies of them; the object's attributes too if the store's fault
        ``allocated`` a hole (an INVAL of its pages drops them as well, so the
        attribute-only one is sent only when no page of the object is invalidated)."""
        lo, hi = off >> PAGE_SHIFT, ((off + n - 1) >> PAGE_SHIFT) + 1
        pg = self._state(ws, lo, hi)[0]
        self._inval_object(ws.obj.ino, pg.tolist(), attrs=allocated)
        written = range(lo, hi)
        wins = [self.wins[i] for i in self.objs[ws.obj.ino].wins]
        shown = set(pg.tolist())
        if sum(len(w.cached) for w in wins) <= 8 * len(shown) + 64:
            # few cached pages: ask each what it shows (aliases in this window included)
            for w in wins:
                hits = [i for i in w.cached if not (w is ws and i in written)
                        and self._page_state(w, i)[0] in shown]
                self._drop_cached(w, hits, None)
            return
        for first, cnt in _runs(pg):
            self.object_changed(ws.obj.ino, first << PAGE_SHIFT, cnt << PAGE_SHIFT, ws, written)

    def _write_back_pending(self, ws: WinState, off: int, data: memoryview) -> int:
        """A write-back of pages whose view changed since they were stored: each page
        goes to the object page it showed then, or nowhere if that page was dropped."""
        mapping = ws.obj.mapping
        pos = 0
        while pos < len(data):
            a = off + pos
            i = a >> PAGE_SHIFT
            k = min(len(data) - pos, ((i + 1) << PAGE_SHIFT) - a)
            if i not in ws.pending:
                n = self.write(ws.ino, a, data[pos : pos + k], FUSE_WRITE_CACHE)
                if n < k:
                    return pos + n
            else:
                target = ws.pending[i]
                if target is DISCARD:
                    self.stats["writeback_discarded"] += 1
                elif not target[1] & PROT_WRITE:
                    self.stats["write_refused"] += 1
                    self._refused(ws, range(i, i + 1))
                    if not pos:
                        raise FsError(errno.EACCES, "page was read-only when stored")
                    return pos
                else:
                    dst = (target[0] << PAGE_SHIFT) + (a & (PAGE_SIZE - 1))
                    m = max(0, min(k, mapping.size - dst))  # never extends the object
                    if m:
                        blocks = ws.obj.blocks
                        try:
                            mapping.write(dst, data[pos : pos + m])
                        except VmError as e:
                            raise _vm(e) from e
                        self._inval_object(ws.obj.ino, [target[0]],
                                           attrs=ws.obj.blocks != blocks)
                        self.object_changed(ws.obj.ino, dst, m, ws, range(i, i + 1))
                    self.stats["writeback_redirected"] += 1
            pos += k
        return pos

    def _refused(self, ws: WinState, pages: range) -> None:
        """Invalidate window pages whose WRITE was refused (the session sends a WRITE's
        invalidations of its own inode after the reply, when the kernel has let go of
        the pages); until then a mapping may still show the refused bytes."""
        ws.cached.difference_update(pages)
        self._inval(ws.ino, pages)

