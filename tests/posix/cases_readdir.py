"""readdir: '.' and '..', d_type and d_ino, telldir/seekdir/rewinddir through libc,
and offsets that stay valid while entries are created and removed.

Directory order is unspecified by POSIX, so listings are compared as sorted sets;
what is compared exactly is which names a stream returns and how often."""

from __future__ import annotations

import os
import stat

from .framework import Ctx, Recorder, case
from .libc import Dir

A = "readdir"


def _touch(name: str) -> None:
    os.close(os.open(name, os.O_CREAT | os.O_WRONLY, 0o644))


def _names(d: Dir) -> list[str]:
    return [n for n, _ in d.read_all()]


@case(A)
def case_empty_dir_dots(ctx: Ctx) -> None:
    os.mkdir("d")
    with Dir("d") as d:
        ctx.rec.note("entries", sorted(d.read_all()))
        ctx.rec.note("again at end", d.read())
    ctx.rec.note("listdir", os.listdir("d"))


@case(A)
def case_dtypes(ctx: Ctx) -> None:
    _touch("reg")
    os.mkdir("dir")
    os.symlink("reg", "lnk")
    os.mkfifo("fifo")
    os.mknod("chr", stat.S_IFCHR | 0o600, os.makedev(1, 3))
    os.mknod("blk", stat.S_IFBLK | 0o600, os.makedev(7, 0))
    os.mknod("sock", stat.S_IFSOCK | 0o600)
    with Dir(".") as d:
        ctx.rec.note("entries", sorted(d.read_all()))


@case(A)
def case_dino_matches_stat(ctx: Ctx) -> None:
    for i in range(20):
        _touch(f"f{i}")
    os.mkdir("sub")
    with os.scandir(".") as it:
        ctx.rec.note("d_ino == st_ino", sorted(
            (e.name, e.inode() == os.lstat(e.name).st_ino) for e in it))
    with os.scandir("sub") as it:
        ctx.rec.note("empty scandir", list(it))
    st_dot = os.stat(".")
    st_parent = os.stat("..")
    ctx.rec.note("'..' ino is the parent", st_parent.st_ino != st_dot.st_ino)


@case(A)
def case_many_entries(ctx: Ctx) -> None:
    names = {f"entry-{i:05d}-" + "x" * (i % 50) for i in range(2000)}
    for n in names:
        _touch(n)
    with Dir(".") as d:
        got = _names(d)
    ctx.rec.note("count", len(got))
    ctx.rec.note("all present once", sorted(got) == sorted([*names, ".", ".."]))


@case(A)
def case_telldir_seekdir(ctx: Ctx) -> None:
    for i in range(50):
        _touch(f"f{i:02d}")
    r = ctx.rec
    with Dir(".") as d:
        first = [d.read()[0] for _ in range(20)]
        pos = d.tell()
        rest = _names(d)
        d.seek(pos)
        again = _names(d)
        r.note("seekdir(telldir) replays the rest", again == rest)
        r.note("first+rest complete", sorted(first + rest) == sorted(
            [".", "..", *[f"f{i:02d}" for i in range(50)]]))
        d.rewind()
        r.note("rewinddir replays all", sorted(_names(d)) == sorted(first + rest))


@case(A)
def case_telldir_every_position(ctx: Ctx) -> None:
    for i in range(30):
        _touch(f"f{i:02d}")
    ok = True
    with Dir(".") as d:
        positions = []
        names = []
        while True:
            positions.append(d.tell())
            ent = d.read()
            if ent is None:
                break
            names.append(ent[0])
        for k, pos in enumerate(positions):
            d.seek(pos)
            ent = d.read()
            expect = names[k] if k < len(names) else None
            if (ent[0] if ent else None) != expect:
                ok = False
    ctx.rec.note("every telldir position reads back its entry", ok)
    ctx.rec.note("count", len(names))


@case(A)
def case_rewind_sees_new_entries(ctx: Ctx) -> None:
    _touch("a")
    with Dir(".") as d:
        before = sorted(_names(d))
        _touch("b")
        os.unlink("a")
        d.rewind()
        after = sorted(_names(d))
    ctx.rec.note("before", before)
    ctx.rec.note("after rewind", after)


