"""Run the real ``mount.server.session.Session`` over a socket instead of /dev/fuse.

    python -m tests.reliability.session_driver FD

FD is one end of a ``socketpair(AF_UNIX, SOCK_SEQPACKET)``: message boundaries
are kept, so one send is one request and one reply is one recv, as on
/dev/fuse. The session serves a fresh in-memory ShmFs (size=64m) until it
handles DESTROY (a socket has no ENODEV), then this prints the session's and
the operations' statistics as one JSON line on stdout and exits 0. Any
exception that escapes the session ends the process with status 1 and a
traceback on stderr -- the fuzz tests treat that as a failure.

It runs in its own process (not a thread) because the session installs trio
signal handlers, which Python allows only in the main thread.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from pathlib import Path

import trio

from fsimpl import FsOptions, ShmFs
from mount.server.ops import Operations, OpsConfig
from mount.server.session import Session


def _count_calls(names: str) -> dict[str, int]:
    """SHMFS_DRIVER_COUNT=name,...: Session methods wrapped to count their calls (the
    counts go out with the statistics, as "calls"): a test sees what Python ran."""
    calls: dict[str, int] = {}
    for name in filter(None, names.split(",")):
        orig = getattr(Session, name)
        calls[name] = 0

        def counted(self: Session, *a: object, _o: object = orig, _n: str = name) -> object:
            calls[_n] += 1
            return _o(self, *a)  # type: ignore[operator]
        setattr(Session, name, counted)
    return calls


def main(fd: int) -> int:
    calls = _count_calls(os.environ.get("SHMFS_DRIVER_COUNT", ""))
    logging.basicConfig(level=logging.ERROR, stream=sys.stderr,
                        format="driver %(levelname)s %(name)s: %(message)s")
    fs = ShmFs(FsOptions(size_bytes=64 << 20, nr_inodes=10_000))
    ops = Operations(fs, OpsConfig())
    session = Session(fd, ops, Path("/nonexistent-shmfs-fuzz"))
    trio.run(session.serve)
    stats = {"session": session.statistics(), "ops": ops.statistics(),
             "destroyed": ops.destroyed, "calls": calls}
    print(json.dumps(stats, default=str), flush=True)
    os.close(fd)
    return 0


if __name__ == "__main__":
    sys.exit(main(int(sys.argv[1])))
