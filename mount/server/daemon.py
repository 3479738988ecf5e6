"""The daemon's life: build the filesystem, mount it, serve until unmounted.

Called by the ``shmfs`` command in the process that will serve (the forked
daemon, or the foreground process with -f); ``report`` tells the waiting
parent "ok" once FUSE_INIT is answered, or why mounting failed.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from pathlib import Path

from mount.mounting import kernel as mounting
from mount.mounting.options import MountOptions, default_limits

log = logging.getLogger("shmfs")

READAHEAD_KIB = 1024  # one READ request's worth (max_pages = 256)


def run_daemon(mnt: Path, opts: MountOptions, debug: bool, report: Callable[[str], None]) -> int:
    """Mount, serve until unmounted, return the exit status."""
    import trio

    from fsimpl import FsOptions, ShmFs
    from mount.server.cpulatency import CpuLatencyHold
    from mount.server.ops import Operations, OpsConfig
    from mount.server.session import Session

    size, inodes = default_limits()
    fs_opts = FsOptions(
        size_bytes=opts.size_bytes if opts.size_given else size,
        nr_inodes=opts.nr_inodes if opts.nr_inodes_given else inodes,
        mode=opts.mode,
        uid=opts.uid,
        gid=opts.gid,
    )
    fs = ShmFs(fs_opts)
    try:
        fd = mounting.mount(
            mounting.MountRequest(
                mountpoint=mnt,
                root_mode=opts.mode,
                allow_other=opts.allow_other,
                ms_flags=opts.ms_flags,
            )
        )
    except mounting.MountError as e:
        report(str(e))
        return 1
    ops = Operations(fs, OpsConfig(writeback_cache=opts.writeback_cache))

    def ready() -> None:
        if os.geteuid() == 0:
            mounting.set_readahead(mnt, READAHEAD_KIB)
        report("ok")

    session = Session(fd, ops, mnt, on_ready=ready, debug=debug,
                      cpu_latency=CpuLatencyHold(opts.cpu_latency_us), readers=opts.readers)
    try:
        trio.run(session.serve)
    except KeyboardInterrupt:
        pass
    except Exception:
        log.exception("session failed")
        report("session failed; see the log")
        return 1
    finally:
        os.close(fd)
    return 0
