"""Mixed traffic for the live tests: streaming writers and a small-file creator.

Several tests need large WRITEs from other processes while they do something else
(small requests, window IOCTLs) -- the mixed traffic that wakes the clone readers --
and then need to know that every streamed byte landed where it belongs. Writer
``tag`` of ``start_writers(path, rounds)`` pwrites ``rounds`` records of 1 MiB into
one shared file, record ``r`` at record slot ``tag * rounds + r``, each filled with
the byte ``tag * 16 + r % 16``: a record lost, misplaced, torn or written by the
wrong writer shows in ``check_records``.

Overlap is not left to the scheduler where a test depends on it: a process started
with ``wait=True`` boots its interpreter, says ``ready`` and waits; ``go(procs)``
waits for every ``ready`` and then releases them all at once. A Python start-up
took 0.08-0.33 s here at load 13, as long as a 12 MiB stream or longer, so without
the barrier the "concurrent" clients of a test may well run one after the other.
The creator (``start_creator``) makes, writes and unlinks small files until it is
told to stop (``stop_creator``, after the writers are done) and has made at least
its minimum: its small requests span the whole stream.
"""

from __future__ import annotations

import contextlib
import os
import select
import subprocess
import sys
import time
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

RECORD = 1 << 20

# "wait" as the last argument: the start barrier (module docstring)
_BARRIER = r"""
import os, sys
def barrier():
    if sys.argv[-1] == "wait":
        print("ready", flush=True)
        while not os.read(0, 1).endswith(b"\n"):
            pass
"""

_WRITER = _BARRIER + r"""
path, tag, rounds = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o644)
barrier()
for r in range(rounds):
    rec = bytes([tag * 16 + r % 16]) * (1 << 20)
    assert os.pwrite(fd, rec, (tag * rounds + r) << 20) == 1 << 20
os.close(fd)
"""

# f{i} holds i (4 bytes, little-endian); every third one is unlinked again. Stops at
# a line (or EOF) on stdin once it has made ``least`` files; prints how many it made.
_CREATOR = _BARRIER + r"""
import select
d, least = sys.argv[1], int(sys.argv[2])
os.makedirs(d, exist_ok=True)
barrier()
i = 0
while i < least or not select.select([0], [], [], 0)[0]:
    p = os.path.join(d, f"f{i}")
    with open(p, "wb") as f:
        f.write(i.to_bytes(4, "little"))
    if i % 3 == 0:
        os.unlink(p)
    i += 1
print(i, flush=True)
"""

Proc = subprocess.Popen[bytes]


def record(tag: int, r: int) -> bytes:
    """What writer ``tag`` writes as its record ``r``."""
    return bytes([tag * 16 + r % 16]) * RECORD


def _spawn(script: str, *args: str, wait: bool) -> Proc:
    piped = subprocess.PIPE if wait else None
    return subprocess.Popen([sys.executable, "-c", script, *args, *(["wait"] if wait else [])],
                            stdin=piped, stdout=piped)


def start_writers(path: Path, rounds: int, tags: Iterable[int] = (0, 1), *,
                  wait: bool = False) -> list[Proc]:
    """One writer process a tag, each streaming ``rounds`` records into ``path``
    (with ``wait``: only once ``go`` lets it)."""
    return [_spawn(_WRITER, str(path), str(t), str(rounds), wait=wait) for t in tags]


def start_creator(directory: Path, least: int) -> Proc:
    """A process making small files in ``directory`` (see _CREATOR) from ``go`` on
    until ``stop_creator``."""
    return _spawn(_CREATOR, str(directory), str(least), wait=True)


def _line(p: Proc, deadline: float) -> bytes:
    """One line of p's stdout, waiting at most until ``deadline`` (monotonic)."""
    assert p.stdout is not None
    fd, out = p.stdout.fileno(), b""
    while not out.endswith(b"\n"):
        if not select.select([fd], [], [], max(0.0, deadline - time.monotonic()))[0]:
            raise AssertionError(f"process {p.pid} said nothing (got {out!r})")
        chunk = os.read(fd, 64)
        if not chunk:
            raise AssertionError(f"process {p.pid} ended (status {p.wait()}): got {out!r}")
        out += chunk
    return out


def go(procs: Sequence[Proc], timeout: float = 120) -> None:
    """The start barrier: wait until every process (started waiting) is ready, then
    release them all."""
    deadline = time.monotonic() + timeout
    for p in procs:
        assert _line(p, deadline) == b"ready\n", p.args
    for p in procs:
        assert p.stdin is not None
        p.stdin.write(b"go\n")
        p.stdin.flush()


def stop_creator(p: Proc, timeout: float = 300) -> int:
    """Tell the creator to stop (it does once it has made its minimum); how many
    files it made (f0 .. f{n-1}, every third unlinked). It must exit 0."""
    assert p.stdin is not None
    p.stdin.close()
    n = int(_line(p, time.monotonic() + timeout))
    assert p.wait(timeout=timeout) == 0
    return n


def check_created(directory: Path, n: int) -> None:
    """``directory`` holds exactly what a creator that made ``n`` files left."""
    names = sorted(os.listdir(directory))
    assert names == sorted(f"f{i}" for i in range(n) if i % 3), (directory, n)
    for name in names:
        assert (directory / name).read_bytes() == int(name[1:]).to_bytes(4, "little"), name


def wait_all(procs: Sequence[Proc], timeout: float = 300) -> None:
    """Wait for every process (each within ``timeout``); each must have exited 0.

    All are waited for before a failure is raised, and one still running after its
    timeout is killed, so that a failing test leaves no writer behind."""
    codes: list[object] = []
    for p in procs:
        try:
            codes.append(p.wait(timeout=timeout))
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
            codes.append("timeout")
        _close(p)
    assert codes == [0] * len(procs), codes


def _close(p: Proc) -> None:
    for f in (p.stdin, p.stdout):
        if f is not None and not f.closed:
            with contextlib.suppress(BrokenPipeError):
                f.close()


@contextlib.contextmanager
def running(procs: list[Proc], timeout: float = 300) -> Iterator[list[Proc]]:
    """Yield ``procs``; on a normal exit ``wait_all`` of them, on an exception kill
    and reap those still running (no client outlives a failed test)."""
    try:
        yield procs
    except BaseException:
        for p in procs:
            if p.poll() is None:
                p.kill()
            p.wait()
            _close(p)
        raise
    wait_all(procs, timeout)


def check_records(data: bytes, rounds: int, tags: Iterable[int] = (0, 1),
                  where: object = None) -> None:
    """``data`` (the file's bytes) holds exactly every writer's records."""
    tags = list(tags)
    assert len(data) == (max(tags) + 1) * rounds * RECORD, (where, len(data))
    for t in tags:
        for r in range(rounds):
            off = (t * rounds + r) * RECORD
            assert data[off:off + RECORD] == record(t, r), (where, t, r)