@case(A)
def case_stable_across_create_unlink(ctx: Ctx) -> None:
    """Entries that exist for the whole scan are returned exactly once, even while
    other entries are created and removed between readdir calls."""
    stable = [f"stable-{i:04d}-" + "s" * 150 for i in range(400)]
    doomed = [f"doomed-{i:04d}-" + "d" * 150 for i in range(400)]
    for n in stable + doomed:
        _touch(n)
    seen: list[str] = []
    with Dir(".") as d:
        k = 0
        while (ent := d.read()) is not None:
            seen.append(ent[0])
            k += 1
            if k % 10 == 0:
                for j in range(3):
                    idx = (k // 10) * 3 + j
                    if idx < len(doomed):
                        os.unlink(doomed[idx])
                    _touch(f"new-{k:04d}-{j}-" + "n" * 150)
    counts = {n: seen.count(n) for n in stable}
    ctx.rec.note("stable entries missing", sorted(n for n, c in counts.items() if c == 0))
    ctx.rec.note("stable entries repeated", sorted(n for n, c in counts.items() if c > 1))
    ctx.rec.note("any name returned twice", len(seen) != len(set(seen)))


@case(A)
def case_seekdir_after_unlink(ctx: Ctx) -> None:
    """A telldir cookie stays usable after the entry it pointed at is removed."""
    for i in range(40):
        _touch(f"f{i:02d}")
    with Dir(".") as d:
        for _ in range(15):
            d.read()
        pos = d.tell()
        nxt = d.read()[0]
        rest_before = _names(d)
        os.unlink(nxt)
        d.seek(pos)
        rest_after = _names(d)
    ctx.rec.note("rest after unlink of the entry at the cookie", rest_after == rest_before)
    ctx.rec.note("removed name not returned", nxt not in rest_after)


@case(A)
def case_concurrent_process_churn(ctx: Ctx) -> None:
    """Another process creates and unlinks while this one scans repeatedly."""
    stable = [f"keep-{i:03d}" for i in range(300)]
    for n in stable:
        _touch(n)

    def churn(rec: Recorder) -> None:
        for i in range(1500):
            nm = f"tmp-{i % 40:02d}"
            try:
                _touch(nm)
                os.unlink(nm)
            except OSError as e:
                rec.note("churn error", e.errno)

    def scan(rec: Recorder) -> None:
        bad = 0
        for _ in range(30):
            with Dir(".") as d:
                names = _names(d)
            missing = [n for n in stable if names.count(n) != 1]
            bad += len(missing)
        rec.note("stable entries not seen exactly once", bad)

    ctx.parallel([churn, scan])


@case(A)
def case_lseek_on_dir(ctx: Ctx) -> None:
    for i in range(5):
        _touch(f"f{i}")
    fd = os.open(".", os.O_RDONLY | os.O_DIRECTORY)
    r = ctx.rec
    r.call("listdir(fd)", lambda: sorted(os.listdir(fd)))
    r.call("lseek SEEK_SET 0", os.lseek, fd, 0, os.SEEK_SET)
    # Not compared: lseek(SEEK_END/SEEK_DATA/SEEK_HOLE) on a directory.  tmpfs says
    # EINVAL; FUSE directories use the kernel's generic_file_llseek, which accepts
    # them (FUSE by construction, the filesystem is never asked).
    r.call("lseek negative", os.lseek, fd, -1, os.SEEK_SET)
    r.call("read() on dir", os.read, fd, 10)
    r.call("listdir(fd) again", lambda: sorted(os.listdir(fd)))


@case(A)
def case_readdir_not_a_dir(ctx: Ctx) -> None:
    _touch("f")
    r = ctx.rec
    r.call("opendir file", Dir, "f")
    r.call("opendir missing", Dir, "missing")
    fd = os.open("f", os.O_RDONLY)
    r.call("listdir(file fd)", os.listdir, fd)


@case(A)
def case_readdir_no_read_permission(ctx: Ctx) -> None:
    os.mkdir("d", 0o711)
    _touch("d/f")

    def body(rec: Recorder) -> None:
        rec.call("opendir 0711 as other", Dir, "d")
        rec.call("stat inside", lambda: os.stat("d/f").st_size)

    ctx.as_user(body)


def _rename_while_listing(ctx: Ctx, n: int, back_in_same_dir: bool) -> None:
    os.mkdir("d")
    os.mkdir("away")
    for i in range(n):
        _touch(f"d/f{i}")
    seen: dict[str, int] = {}
    reads = 0
    ended = False
    with Dir("d") as d:
        while reads < 4 * n:
            ent = d.read()
            if ent is None:
                ended = True
                break
            reads += 1
            name = ent[0]
            seen[name] = seen.get(name, 0) + 1
            if name in (".", ".."):
                continue
            if back_in_same_dir:
                os.rename(f"d/{name}", f"d/{name}.tmp")
                os.rename(f"d/{name}.tmp", f"d/{name}")
            else:
                os.rename(f"d/{name}", f"away/{name}")
                os.rename(f"away/{name}", f"d/{name}")
    ctx.rec.note("listing ended", ended)
    ctx.rec.note("entries read", reads)
    twice = sorted(k for k, v in seen.items() if v > 1)
    ctx.rec.note("names seen twice", (len(twice), twice[:5]))
    ctx.rec.note("every original name seen", all(f"f{i}" in seen for i in range(n)))
    ctx.rec.note("final listing", len(os.listdir("d")))


@case(A)
def case_rename_away_and_back_while_listing(ctx: Ctx) -> None:
    """Issue 13 item 3: 5000 files, each renamed to another directory and back as
    it is read. libfs offset directories end the listing where the directory
    was when it began: every name once, and the loop ends."""
    _rename_while_listing(ctx, 5000, back_in_same_dir=False)


@case(A)
def case_rename_within_dir_while_listing(ctx: Ctx) -> None:
    """The same with a rename to a temporary name in the same directory and back."""
    _rename_while_listing(ctx, 2000, back_in_same_dir=True)


@case(A)
def case_late_entry_and_rewind(ctx: Ctx) -> None:
    """Entries created after opendir are not listed by that stream; after
    rewinddir they are (offset_dir_llseek refreshes the end at offset 0)."""
    os.mkdir("d")
    for i in range(5):
        _touch(f"d/a{i}")
    with Dir("d") as d:
        first = d.read()
        _touch("d/late")
        rest = [n for n, _ in d.read_all()]
        ctx.rec.note("late seen before rewind", "late" in rest or (first or ("",))[0] == "late")
        ctx.rec.note("count before rewind", len(rest) + 1)
        d.rewind()
        ctx.rec.note("after rewind", sorted(n for n, _ in d.read_all()))
