"""Build of the C extensions (everything else is in pyproject.toml).

``mount.server._winfast`` (native/winfast.c): the window REMAP fast path and its
notification writer thread (docs/decisions.md, docs/performance.md).  The
editable install that scripts/bootstrap.sh runs (``pip install -e .``) compiles
it; without a compiler the daemon logs a warning and serves REMAP in Python.
Other extensions: one ``Extension`` line each in EXTENSIONS.
"""

from setuptools import Extension, setup

EXTENSIONS = [
    Extension("mount.server._winfast", ["native/winfast.c"],
              extra_compile_args=["-O2", "-Wall", "-Wextra", "-Wno-unused-parameter",
                                  "-Wno-missing-field-initializers"]),
]

setup(ext_modules=EXTENSIONS)
