"""Hypothesis state machine: namespace operations against a tiny model.

The model is a dict of directories (path tuple -> set of child names) and a
dict of files (inode -> link count); every step compares ShmFs's view (lookup,
readdir, nlink, directory size) with it. Errors are predicted by the model:
whenever the model says an operation must fail, ShmFs must fail with that errno.
"""

from __future__ import annotations

import errno
import stat

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from fsimpl import FsError, FsOptions, ShmFs
from fsimpl.backing import Backing

from .conftest import ROOT

NAMES = st.sampled_from([b"a", b"b", b"c", b"d"])
DIRS = st.sampled_from([(), ("a",), ("b",), ("a", "b"), ("b", "c"), ("c",)])


class Namespace(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.backing = Backing(0)
        self.fs = ShmFs(FsOptions(), backing=self.backing)
        # model: path -> ("d", None) or ("f", file_id); files: file_id -> nlink
        self.tree: dict[tuple[str, ...], tuple[str, int]] = {(): ("d", 1)}
        self.ino: dict[tuple[str, ...], int] = {(): 1}
        self.links: dict[int, int] = {}

    def teardown(self) -> None:
        self.backing.arena.close()

    # -- helpers
    def children(self, d: tuple[str, ...]) -> list[tuple[str, ...]]:
        return [p for p in self.tree if len(p) == len(d) + 1 and p[: len(d)] == d]

    def expect(self, code: int | None, fn, *args) -> bool:
        try:
            fn(*args)
        except FsError as e:
            assert code == e.errno, (fn.__name__, args, e)
            return False
        assert code is None, (fn.__name__, args, "should fail", code)
        return True

    def is_dir(self, p: tuple[str, ...]) -> bool:
        return p in self.tree and self.tree[p][0] == "d"

    # -- rules
    @rule(d=DIRS, n=NAMES)
    def create(self, d: tuple[str, ...], n: bytes) -> None:
        if not self.is_dir(d):
            return
        p = (*d, n.decode())
        code = errno.EEXIST if p in self.tree else None
        if self.expect(code, self.fs.mknod, self.ino[d], n, stat.S_IFREG | 0o644, 0, ROOT):
            ino = self.fs.lookup(self.ino[d], n).ino
            self.tree[p] = ("f", ino)
            self.ino[p] = ino
            self.links[ino] = 1

    @rule(d=DIRS, n=NAMES)
    def mkdir(self, d: tuple[str, ...], n: bytes) -> None:
        if not self.is_dir(d):
            return
        p = (*d, n.decode())
        code = errno.EEXIST if p in self.tree else None
        if self.expect(code, self.fs.mkdir, self.ino[d], n, 0o755, ROOT):
            self.tree[p] = ("d", 0)
            self.ino[p] = self.fs.lookup(self.ino[d], n).ino

    @rule(d=DIRS, n=NAMES)
    def unlink(self, d: tuple[str, ...], n: bytes) -> None:
        if not self.is_dir(d):
            return
        p = (*d, n.decode())
        code = (
            None
            if p in self.tree and not self.is_dir(p)
            else (errno.EISDIR if p in self.tree else errno.ENOENT)
        )
        if self.expect(code, self.fs.unlink, self.ino[d], n):
            self.links[self.tree[p][1]] -= 1
            del self.tree[p], self.ino[p]

    @rule(d=DIRS, n=NAMES)
    def rmdir(self, d: tuple[str, ...], n: bytes) -> None:
        if not self.is_dir(d):
            return
        p = (*d, n.decode())
        if p not in self.tree:
            code: int | None = errno.ENOENT
        elif not self.is_dir(p):
            code = errno.ENOTDIR
        elif self.children(p):
            code = errno.ENOTEMPTY
        else:
            code = None
        if self.expect(code, self.fs.rmdir, self.ino[d], n):
            del self.tree[p], self.ino[p]

    @rule(src=DIRS, n=NAMES, d=DIRS, m=NAMES)
    def link(self, src: tuple[str, ...], n: bytes, d: tuple[str, ...], m: bytes) -> None:
        s = (*src, n.decode())
        if s not in self.tree or not self.is_dir(d):
            return
        t = (*d, m.decode())
        if self.is_dir(s):
            code: int | None = errno.EPERM
        elif t in self.tree:
            code = errno.EEXIST
        else:
            code = None
        if self.expect(code, self.fs.link, self.ino[s], self.ino[d], m):
            self.tree[t] = self.tree[s]
            self.ino[t] = self.ino[s]
            self.links[self.tree[s][1]] += 1

    @rule(sd=DIRS, n=NAMES, dd=DIRS, m=NAMES)
    def rename(self, sd: tuple[str, ...], n: bytes, dd: tuple[str, ...], m: bytes) -> None:
        if not self.is_dir(sd) or not self.is_dir(dd):
            return
        s, t = (*sd, n.decode()), (*dd, m.decode())
        if s not in self.tree:
            code: int | None = errno.ENOENT
        elif self.is_dir(s) and t[: len(s)] == s and t != s:
            code = errno.EINVAL
        elif t in self.tree and self.ino[t] == self.ino[s]:
            code = None
        elif t in self.tree and self.is_dir(t) and not self.is_dir(s):
            code = errno.EISDIR
        elif t in self.tree and self.is_dir(s) and not self.is_dir(t):
            code = errno.ENOTDIR
        elif t in self.tree and self.is_dir(t) and self.children(t):
            code = errno.ENOTEMPTY
        else:
            code = None
        if not self.expect(code, self.fs.rename, self.ino[sd], n, self.ino[dd], m):
            return
        if t in self.tree and self.ino[t] == self.ino[s]:
            return
        if t in self.tree:
            if not self.is_dir(t):
                self.links[self.tree[t][1]] -= 1
            del self.tree[t], self.ino[t]
        moved = {p: v for p, v in self.tree.items() if p[: len(s)] == s}
        for p, v in moved.items():
            q = t + p[len(s) :]
            del self.tree[p]
            ino = self.ino.pop(p)
            self.tree[q] = v
            self.ino[q] = ino

    # -- invariants
    @invariant()
    def matches_model(self) -> None:
        for p, (kind, fid) in self.tree.items():
            a = self.fs.getattr(self.ino[p])
            if kind == "d":
                subdirs = [c for c in self.children(p) if self.is_dir(c)]
                assert stat.S_ISDIR(a.mode)
                assert a.nlink == 2 + len(subdirs), p
                assert a.size == 20 * (2 + len(self.children(p)))
                fh = self.fs.opendir(a.ino, 0)
                listed = {n for n, *_ in self.fs.readdir(a.ino, fh, 0)} - {b".", b".."}
                self.fs.releasedir(a.ino, fh)
                assert listed == {c[-1].encode() for c in self.children(p)}
                parent = list(self.fs.readdir(a.ino, self.fs.opendir(a.ino, 0), 0))[1][1]
                assert parent == self.ino[p[:-1] if p else ()]
            else:
                assert stat.S_ISREG(a.mode) and a.nlink == self.links[fid] and a.ino == fid


Namespace.TestCase.settings = settings(max_examples=60, stateful_step_count=40, deadline=None)
TestNamespace = Namespace.TestCase
