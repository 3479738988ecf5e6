"""The conformance framework: case registry, recorder, acting as another user, runner.

A *case* is a function ``fn(ctx)`` registered with :func:`case`.  It acts on the
empty directory ``ctx.dir`` (also its working directory, so cases use short
relative paths) and records every observation with ``ctx.rec``.  The runner
executes each case in a forked child on both filesystems and compares the two
observation lists step by step.  Observations never contain inode numbers,
st_dev or absolute times: inode numbers are mapped to first-seen labels
(``i1``, ``i2`` ...), and cases record time *relations* ("mtime advanced") or
times they set themselves.
"""

from __future__ import annotations

import errno
import os
import pickle
import select
import signal
import stat
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

OTHER_UID = 1000
OTHER_GID = 1000
THIRD_UID = 1001
THIRD_GID = 1001
SHARED_GID = 1500          # a supplementary group some cases give to OTHER_UID

CASE_TIMEOUT = 20.0


def errname(num: int | None) -> str:
    """Symbolic errno name (ENOENT ...) -- numbers are compared by name."""
    if num is None:
        return "E?"
    return errno.errorcode.get(num, f"E#{num}")


@dataclass(frozen=True)
class Case:
    """One registered conformance case."""

    name: str
    area: str
    fn: Callable[[Ctx], None]
    mount: str | None     # tmpfs-style mount options when the case needs its own mount
    doc: str


REGISTRY: dict[str, Case] = {}


def case(area: str, *, mount: str | None = None) -> Callable[[Callable], Callable]:
    """Register ``fn`` as case ``area.name``; ``mount`` asks for a private mount."""

    def deco(fn: Callable[[Ctx], None]) -> Callable[[Ctx], None]:
        name = f"{area}.{fn.__name__.removeprefix('case_')}"
        if name in REGISTRY:
            raise ValueError(f"duplicate case {name}")
        REGISTRY[name] = Case(name, area, fn, mount, (fn.__doc__ or "").strip())
        return fn

    return deco


# ---------------------------------------------------------------------------
# recording

_TYPES = {
    stat.S_IFREG: "reg", stat.S_IFDIR: "dir", stat.S_IFLNK: "lnk", stat.S_IFCHR: "chr",
    stat.S_IFBLK: "blk", stat.S_IFIFO: "fifo", stat.S_IFSOCK: "sock",
}


class Recorder:
    """Collects ``(label, observation)`` pairs; see the module docstring."""

    def __init__(self, inos: dict[int, str] | None = None) -> None:
        self.obs: list[tuple[str, Any]] = []
        self.inos: dict[int, str] = dict(inos or {})

    # -- normalisation -------------------------------------------------
    def ino(self, ino: int) -> str:
        """Stable label for an inode number (first seen = i1)."""
        if ino not in self.inos:
            self.inos[ino] = f"i{len(self.inos) + 1}"
        return self.inos[ino]

    def norm_stat(self, st: os.stat_result) -> dict[str, Any]:
        """The parts of a stat a program can rely on, without ino/dev/times."""
        fmt = stat.S_IFMT(st.st_mode)
        out: dict[str, Any] = {
            "type": _TYPES.get(fmt, oct(fmt)),
            "mode": oct(stat.S_IMODE(st.st_mode)),
            "ino": self.ino(st.st_ino),
            "nlink": st.st_nlink,
            "uid": st.st_uid,
            "gid": st.st_gid,
            "size": st.st_size,
            "blocks": st.st_blocks,
            "blksize": st.st_blksize,
        }
        if fmt in (stat.S_IFCHR, stat.S_IFBLK):
            out["rdev"] = (os.major(st.st_rdev), os.minor(st.st_rdev))
        return out

    def norm(self, value: Any) -> Any:
        if isinstance(value, os.stat_result):
            return self.norm_stat(value)
        if isinstance(value, list | tuple):
            return type(value)(self.norm(v) for v in value)
        if isinstance(value, dict):
            return {k: self.norm(v) for k, v in value.items()}
        return value

    # -- recording -----------------------------------------------------
    def note(self, label: str, value: Any) -> None:
        """Record a derived value (a relation, a count, a set of names ...)."""
        self.obs.append((label, self.norm(value)))

    def call(self, label: str, fn: Callable[..., Any], *args: Any, **kw: Any) -> Any:
        """Call ``fn``; record ``("ok", result)`` or ``("err", ENAME)``.

        Returns the result, or None when the call failed.
        """
        try:
            res = fn(*args, **kw)
        except OSError as e:
            self.obs.append((label, ("err", errname(e.errno))))
            return None
        self.obs.append((label, ("ok", self.norm(res))))
        return res

    def ok(self, label: str, fn: Callable[..., Any], *args: Any, **kw: Any) -> Any:
        """Like :meth:`call` but records only success, not the value (fds, cookies)."""
        try:
            res = fn(*args, **kw)
        except OSError as e:
            self.obs.append((label, ("err", errname(e.errno))))
            return None
        self.obs.append((label, ("ok",)))
        return res

    def stat(self, path: str, *, follow: bool = True, label: str | None = None) -> Any:
        """Record and return ``stat``/``lstat`` of ``path`` (None on error)."""
        lab = label or (f"stat({path})" if follow else f"lstat({path})")
        return self.call(lab, os.stat, path, follow_symlinks=follow)

    def fstat(self, fd: int, label: str = "fstat") -> Any:
        return self.call(label, os.fstat, fd)

    def open(self, path: str, flags: int, mode: int = 0o644, label: str | None = None,
             **kw: Any) -> int | None:
        """Record an ``open`` by outcome only; returns the fd or None."""
        return self.ok(label or f"open({path}, {flag_names(flags)})", os.open, path, flags,
                       mode, **kw)


