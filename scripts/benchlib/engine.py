"""The inner loops of every workload, in two interchangeable engines.

``CEngine`` runs a tiny C program (helper.c, compiled here with gcc on first
use) so that per-operation workloads measure the filesystem rather than the
interpreter; ``PyEngine`` does the same loops with os.pread/os.pwrite/os.preadv
into preallocated buffers. Both return ``Sample`` values covering only the
timed part of a loop, and both use the same operation order so a result from
either engine means the same thing. The benchmark uses the C engine when gcc
is available (``--engine auto``) and records which one produced each number.
"""

from __future__ import annotations

import hashlib
import mmap
import os
import random
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

PAGE = 4096
HELPER_SRC = Path(__file__).with_name("helper.c")
HELPER_TIMEOUT = 900  # seconds for one timed loop


@dataclass(slots=True)
class Sample:
    """One timed loop: elapsed nanoseconds, operations done, bytes moved."""

    ns: int
    ops: int
    nbytes: int = 0


class Engine:
    """Interface of the two engines (names match helper.c's subcommands)."""

    name = "abstract"

    def seqwrite(self, path: Path, total: int, bs: int) -> Sample:
        raise NotImplementedError

    def seqread(self, path: Path, bs: int) -> tuple[Sample, Sample]:
        """Two passes over one open fd: (first = cold, second = warm)."""
        raise NotImplementedError

    def randread(self, path: Path, ops: int, seed: int) -> Sample:
        raise NotImplementedError

    def randwrite(self, path: Path, ops: int, seed: int) -> Sample:
        raise NotImplementedError

    def mmaptouch(self, path: Path) -> Sample:
        raise NotImplementedError

    def meta(self, op: str, directory: Path, n: int) -> Sample:
        """op is create, stat or unlink over the names f0000000..f{n-1}."""
        raise NotImplementedError

    def readdir(self, directory: Path) -> Sample:
        raise NotImplementedError


def _name(directory: Path, i: int) -> str:
    return f"{directory}/f{i:07d}"


class CEngine(Engine):
    """Runs helper.c; one process per loop (its start-up is outside the timing)."""

    name = "c"

    def __init__(self, exe: Path) -> None:
        self.exe = exe
        self.on_timeout: Callable[[], None] | None = None  # e.g. abort hung FUSE mounts

    @classmethod
    def build(cls, cache_dir: Path | None = None) -> CEngine:
        """Compile helper.c with gcc -O2 into a cache keyed by the source hash."""
        gcc = shutil.which("gcc") or shutil.which("cc")
        if gcc is None:
            raise RuntimeError("no C compiler (gcc) on PATH")
        src = HELPER_SRC.read_bytes()
        digest = hashlib.sha256(src).hexdigest()[:16]
        cache_dir = cache_dir or Path(tempfile.gettempdir()) / "shmfs-bench"
        cache_dir.mkdir(parents=True, exist_ok=True)
        exe = cache_dir / f"helper-{digest}"
        if not exe.exists():
            tmp = exe.with_suffix(f".tmp{os.getpid()}")
            subprocess.run([gcc, "-O2", "-Wall", "-o", str(tmp), str(HELPER_SRC)], check=True)
            tmp.rename(exe)
        return cls(exe)

    def _run(self, *args: object) -> list[Sample]:
        # a hung filesystem must not hang the benchmark: after HELPER_TIMEOUT the
        # helper is killed (TimeoutExpired) and the caller's cleanup unmounts
        try:
            proc = subprocess.run(
                [str(self.exe), *map(str, args)], capture_output=True, text=True,
                check=False, timeout=HELPER_TIMEOUT,
            )
        except subprocess.TimeoutExpired:
            if self.on_timeout is not None:
                self.on_timeout()
            raise
        if proc.returncode != 0:
            raise OSError(f"helper {args[0]} failed: {proc.stderr.strip()}")
        samples = []
        for line in proc.stdout.splitlines():
            fields = dict(kv.split("=") for kv in line.split())
            samples.append(Sample(int(fields["ns"]), int(fields["ops"]), int(fields["bytes"])))
        return samples

    def seqwrite(self, path: Path, total: int, bs: int) -> Sample:
        return self._run("seqwrite", path, total, bs)[0]

    def seqread(self, path: Path, bs: int) -> tuple[Sample, Sample]:
        cold, warm = self._run("seqread", path, bs)
        return cold, warm

    def randread(self, path: Path, ops: int, seed: int) -> Sample:
        return self._run("randread", path, ops, seed)[0]

    def randwrite(self, path: Path, ops: int, seed: int) -> Sample:
        return self._run("randwrite", path, ops, seed)[0]

    def mmaptouch(self, path: Path) -> Sample:
        return self._run("mmaptouch", path)[0]

    def meta(self, op: str, directory: Path, n: int) -> Sample:
        return self._run(op, directory, n)[0]

    def readdir(self, directory: Path) -> Sample:
        return self._run("readdir", directory)[0]


