"""Several processes at once in one directory: creating, renaming and deleting,
O_EXCL races, appenders, and readers during truncate.  Only invariants are
recorded (final names, counts, unexpected errors), never interleavings."""

from __future__ import annotations

import errno
import os

from .framework import Ctx, Recorder, case

A = "concurrency"
NPROC = 4


def _touch(name: str, data: bytes = b"") -> None:
    fd = os.open(name, os.O_CREAT | os.O_WRONLY, 0o644)
    os.write(fd, data)
    os.close(fd)


@case(A)
def case_create_rename_delete(ctx: Ctx) -> None:
    def worker(k: int):
        def run(rec: Recorder) -> None:
            errs = 0
            for i in range(150):
                try:
                    _touch(f"w{k}-{i}", b"%d" % i)
                    if i % 2 == 0:
                        os.rename(f"w{k}-{i}", f"r{k}-{i}")
                    if i % 3 == 0:
                        os.unlink(f"r{k}-{i}" if i % 2 == 0 else f"w{k}-{i}")
                except OSError:
                    errs += 1
            rec.note("errors", errs)
        return run

    ctx.parallel([worker(k) for k in range(NPROC)])
    expect = set()
    for k in range(NPROC):
        for i in range(150):
            if i % 3 == 0:
                continue
            expect.add(f"r{k}-{i}" if i % 2 == 0 else f"w{k}-{i}")
    names = set(os.listdir("."))
    ctx.rec.note("final names exact", names == expect)
    ctx.rec.note("missing", sorted(expect - names)[:10])
    ctx.rec.note("unexpected", sorted(names - expect)[:10])
    bad = [n for n in names if open(n, "rb").read() != n.split("-")[1].encode()]
    ctx.rec.note("wrong contents", bad[:10])


@case(A)
def case_excl_race(ctx: Ctx) -> None:
    """Each name is won by exactly one of the processes racing with O_EXCL."""
    def worker(rec: Recorder) -> None:
        won = []
        for i in range(200):
            try:
                os.close(os.open(f"n{i}", os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644))
                won.append(i)
            except FileExistsError:
                pass
        with open(f"won-{os.getpid()}", "w") as f:
            f.write(",".join(map(str, won)))

    ctx.parallel([worker] * NPROC)
    total = []
    for n in os.listdir("."):
        if n.startswith("won-"):
            txt = open(n).read()
            total += [int(x) for x in txt.split(",") if x]
    ctx.rec.note("every name won exactly once", sorted(total) == list(range(200)))


@case(A)
def case_mkdir_rmdir_race(ctx: Ctx) -> None:
    def worker(rec: Recorder) -> None:
        odd = set()
        for _ in range(300):
            for fn in (os.mkdir, os.rmdir):
                try:
                    fn("x")
                except OSError as e:
                    if e.errno not in (errno.EEXIST, errno.ENOENT):
                        odd.add(errno.errorcode[e.errno])
        rec.note("unexpected errnos", sorted(odd))

    ctx.parallel([worker] * NPROC)
    names = os.listdir(".")
    ctx.rec.note("leftover is nothing or one dir", names in ([], ["x"]))
    ctx.rec.note("nlink of cwd consistent", os.stat(".").st_nlink == 2 + len(names))


@case(A)
def case_rename_over_race(ctx: Ctx) -> None:
    """Processes keep renaming their own files onto one name; exactly one file is
    left under it and no other name is lost or duplicated."""
    def worker(k: int):
        def run(rec: Recorder) -> None:
            odd = 0
            for i in range(200):
                n = f"p{k}-{i}"
                _touch(n, n.encode())
                try:
                    os.rename(n, "target")
                except OSError:
                    odd += 1
            rec.note("rename errors", odd)
        return run

    ctx.parallel([worker(k) for k in range(NPROC)])
    ctx.rec.note("names", sorted(os.listdir(".")))
    content = open("target", "rb").read()
    ctx.rec.note("target holds one whole file", content.startswith(b"p") and
                 content.count(b"-") == 1)


@case(A)
def case_appenders(ctx: Ctx) -> None:
    _touch("log")

    def worker(k: int):
        def run(rec: Recorder) -> None:
            fd = os.open("log", os.O_WRONLY | os.O_APPEND)
            for _ in range(300):
                os.write(fd, (b"%d" % k) * 63 + b"\n")
            os.close(fd)
        return run

    ctx.parallel([worker(k) for k in range(NPROC)])
    data = open("log", "rb").read()
    lines = data.split(b"\n")[:-1]
    ctx.rec.note("size", len(data))
    ctx.rec.note("all records intact", all(len(set(x)) == 1 and len(x) == 63 for x in lines))
    ctx.rec.note("per-writer counts", sorted(
        (chr(x[0]), sum(1 for y in lines if y[:1] == x[:1])) for x in
        {ln[:1]: ln for ln in lines}.values()))


@case(A)
def case_readers_during_truncate(ctx: Ctx) -> None:
    """Readers racing with truncate/extend see only the pattern byte or zeroes (a
    read that raced with the truncate of a partial page), never other bytes and
    never an error."""
    size = 16 * 4096
    _touch("f", b"p" * size)

    def writer(rec: Recorder) -> None:
        fd = os.open("f", os.O_RDWR)
        for i in range(300):
            os.ftruncate(fd, (i * 977) % size)
            os.pwrite(fd, b"p" * size, 0)
        rec.note("writer done", True)

    def reader(rec: Recorder) -> None:
        fd = os.open("f", os.O_RDONLY)
        bad = 0
        for i in range(600):
            blob = os.pread(fd, size, (i * 4093) % size)
            if blob.translate(None, b"p\0"):
                bad += 1
        rec.note("reads with foreign bytes", bad)

    ctx.parallel([writer, reader, reader])
    ctx.rec.call("final size", lambda: os.stat("f").st_size)


@case(A)
def case_link_unlink_race(ctx: Ctx) -> None:
    _touch("base")

    def worker(k: int):
        def run(rec: Recorder) -> None:
            for i in range(200):
                os.link("base", f"l{k}-{i}")
                if i % 2:
                    os.unlink(f"l{k}-{i}")
        return run

    ctx.parallel([worker(k) for k in range(NPROC)])
    ctx.rec.call("nlink", lambda: os.stat("base").st_nlink)
    ctx.rec.note("names", len(os.listdir(".")))


@case(A)
def case_writers_disjoint_ranges(ctx: Ctx) -> None:
    """pwrite from several processes into disjoint ranges of one file."""
    _touch("f")

    def worker(k: int):
        def run(rec: Recorder) -> None:
            fd = os.open("f", os.O_WRONLY)
            for i in range(64):
                os.pwrite(fd, bytes([65 + k]) * 1000, (i * NPROC + k) * 1000)
            os.close(fd)
        return run

    ctx.parallel([worker(k) for k in range(NPROC)])
    data = open("f", "rb").read()
    ok = all(data[j * 1000:(j + 1) * 1000] == bytes([65 + j % NPROC]) * 1000
             for j in range(64 * NPROC))
    ctx.rec.note("size", len(data))
    ctx.rec.note("every range holds its writer's bytes", ok)
