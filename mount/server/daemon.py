"""The daemon's life: build the filesystem, mount it, serve until unmounted.

Called by the ``shmfs`` command in the process that will serve (the forked
daemon, or the foreground process with -f); ``report`` tells the waiting
parent "ok" once FUSE_INIT is answered, or why mounting failed.

Before mounting, the daemon protects itself from the OOM killer as system
daemons do: it holds every file's data as its own memory, so by the kernel's
measure (oom_badness: rss + swap + page tables) it would otherwise be the
first process killed, and all files would go with it, where a kernel tmpfs
keeps its pages and the kernel kills the memory hog. As root it sets
``oom_score_adj`` to -900 (``oom_score_adj=N`` to choose); a normal user may
only raise its value, so without the option nothing is changed
(docs/reliability.md).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from pathlib import Path

from mount.mounting import kernel as mounting
from mount.mounting.options import MountOptions, default_limits, default_oom_score_adj

log = logging.getLogger("shmfs")

READAHEAD_KIB = 1024  # one READ request's worth (max_pages = 256)


def set_oom_score_adj(value: int | None, *, explicit: bool) -> str | None:
    """Write /proc/self/oom_score_adj; the reason it failed, or None. A failure
    of the default (not ``explicit``) is only logged: the mount still works."""
    if value is None:
        return None
    try:
        with open("/proc/self/oom_score_adj", "w") as f:
            f.write(str(value))
    except OSError as e:
        why = (f"cannot set oom_score_adj={value}: {e.strerror} (lowering it needs "
               "CAP_SYS_RESOURCE; a normal user may only raise it)")
        if explicit:
            return why
        log.warning("%s", why)
        return None
    log.info("oom_score_adj=%d", value)
    return None


def run_daemon(mnt: Path, opts: MountOptions, debug: bool, report: Callable[[str], None],
               source: str = "shmfs") -> int:
    """Mount ``source`` on ``mnt``, serve until unmounted, return the exit status."""
    import trio

    from fsimpl import FsOptions, ShmFs
    from mount.server.cpulatency import CpuLatencyHold
    from mount.server.mountflags import MountFlagsWatch
    from mount.server.ops import Operations, OpsConfig
    from mount.server.session import Session

    size, inodes = default_limits()
    fs_opts = FsOptions(
        size_bytes=opts.size_bytes if opts.size_given else size,
        nr_inodes=opts.nr_inodes if opts.nr_inodes_given else inodes,
        mode=opts.mode,
        uid=opts.uid,
        gid=opts.gid,
        pt_size_bytes=opts.pt_size_bytes,
    )
    explicit = opts.oom_score_adj is not None
    problem = set_oom_score_adj(opts.oom_score_adj if explicit else default_oom_score_adj(),
                                explicit=explicit)
    if problem:
        report(problem)
        return 1
    # -o uring: decided before mounting, so that uring=on fails with its reason
    # instead of mounting something else (mount/server/uring_fuse.py)
    from mount.server.uring_fuse import UringUnavailable, resolve

    try:
        uring = resolve(opts.uring, readers=opts.readers)
    except UringUnavailable as e:
        report(str(e))
        return 1
    fs = ShmFs(fs_opts)
    try:
        fd = mounting.mount(
            mounting.MountRequest(
                mountpoint=mnt,
                root_mode=opts.mode,
                allow_other=opts.allow_other,
                fsname=source,
                ms_flags=opts.ms_flags,
            )
        )
    except mounting.MountError as e:
        report(str(e))
        return 1
    flags = MountFlagsWatch(mnt)
    fs.atime_mode = flags
    # strictatime: every readlink moves atime, so the kernel may not cache targets
    strict = not (flags.mode.relatime or flags.mode.noatime)
    ops = Operations(fs, OpsConfig(cache_symlinks=not strict,
                                    writeback_cache=opts.writeback_cache))

    def ready() -> None:
        if os.geteuid() == 0:
            mounting.set_readahead(mnt, READAHEAD_KIB)
        report("ok")

    session = Session(fd, ops, mnt, on_ready=ready, debug=debug,
                      cpu_latency=CpuLatencyHold(opts.cpu_latency_us), readers=opts.readers,
                      uring=uring)
    try:
        trio.run(session.serve)
    except KeyboardInterrupt:
        pass
    except Exception:
        log.exception("session failed")
        report("session failed; see the log")
        return 1
    finally:
        flags.close()
        os.close(fd)
    return 0