def _filled(n: int, rng: random.Random) -> bytearray:
    """A buffer of non-zero random bytes (no page of it is a zero page)."""
    buf = bytearray(rng.randbytes(n))
    arr = np.frombuffer(buf, dtype=np.uint8)
    arr |= 1
    return buf


class PyEngine(Engine):
    """The same loops in Python: os.* calls into buffers allocated once."""

    name = "python"

    def seqwrite(self, path: Path, total: int, bs: int) -> Sample:
        buf = memoryview(_filled(bs, random.Random(1)))
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        pwrite = os.pwrite
        t0 = time.perf_counter_ns()
        try:
            for off in range(0, total, bs):
                if pwrite(fd, buf, off) != bs:
                    raise OSError(f"short write to {path}")
            os.fsync(fd)
        finally:
            os.close(fd)
        return Sample(time.perf_counter_ns() - t0, total // bs, total)

    def seqread(self, path: Path, bs: int) -> tuple[Sample, Sample]:
        bufs = [memoryview(bytearray(bs))]
        fd = os.open(path, os.O_RDONLY)
        preadv = os.preadv
        out = []
        try:
            for _pass in range(2):
                off = ops = 0
                t0 = time.perf_counter_ns()
                while (n := preadv(fd, bufs, off)) > 0:
                    off += n
                    ops += 1
                out.append(Sample(time.perf_counter_ns() - t0, ops, off))
        finally:
            os.close(fd)
        return out[0], out[1]

    def randread(self, path: Path, ops: int, seed: int) -> Sample:
        rng = random.Random(seed)
        bufs = [memoryview(bytearray(PAGE))]
        fd = os.open(path, os.O_RDONLY)
        preadv = os.preadv
        done = ns = 0
        try:
            npages = os.fstat(fd).st_size // PAGE
            if npages <= 0:
                raise OSError(f"{path} is empty")
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_RANDOM)
            while done < ops:
                n = min(ops - done, npages)
                offsets = [p * PAGE for p in rng.sample(range(npages), n)]
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
                t0 = time.perf_counter_ns()
                for off in offsets:
                    if preadv(fd, bufs, off) != PAGE:
                        raise OSError(f"short read from {path}")
                ns += time.perf_counter_ns() - t0
                done += n
        finally:
            os.close(fd)
        return Sample(ns, done, done * PAGE)

    def randwrite(self, path: Path, ops: int, seed: int) -> Sample:
        rng = random.Random(seed)
        buf = memoryview(_filled(PAGE, rng))
        fd = os.open(path, os.O_WRONLY)
        pwrite = os.pwrite
        try:
            npages = os.fstat(fd).st_size // PAGE
            if npages <= 0:
                raise OSError(f"{path} is empty")
            offsets = [rng.randrange(npages) * PAGE for _ in range(ops)]
            t0 = time.perf_counter_ns()
            for off in offsets:
                if pwrite(fd, buf, off) != PAGE:
                    raise OSError(f"short write to {path}")
            os.fsync(fd)
            ns = time.perf_counter_ns() - t0
        finally:
            os.close(fd)
        return Sample(ns, ops, ops * PAGE)

    def mmaptouch(self, path: Path) -> Sample:
        fd = os.open(path, os.O_RDONLY)
        try:
            size = os.fstat(fd).st_size
            m = mmap.mmap(fd, size, mmap.MAP_SHARED, mmap.PROT_READ)
        finally:
            os.close(fd)
        try:
            arr = np.frombuffer(m, dtype=np.uint8)
            t0 = time.perf_counter_ns()
            int(arr[::PAGE].sum())  # one load per page, in numpy's C loop
            ns = time.perf_counter_ns() - t0
            del arr
        finally:
            m.close()
        return Sample(ns, size // PAGE, size)

    def meta(self, op: str, directory: Path, n: int) -> Sample:
        names = [_name(directory, i) for i in range(n)]
        if op == "create":
            flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL
            osopen, osclose = os.open, os.close
            t0 = time.perf_counter_ns()
            for name in names:
                osclose(osopen(name, flags, 0o644))
        elif op == "stat":
            osstat = os.stat
            t0 = time.perf_counter_ns()
            for name in names:
                osstat(name)
        elif op == "unlink":
            osunlink = os.unlink
            t0 = time.perf_counter_ns()
            for name in names:
                osunlink(name)
        else:
            raise ValueError(op)
        return Sample(time.perf_counter_ns() - t0, n)

    def readdir(self, directory: Path) -> Sample:
        t0 = time.perf_counter_ns()
        n = 2 + len(os.listdir(directory))  # readdir(3) also returns . and ..
        return Sample(time.perf_counter_ns() - t0, n)


def make_engine(choice: str) -> Engine:
    """'c', 'python' or 'auto' (C when a compiler is available)."""
    if choice == "python":
        return PyEngine()
    try:
        return CEngine.build()
    except (RuntimeError, subprocess.CalledProcessError, OSError):
        if choice == "c":
            raise
        return PyEngine()
