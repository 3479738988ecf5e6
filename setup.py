"""C extensions (everything else is in pyproject.toml). Each is optional: where
it does not build, the pure-Python path it accelerates is used instead."""

from setuptools import Extension, setup

setup(
    ext_modules=[
        # FUSE over io_uring transport (mount/server/uring_fuse.py, native/uring.c)
        Extension("mount.server._uring_native", ["native/uring.c"], optional=True,
                  extra_compile_args=["-O2", "-Wall"]),
    ],
)
