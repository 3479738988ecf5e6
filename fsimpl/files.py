"""Open files and directories, and the data path onto the inode's vmcore Mapping.

Every byte read or written goes through ``Mapping.read``/``Mapping.write``,
which reach each page through ``vmcore.fault.fault()``; fsimpl only adds the
file-level rules: EFBIG at MAX_FILE_SIZE, O_APPEND, timestamps, fallocate mode
checks (vfs_fallocate + shmem_fallocate order), SEEK_DATA/SEEK_HOLE ENXIO.

atime: by the mount's atime options (relatime unless noatime, nodiratime or
strictatime is set), with the kernel's rules in fsimpl/atime.py; with FUSE the
kernel does not track atime for us, so fsimpl applies it.
"""

from __future__ import annotations

import errno
import os
import stat

from vmcore.errors import VmError

from . import fsflags, privs
from .errors import FsError
from .inode import Inode
from .namespace import NamespaceOps
from .state import counted
from .types import (
    FALLOC_FL_KEEP_SIZE,
    FALLOC_FL_PUNCH_HOLE,
    MAX_FILE_SIZE,
    SEEK_CUR,
    SEEK_DATA,
    SEEK_END,
    SEEK_HOLE,
    SEEK_SET,
    Attr,
    Ctx,
    InvalInode,
)

FUSE_WRITE_KILL_SUIDGID = 1 << 2  # write_flags bit of FUSE_WRITE (linux/fuse.h)
FUSE_WRITE_CACHE = 1 << 0  # page writeback (a shared mmap's stores): the offset is the page's