def flag_names(flags: int) -> str:
    """Readable open(2) flags for labels."""
    names = []
    acc = flags & os.O_ACCMODE
    names.append({os.O_RDONLY: "O_RDONLY", os.O_WRONLY: "O_WRONLY", os.O_RDWR: "O_RDWR"}
                 .get(acc, f"acc{acc}"))
    rest = flags & ~os.O_ACCMODE
    tmpfile = getattr(os, "O_TMPFILE", 0)
    if tmpfile and (rest & tmpfile) == tmpfile:
        names.append("O_TMPFILE")
        rest &= ~tmpfile
    for n in ("O_CREAT", "O_EXCL", "O_TRUNC", "O_APPEND", "O_NOFOLLOW", "O_DIRECTORY",
              "O_NONBLOCK", "O_PATH", "O_CLOEXEC", "O_NOATIME", "O_SYNC", "O_DSYNC"):
        v = getattr(os, n, 0)
        if v and rest & v == v:
            names.append(n)
            rest &= ~v
    if rest:
        names.append(hex(rest))
    return "|".join(names)


# ---------------------------------------------------------------------------
# forked execution

def _run_forked(fn: Callable[[Recorder], None], inos: dict[int, str], timeout: float,
                setup: Callable[[], None] | None = None) -> tuple[list, str | None]:
    """Run ``fn(rec)`` in a forked child; return its observations and an error text.

    The child ends with ``os._exit`` so no parent cleanup (pytest, atexit) runs in it.
    A child that outlives ``timeout`` is killed and reported as ``TIMEOUT``.
    """
    rfd, wfd = os.pipe()
    pid = os.fork()
    if pid == 0:  # child
        os.close(rfd)
        rec = Recorder(inos)
        err: str | None = None
        try:
            if setup is not None:
                setup()
            fn(rec)
        except BaseException as e:
            if isinstance(e, OSError):
                err = f"raised {type(e).__name__} {errname(e.errno)}: {e.strerror}"
            else:
                err = f"raised {type(e).__name__}: {e}"
        try:
            data = pickle.dumps((rec.obs, err))
            view = memoryview(data)
            while view:
                n = os.write(wfd, view)
                view = view[n:]
        finally:
            os._exit(0)
    os.close(wfd)
    chunks: list[bytes] = []
    deadline = time.monotonic() + timeout
    timed_out = False
    try:
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                timed_out = True
                break
            ready, _, _ = select.select([rfd], [], [], left)
            if not ready:
                continue
            buf = os.read(rfd, 1 << 16)
            if not buf:
                break
            chunks.append(buf)
    finally:
        os.close(rfd)
        if timed_out:
            os.kill(pid, signal.SIGKILL)
        _, status = os.waitpid(pid, 0)
    if timed_out:
        return [], "TIMEOUT"
    if not chunks:
        return [], f"child died without a report (status {status:#x})"
    obs, err = pickle.loads(b"".join(chunks))
    return obs, err


def _become(uid: int, gid: int, groups: Iterable[int]) -> Callable[[], None]:
    def setup() -> None:
        os.setgroups(list(groups))
        os.setgid(gid)
        os.setuid(uid)
    return setup


