"""One stress worker: a seeded stream of operations on its own files, checked by the oracle.

A worker's stream is a function of (seed, proc) only: every random choice is
drawn before the operation runs and never depends on an outcome, so
``--replay PROC`` re-runs exactly the same operations (the shared-directory
races then have nobody to race with, but the owned files see the same calls).

The worker keeps the last ``history`` operations; the first verification that
fails (or the first errno the oracle did not expect) stops it, and the report
carries the seed, the process, the file, the history and the replay command.
"""

from __future__ import annotations

import os
import random
import time
import traceback
from collections import Counter, deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from stresslib.oracle import FileModel, Mismatch


@dataclass(slots=True)
class Params:
    """Everything that shapes the op stream (the replay command repeats all of it)."""

    seed: int
    procs: int = 3
    files: int = 4
    max_size: int = 1 << 20
    slots: int = 12
    history: int = 25
    ops: int = 0  # per process; 0 = until the deadline
    seconds: float = 0.0
    skip: tuple[str, ...] = ()  # op kinds left out (to narrow a failure down)
    inject: int = -1  # self-test: corrupt a file behind the oracle's back at this op of proc 0
    trace: bool = False
    fsx: bool = False  # add fsx's eofpage/mapwrite/O_DIRECT kinds (stresslib/fsxops.py)


@dataclass(slots=True)
class OwnedFile:
    """One of the worker's own files: its current name, an open O_RDWR fd, its model."""

    path: str
    fd: int
    model: FileModel = field(default_factory=FileModel)


