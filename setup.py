"""Build of the C extensions (everything else is in pyproject.toml).

The editable install that scripts/bootstrap.sh runs (``pip install -e .``)
compiles them. Each is optional: where it does not build (no compiler, no
Python headers) the daemon logs a warning and uses the pure-Python path it
accelerates; the tests that claim the native paths fail then, on purpose.

- ``mount.server._winfast`` (native/winfast.c, winlaunder.c, winwrite.c, winviews.c,
  winread.c, winprot.c, winvec.c, winfsync.c): the window REMAP fast path, its
  notification writer thread, window WRITEs (the launder, write(2), write-backs)
  and READs, and the FSYNC of a file
  (docs/decisions.md 21, docs/performance.md).
- ``vmcore._ptscan`` (native/winscan.c): which page-table chunks a reverse-map
  lookup or a zap of an object range must look at (vmcore/pagetable.py).
- ``mount.server._hotpath`` (native/hotpath.c, with native/hotmeta.c #included):
  READ, WRITE, GETATTR, OPEN, RELEASE, CREATE and UNLINK of regular files, LOOKUP
  (mount/server/hotpath.py, docs/decisions.md 23).
- ``mount.server._uring_native`` (native/uring.c): the FUSE-over-io_uring
  transport (mount/server/uring_fuse.py, docs/decisions.md 17).

Other extensions: one ``Extension`` line each in EXTENSIONS.
"""

from setuptools import Extension, setup

EXTENSIONS = [
    Extension("mount.server._winfast",
              ["native/winfast.c", "native/winlaunder.c", "native/winwrite.c",
               "native/winread.c", "native/winprot.c", "native/winvec.c",
               "native/winviews.c", "native/winfsync.c"], optional=True,
              extra_compile_args=["-O2", "-Wall", "-Wextra", "-Wno-unused-parameter",
                                  "-Wno-missing-field-initializers"]),
    Extension("vmcore._ptscan", ["native/winscan.c"], optional=True,
              extra_compile_args=["-O2", "-Wall", "-Wextra", "-Wno-unused-parameter",
                                  "-Wno-missing-field-initializers"]),
    Extension("mount.server._hotpath", ["native/hotpath.c"], optional=True,
              depends=["native/hotmeta.c", "native/hotloop.c", "native/hotclone.c",  # #included
                       "native/winfast_api.h"],
              extra_compile_args=["-O2", "-Wall", "-Wextra", "-Wno-unused-parameter",
                                  "-Wno-missing-field-initializers"]),
    Extension("mount.server._uring_native", ["native/uring.c"], optional=True,
              extra_compile_args=["-O2", "-Wall"]),
]

setup(ext_modules=EXTENSIONS)