@dataclass
class Ctx:
    """What a case gets: its directory (= cwd), the recorder, and process helpers."""

    dir: Path
    rec: Recorder
    timeout: float = CASE_TIMEOUT
    failures: list[str] = field(default_factory=list)

    def _merge(self, prefix: str, obs: list, err: str | None) -> None:
        for label, value in obs:
            self.rec.obs.append((f"{prefix}{label}", value))
        if err is not None:
            self.rec.obs.append((f"{prefix}<child>", ("child-error", err)))

    def as_user(self, fn: Callable[[Recorder], None], uid: int = OTHER_UID,
                gid: int = OTHER_GID, groups: Iterable[int] = (),
                label: str | None = None) -> None:
        """Run ``fn(rec)`` in a child with the given credentials (setgroups, setgid,
        setuid) and append what it recorded, prefixed with ``[uid=...]``."""
        obs, err = _run_forked(fn, self.rec.inos, self.timeout,
                               _become(uid, gid, tuple(groups)))
        self._merge(label or f"[uid={uid}] ", obs, err)

    def in_child(self, fn: Callable[[Recorder], None], label: str = "[child] ") -> None:
        """Run ``fn(rec)`` in a forked child with the same credentials."""
        obs, err = _run_forked(fn, self.rec.inos, self.timeout)
        self._merge(label, obs, err)

    def parallel(self, fns: list[Callable[[Recorder], None]]) -> None:
        """Run all ``fns`` at once in separate processes; merge in list order."""
        pids: list[tuple[int, int]] = []
        for fn in fns:
            rfd, wfd = os.pipe()
            pid = os.fork()
            if pid == 0:
                os.close(rfd)
                rec = Recorder(self.rec.inos)
                err = None
                try:
                    fn(rec)
                except BaseException as e:
                    err = f"raised {type(e).__name__}: {e}"
                try:
                    data = pickle.dumps((rec.obs, err))
                    view = memoryview(data)
                    while view:
                        view = view[os.write(wfd, view):]
                finally:
                    os._exit(0)
            os.close(wfd)
            pids.append((pid, rfd))
        for i, (pid, rfd) in enumerate(pids):
            chunks = []
            while True:
                buf = os.read(rfd, 1 << 16)
                if not buf:
                    break
                chunks.append(buf)
            os.close(rfd)
            os.waitpid(pid, 0)
            if chunks:
                obs, err = pickle.loads(b"".join(chunks))
            else:
                obs, err = [], "child died without a report"
            self._merge(f"[p{i}] ", obs, err)


# ---------------------------------------------------------------------------
# running and comparing

@dataclass
class CaseResult:
    name: str
    obs: list[tuple[str, Any]]
    error: str | None          # the case itself raised (a case bug on the oracle side)


def run_case(c: Case, root: Path, timeout: float = CASE_TIMEOUT) -> CaseResult:
    """Run one case in a fresh subdirectory ``root/<name>`` inside a forked child."""
    d = root / c.name
    os.mkdir(d, 0o755)
    os.chmod(d, 0o755)

    def body(rec: Recorder) -> None:
        os.umask(0o022)
        os.chdir(d)
        c.fn(Ctx(d, rec, timeout))

    obs, err = _run_forked(body, {}, timeout)
    return CaseResult(c.name, obs, err)


def fmt_obs(value: Any) -> str:
    if isinstance(value, tuple) and value and value[0] == "err":
        return f"error {value[1]}"
    if isinstance(value, tuple) and value and value[0] == "ok":
        return "ok" if len(value) == 1 else f"ok -> {value[1]!r}"
    return repr(value)


def compare(a: CaseResult, b: CaseResult, name_a: str = "tmpfs",
            name_b: str = "other") -> list[str]:
    """Human-readable differences between two runs of one case (empty = identical)."""
    diffs: list[str] = []
    for i, (oa, ob) in enumerate(zip(a.obs, b.obs, strict=False)):
        if oa == ob:
            continue
        if oa[0] != ob[0]:
            diffs.append(f"step {i}: the runs took different paths: {name_a} did "
                         f"{oa[0]!r}, {name_b} did {ob[0]!r}")
            break
        diffs.append(f"step {i} {oa[0]}: {name_a} said {fmt_obs(oa[1])}; "
                     f"{name_b} said {fmt_obs(ob[1])}")
    else:
        if len(a.obs) != len(b.obs):
            longer, who = (a, name_a) if len(a.obs) > len(b.obs) else (b, name_b)
            extra = longer.obs[min(len(a.obs), len(b.obs))]
            diffs.append(f"only {who} went on to step {extra[0]!r} -> {fmt_obs(extra[1])} "
                         f"({len(a.obs)} vs {len(b.obs)} steps)")
    if a.error != b.error:
        diffs.append(f"case ended: {name_a}: {a.error or 'normally'}; "
                     f"{name_b}: {b.error or 'normally'}")
    return diffs


def load_cases() -> dict[str, Case]:
    """Import every ``cases_*`` module so the registry is complete."""
    import importlib
    import pkgutil

    pkg = Path(__file__).parent
    for mod in sorted(pkgutil.iter_modules([str(pkg)]), key=lambda m: m.name):
        if mod.name.startswith("cases_"):
            importlib.import_module(f"{__package__}.{mod.name}")
    return dict(sorted(REGISTRY.items()))
