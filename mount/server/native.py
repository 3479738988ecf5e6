"""The optional C extensions of the server (setup.py, native/): loading one, or
saying once per process why the Python path serves instead. Each is optional so
that a machine without a C compiler still mounts; the tests that claim a native
path fail there on purpose."""

from __future__ import annotations

import importlib
import logging
from types import ModuleType

_warned: set[str] = set()


def available(name: str) -> bool:
    """Whether ``mount.server.<name>`` (a compiled extension) can be imported."""
    return load(name) is not None


def load(name: str, log: logging.Logger | None = None, what: str = "") -> ModuleType | None:
    """``mount.server.<name>``, or None; with ``log``, the first failure in this
    process is logged as a warning naming ``what`` is served in Python instead."""
    try:
        return importlib.import_module(f"mount.server.{name}")
    except ImportError as e:
        if log is not None and name not in _warned:
            _warned.add(name)
            log.warning("%s not built (%s): served in Python; run scripts/bootstrap.sh "
                        "with a C compiler to build it", what, e)
        return None