class Worker:
    """State of one worker process; op functions (opkinds.py) act on it."""

    def __init__(self, proc: int, root: Path, params: Params) -> None:
        self.proc = proc
        self.params = params
        self.rng = random.Random(f"stress:{params.seed}:{proc}")
        self.root = root
        self.dir = root / f"p{proc}"
        self.shared = root / "shared"
        self.files: list[OwnedFile] = []
        self.history: deque[str] = deque(maxlen=params.history)
        self.op_index = 0
        self.current_file = ""
        self.times: dict[str, list[int]] = {}  # kind -> [count, ns]
        self.bytes_verified = 0
        self.bytes_written = 0
        self.tolerated: Counter[str] = Counter()  # expected races: "link:ENOENT" ...
        self.names_delta = 0  # shared names created minus removed by this worker
        self.published: list[tuple[int, int]] = []  # (proc, seq) of records it created
        self.seq = 0

    # --- setup ---------------------------------------------------------------------------------

    def setup(self) -> None:
        self.dir.mkdir(exist_ok=True)
        for i in range(self.params.files):
            path = str(self.dir / f"f{i}")
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
            self.files.append(OwnedFile(path, fd))

    def close(self) -> None:
        for f in self.files:
            os.close(f.fd)
        self.files.clear()

    # --- helpers for op functions --------------------------------------------------------------

    def note(self, text: str) -> None:
        """Record the operation about to run (before it runs: a crash still names it)."""
        line = f"#{self.op_index} {text.replace(str(self.root) + '/', '')}"
        self.history.append(line)
        if self.params.trace:
            print(f"[p{self.proc}] {line}", flush=True)

    def pick_file(self) -> OwnedFile:
        f = self.files[self.rng.randrange(len(self.files))]
        self.current_file = f.path
        return f

    def offset(self, f: OwnedFile, slack: int = 2 * 4096) -> int:
        """An offset biased to page boundaries, the current EOF and the inside of the file."""
        r = self.rng
        limit = self.params.max_size
        kind = r.randrange(5)
        if kind == 0:
            off = r.randrange(0, limit // 4096 + 1) * 4096
        elif kind == 1:
            off = max(0, f.model.size + r.randrange(-4096, 4096))
        elif kind == 2 and f.model.size:
            off = r.randrange(f.model.size)
        else:
            off = r.randrange(0, min(limit, f.model.size + slack) + 1)
        return min(off, limit - 1)

    def length(self, off: int) -> int:
        r = self.rng
        kind = r.randrange(6)
        if kind == 0:
            n = r.randrange(1, 64)
        elif kind == 1:
            n = 4096 * r.randrange(1, 5) + r.randrange(-1, 2)
        elif kind in (2, 3):
            n = r.randrange(1, 16 * 4096)
        elif kind == 4:
            n = r.randrange(1, 4096)
        else:
            n = r.randrange(1, 256 * 1024)
        return max(1, min(n, self.params.max_size - off))

    def verified(self, n: int) -> None:
        self.bytes_verified += n

    def tolerate(self, kind: str, err: OSError, allowed: tuple[int, ...]) -> None:
        """An errno that a race may legitimately produce; anything else is a failure."""
        if err.errno not in allowed:
            raise err
        import errno as E

        self.tolerated[f"{kind}:{E.errorcode.get(err.errno, err.errno)}"] += 1

    def next_seq(self) -> int:
        self.seq += 1
        return self.seq

    # --- the loop ------------------------------------------------------------------------------

    def run(self, ops: list[tuple[str, int, Any]], should_stop: Any,
            progress: Any = None, final: Any = None) -> dict[str, Any]:
        """Run until ops or seconds are used up, or should_stop(); then ``final(self)``
        (the last whole-file verification); return the result dict."""
        names = [name for name, _, _ in ops]
        weights = [w for _, w, _ in ops]
        funcs = {name: fn for name, _, fn in ops}
        p = self.params
        deadline = time.monotonic() + p.seconds if p.seconds else None
        failure: str | None = None
        kind = ""
        try:
            self.setup()
            while True:
                if p.ops and self.op_index >= p.ops:
                    break
                if self.op_index % 16 == 0 and (
                        should_stop() or (deadline is not None and time.monotonic() > deadline)):
                    break
                kind = self.rng.choices(names, weights)[0]
                if self.proc == 0 and self.op_index == p.inject:
                    kind = "inject-corruption"
                t0 = time.perf_counter_ns()
                funcs[kind](self)
                entry = self.times.setdefault(kind, [0, 0])
                entry[0] += 1
                entry[1] += time.perf_counter_ns() - t0
                self.op_index += 1
                if progress is not None:
                    progress(self.op_index, self.bytes_verified)
            if final is not None:
                kind = "final"
                final(self)
        except Mismatch as e:
            failure = self.report(kind, f"VERIFICATION FAILED: {e}", e.path)
        except OSError as e:
            failure = self.report(kind, f"UNEXPECTED ERROR: {e!r}", self.current_file)
        except Exception:
            failure = self.report(kind, "CRASH in the stress tool:\n" + traceback.format_exc(),
                                  self.current_file)
        finally:
            try:
                self.close()
            except OSError:
                pass
        return {
            "proc": self.proc,
            "ops": self.op_index,
            "times": self.times,
            "bytes_verified": self.bytes_verified,
            "bytes_written": self.bytes_written,
            "tolerated": dict(self.tolerated),
            "names_delta": self.names_delta,
            "published": self.published,
            "failure": failure,
        }

    def report(self, kind: str, what: str, path: str) -> str:
        p = self.params
        lines = [
            f"{what}",
            f"  seed {p.seed}, process {self.proc}, operation #{self.op_index} ({kind}), "
            f"file {path} (in {self.root})",
            f"  last {len(self.history)} operations of process {self.proc}:",
            *(f"    {h}" for h in self.history),
            f"  replay: {replay_command(p, self.proc, self.op_index + 1)}",
        ]
        return "\n".join(lines)


def replay_command(p: Params, proc: int, ops: int) -> str:
    """The command line that re-runs process ``proc`` alone up to the failing operation."""
    parts = ["scripts/stress.py", f"--seed {p.seed}", f"--procs {p.procs}",
             f"--files {p.files}", f"--max-size {p.max_size}", f"--slots {p.slots}",
             f"--replay {proc}", f"--ops {ops}"]
    if p.skip:
        parts.append(f"--skip {','.join(p.skip)}")
    if p.inject >= 0:
        parts.append(f"--inject {p.inject}")
    if p.fsx:
        parts.append("--fsx")
    return " ".join(parts) + " [--tmpfs | --dir DIR]"