class FileOps(NamespaceOps):
    """open/create/read/write/fallocate/lseek and the directory handles."""

    def _reg(self, ino: int) -> Inode:
        inode = self._get(ino)
        if inode.is_dir:
            raise FsError(errno.EISDIR)
        if inode.mapping is None:
            raise FsError(errno.EINVAL, "not a regular file")
        return inode

    def _truncate_on_open(self, inode: Inode) -> None:
        """O_TRUNC: do_truncate(ATTR_MTIME|ATTR_CTIME|ATTR_OPEN) -- times change
        even when the file is already empty (checked on 6.18 tmpfs)."""
        assert inode.mapping is not None
        inode.mapping.truncate(0)
        inode.mtime_ns = inode.ctime_ns = self._now()

    # ------------------------------------------------------------------- files
    @counted
    def open(self, ino: int, flags: int) -> int:
        inode = self._get(ino)
        if inode.is_dir and flags & os.O_ACCMODE != os.O_RDONLY:
            raise FsError(errno.EISDIR)
        fsflags.check_open(inode, flags)
        if flags & os.O_TRUNC and self._window_of(ino) is not None:
            raise FsError(errno.EINVAL, "a window's size is fixed by ATTACH")
        if flags & os.O_TRUNC and inode.is_reg:
            # Linux truncates even for O_RDONLY|O_TRUNC (the kernel checked write
            # permission); 6.18 tmpfs: such an open leaves st_size 0
            self._truncate_on_open(inode)
        return self._new_handle(inode, flags, inode.is_dir)

    @counted
    def create(self, parent: int, name: bytes, mode: int, flags: int, ctx: Ctx) -> tuple[Attr, int]:
        """CREATE: a new regular file, opened. ``mode`` is final (see namespace.py).
        An existing name gives EEXIST with O_EXCL, else it is opened (the kernel
        normally sends OPEN for those, but a racing create must not fail)."""
        p = self._dir(parent)
        assert p.dir is not None
        self._check_name(name)
        existing = p.dir.get(name)
        if existing is not None:
            if flags & os.O_EXCL:
                raise FsError(errno.EEXIST)
            inode = self._inodes[existing]
            if inode.is_dir:
                raise FsError(errno.EISDIR)
            fh = self.open(inode.ino, flags)
            return self._entry(inode), fh
        # _mknod without its repeated lookups (_prepare_new's checks, in its order:
        # the directory and the name were checked above)
        if p.nlink == 0:
            raise FsError(errno.ENOENT, "directory was removed")
        fsflags.check_dir_create(p)
        inode = self._new_child(p, stat.S_IFREG | (mode & 0o7777), ctx)
        self._link_child(p, name, inode)
        fh = self._new_handle(inode, flags, False)
        return self._entry(inode), fh

    @counted
    def tmpfile(self, parent: int, mode: int, flags: int, ctx: Ctx) -> tuple[Attr, int]:
        """O_TMPFILE (shmem_tmpfile): an opened regular file with no name (nlink 0).
        Without O_EXCL it may be given a name once by link(), and that first
        link reserves no extra ispace (shmem_link). UML creates its memory file so."""
        p = self._dir(parent)
        fsflags.check_dir_create(p)
        inode = self._new_child(p, stat.S_IFREG | (mode & 0o7777), ctx)
        inode.linkable = not flags & os.O_EXCL
        fh = self._new_handle(inode, flags, False)
        return self._entry(inode), fh

    @counted
    def read(self, ino: int, fh: int, off: int, size: int) -> list[memoryview]:
        """Views of the arena for [off, off+size) clipped to i_size; holes read
        the zero frame and allocate nothing."""
        inode = self._reg(ino)
        self._handle(fh, ino)
        if off < 0 or size < 0:
            raise FsError(errno.EINVAL)
        assert inode.mapping is not None
        w = self._windows
        if w is not None and ino in w.wins:  # through the window's page table
            views = w.read(ino, off, size)
        else:
            views = inode.mapping.read(off, size) if size else []
            if w is not None:  # the kernel now caches these pages of a window's object
                w.object_cached(ino, off, size)
        self._touch_atime(inode)
        return views

    @counted
    def write(
        self, ino: int, fh: int, off: int, data: memoryview, flags: int = 0, ctx: Ctx | None = None
    ) -> int:
        """Write ``data`` at ``off`` (at EOF for an O_APPEND handle or ``flags``).
        ``flags`` may also carry FUSE_WRITE_KILL_SUIDGID (sent with
        HANDLE_KILLPRIV_V2 when the writer lacks CAP_FSETID): S_ISUID goes, and
        S_ISGID when group-exec is set or the writer is not in the file's group,
        supplementary groups included (fsimpl/privs.py; 6.18 tmpfs clears 02767
        for a write by a non-member).
        EFBIG at or past MAX_FILE_SIZE (clipped when it straddles it); at the
        size= limit the write is short, or ENOSPC when nothing fits; bytes
        already in the file are never changed by a failed write. A write-back
        (FUSE_WRITE_CACHE) that does not fit whole stores what fits and answers
        ENOSPC, never a short count, which the kernel would take as success."""
        inode = self._reg(ino)
        h = self._handle(fh, ino)
        assert inode.mapping is not None
        if (h.flags | flags) & os.O_APPEND and not flags & FUSE_WRITE_CACHE:
            off = inode.mapping.size
        if off < 0:
            raise FsError(errno.EINVAL)
        data = memoryview(data).cast("B")
        if not len(data):
            return 0
        if flags & FUSE_WRITE_KILL_SUIDGID and inode.mode & (stat.S_ISUID | stat.S_ISGID):
            inode.mode &= ~privs.modify_kill(inode, ctx)
        if off >= MAX_FILE_SIZE:
            raise FsError(errno.EFBIG)
        if off + len(data) > MAX_FILE_SIZE:
            data = data[: MAX_FILE_SIZE - off]
        w = self._windows
        if w is not None and ino in w.wins:  # a store through the window's page table
            n = w.write(ino, off, data, flags)
            if n:
                inode.mtime_ns = inode.ctime_ns = self._now()
            return n
        try:
            n = inode.mapping.write(off, data)
        except VmError as e:
            raise FsError(e.errno, str(e)) from e
        if n and w is not None:  # windows showing these pages must drop their copies
            w.object_changed(ino, off, n)
        if n:
            inode.mtime_ns = inode.ctime_ns = self._now()
        if n < len(data) and flags & FUSE_WRITE_CACHE:
            # A write-back is never answered short: the kernel takes a short count
            # as success (fuse_writepage_end looks only at the error), so the bytes
            # that did not fit would be lost with no error for fsync/msync/close.
            raise FsError(errno.ENOSPC)
        return n

    @counted
    def copy_file_range(
        self, ino_in: int, fh_in: int, off_in: int, ino_out: int, fh_out: int, off_out: int,
        length: int, flags: int = 0,
    ) -> int:
        """copy_file_range(2) inside this filesystem: whole pages are shared
        copy-on-write with the source (vmcore/cow.py), partial pages copied,
        source holes stay holes.  Returns bytes copied: clipped to the source's
        size, short at the size= limit (ENOSPC when nothing fits).

        Checks as generic_copy_file_checks (the kernel makes them first; they
        are repeated for a caller that is not the kernel): EINVAL for flags,
        negative offsets or overlapping ranges of one file, EBADF for a handle
        not open for reading/writing or an O_APPEND destination, EISDIR, EFBIG
        at MAX_FILE_SIZE.  A window file on either side gives EOPNOTSUPP: the
        kernel then falls back to copying through READ/WRITE (its data path
        goes through the window's page table)."""
        if flags:
            raise FsError(errno.EINVAL)
        src, dst = self._get(ino_in), self._get(ino_out)
        hin, hout = self._handle(fh_in, ino_in), self._handle(fh_out, ino_out)
        if hin.flags & os.O_ACCMODE == os.O_WRONLY:
            raise FsError(errno.EBADF, "source not open for reading")
        if hout.flags & os.O_ACCMODE == os.O_RDONLY or hout.flags & os.O_APPEND:
            raise FsError(errno.EBADF, "destination not open for writing (or O_APPEND)")
        if src.is_dir or dst.is_dir:
            raise FsError(errno.EISDIR)
        if src.mapping is None or dst.mapping is None:
            raise FsError(errno.EINVAL, "not a regular file")
        if off_in < 0 or off_out < 0 or length < 0:
            raise FsError(errno.EINVAL)
        w = self._windows
        if w is not None and (ino_in in w.wins or ino_out in w.wins):
            raise FsError(errno.EOPNOTSUPP, "window files copy through READ/WRITE")
        length = max(0, min(length, src.mapping.size - off_in))
        if not length:
            return 0
        if off_out >= MAX_FILE_SIZE:
            raise FsError(errno.EFBIG)
        length = min(length, MAX_FILE_SIZE - off_out)
        try:
            n = dst.mapping.copy_from(src.mapping, off_in, off_out, length)
        except VmError as e:
            raise FsError(e.errno, str(e)) from e
        if n:
            if w is not None:  # windows showing the destination's pages drop their copies
                w.object_changed(ino_out, off_out, n)
            dst.mtime_ns = dst.ctime_ns = self._now()
            before = src.atime_ns
            self._touch_atime(src)
            if src.atime_ns != before:
                # the kernel refreshes only the destination's attributes after
                # COPY_FILE_RANGE (fs/fuse/file.c), so a stat of the source would
                # show the old atime from its cache: drop the source's attributes
                self._queue(InvalInode(ino_in, -1, 0))
        return n

    @counted
    def flush(self, ino: int, fh: int) -> None:
        self._handle(fh, ino)

    @counted
    def release(self, ino: int, fh: int) -> None:
        """Last close of a handle; an unlinked, forgotten inode is evicted here."""
        self._drop_handle(ino, fh)

    @counted
    def fsync(self, ino: int, fh: int, datasync: bool) -> None:
        """noop_fsync, like tmpfs."""
        self._get(ino)

    @counted
    def fallocate(self, ino: int, fh: int, mode: int, off: int, length: int) -> None:
        """Checks in vfs_fallocate order: EINVAL (off < 0, len <= 0), EOPNOTSUPP
        (modes other than 0, KEEP_SIZE, PUNCH_HOLE|KEEP_SIZE), EISDIR, EFBIG
        (off+len past MAX_FILE_SIZE). Preallocation is all-or-nothing ENOSPC.
        Every successful mode sets mtime and ctime (file_modified; 6.18 tmpfs)."""
        if off < 0 or length <= 0:
            raise FsError(errno.EINVAL)
        if mode not in (0, FALLOC_FL_KEEP_SIZE, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE):
            raise FsError(errno.EOPNOTSUPP)
        inode = self._get(ino)
        if inode.is_dir:
            raise FsError(errno.EISDIR)
        if inode.mapping is None:
            raise FsError(errno.ENODEV)
        self._handle(fh, ino)
        if inode.fsflags & fsflags.FS_IMMUTABLE_FL or (
                inode.fsflags & fsflags.FS_APPEND_FL and mode & ~FALLOC_FL_KEEP_SIZE):
            raise FsError(errno.EPERM, "immutable or append-only")  # vfs_fallocate
        if off + length > MAX_FILE_SIZE:
            raise FsError(errno.EFBIG)
        w = self._windows
        if w is not None and ino in w.wins:
            raise FsError(errno.EINVAL, "a window's size is fixed by ATTACH")
        try:
            if mode & FALLOC_FL_PUNCH_HOLE:
                inode.mapping.punch_hole(off, length)
                if w is not None:  # zeroed partial edges: windows showing them
                    w.object_punched(ino, off, length)
            else:
                inode.mapping.fallocate(off, length, keep_size=bool(mode & FALLOC_FL_KEEP_SIZE))
        except VmError as e:
            raise FsError(e.errno, str(e)) from e
        inode.mtime_ns = inode.ctime_ns = self._now()

    @counted
    def lseek(self, ino: int, fh: int, off: int, whence: int) -> int:
        """SEEK_DATA/SEEK_HOLE as shmem_file_llseek: ENXIO when off < 0 or
        off >= i_size, or when no data follows; fallocated-but-unwritten pages
        are holes. SEEK_SET/SEEK_END are answered for completeness (the kernel
        handles them); SEEK_CUR cannot be, fsimpl keeps no file position."""
        inode = self._reg(ino)
        self._handle(fh, ino)
        assert inode.mapping is not None
        size = inode.mapping.size
        if whence == SEEK_SET:
            if off < 0:
                raise FsError(errno.EINVAL)
            return off
        if whence == SEEK_END:
            if size + off < 0:
                raise FsError(errno.EINVAL)
            return size + off
        if whence == SEEK_CUR:
            raise FsError(errno.EINVAL, "SEEK_CUR is the kernel's")
        if whence not in (SEEK_DATA, SEEK_HOLE):
            raise FsError(errno.EINVAL)
        w = self._window_of(ino)
        if w is not None:  # the object pages the window shows (fsimpl/winextent.py)
            return int(w.window_seek(ino, off, whence))
        if off < 0 or off >= size:
            raise FsError(errno.ENXIO)
        if whence == SEEK_DATA:
            pos = inode.mapping.seek_data(off)
            if pos < 0 or pos >= size:
                raise FsError(errno.ENXIO)
            return pos
        pos = inode.mapping.seek_hole(off)
        return size if pos < 0 or pos > size else pos

    # ------------------------------------------------------------- directories
    @counted
    def opendir(self, ino: int, flags: int) -> int:
        """A directory handle; its listing ends where the directory is now."""
        inode = self._dir(ino)
        fh = self._new_handle(inode, flags, True)
        assert inode.dir is not None
        self._handles[fh].dir_end = inode.dir.next_cookie
        return fh

    @counted
    def releasedir(self, ino: int, fh: int) -> None:
        self._drop_handle(ino, fh)

    @counted
    def fsyncdir(self, ino: int, fh: int, datasync: bool) -> None:
        self._dir(ino)
