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

import faulthandler
import json
import logging
import os
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from mount.mounting import kernel as mounting
from mount.mounting.options import MountOptions, default_limits, default_oom_score_adj
from mount.server import devabort

if TYPE_CHECKING:
    from mount.server.session import Session
    from mount.server.supervisor import ChildConfig

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


def _fs_options(opts: MountOptions) -> object:
    """fsimpl's FsOptions from the mount options (tmpfs's defaults for size and inodes)."""
    from fsimpl import FsOptions

    size, inodes = default_limits()
    return FsOptions(
        size_bytes=opts.size_bytes if opts.size_given else size,
        nr_inodes=opts.nr_inodes if opts.nr_inodes_given else inodes,
        mode=opts.mode,
        uid=opts.uid,
        gid=opts.gid,
        pt_size_bytes=opts.pt_size_bytes,
    )


def _operations(fs: object, flags: object, opts: MountOptions) -> object:
    """The request handlers over ``fs``, with the mount's atime mode wired in."""
    from mount.server.ops import Operations, OpsConfig

    fs.atime_mode = flags  # type: ignore[attr-defined]
    # strictatime: every readlink moves atime, so the kernel may not cache targets
    strict = not (flags.mode.relatime or flags.mode.noatime)  # type: ignore[attr-defined]
    return Operations(fs, OpsConfig(cache_symlinks=not strict,
                                    writeback_cache=opts.writeback_cache))


def protect_from_oom(opts: MountOptions, report: Callable[[str], None]) -> bool:
    """Apply ``oom_score_adj=`` (or the default as root) to this process; False (and
    the reason reported) when an explicit value could not be set."""
    explicit = opts.oom_score_adj is not None
    problem = set_oom_score_adj(opts.oom_score_adj if explicit else default_oom_score_adj(),
                                explicit=explicit)
    if problem:
        report(problem)
        return False
    return True


def run_daemon(mnt: Path, opts: MountOptions, debug: bool, report: Callable[[str], None],
               source: str = "shmfs") -> int:
    """Mount ``source`` on ``mnt``, serve until unmounted, return the exit status."""
    from fsimpl import ShmFs
    from mount.server.cpulatency import CpuLatencyHold
    from mount.server.mountflags import MountFlagsWatch
    from mount.server.session import Session

    fs_opts = _fs_options(opts)
    if not protect_from_oom(opts, report):
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
    devabort.serving(mnt)  # which connection this is, for the log (devabort.aborted)
    flags = MountFlagsWatch(mnt)
    ops = _operations(fs, flags, opts)

    def ready() -> None:
        if os.geteuid() == 0:
            mounting.set_readahead(mnt, READAHEAD_KIB)
        report("ok")

    session = Session(fd, ops, mnt, on_ready=ready, debug=debug,
                      cpu_latency=CpuLatencyHold(opts.cpu_latency_us), readers=opts.readers,
                      uring=uring)
    try:
        if not serve(session):
            report("session failed; see the log")
            return 1
    finally:
        flags.close()
        os.close(fd)
    return 0


def serve(session: Session) -> bool:
    """Run ``session`` until the mount ends (the plain daemon and a restartable
    mount's child alike): True, or False once the failure is logged. SIGINT in
    the foreground (KeyboardInterrupt) is an ordinary end."""
    import trio

    try:
        trio.run(session.serve)
    except KeyboardInterrupt:
        pass
    except Exception:
        log.exception("session failed")
        return False
    return True


def run_child(cfg: ChildConfig) -> int:
    """The serving child of a restartable mount (mount/server/supervisor.py): attach to
    (or, in generation 0, create) the memfds, rebuild the state, serve. Exit status
    EXIT_UNMOUNTED once the mount is gone; EXIT_NO_RESTART if this mount can never
    be served; anything else makes the supervisor start another child."""
    from fsimpl import ShmFs
    from mount.mounting.options import OptionError, parse_options
    from mount.server.cpulatency import CpuLatencyHold
    from mount.server.mountflags import MountFlagsWatch
    from mount.server.persist import Persist
    from mount.server.session import Session
    from mount.server.supervisor import EXIT_NO_RESTART, EXIT_UNMOUNTED, ControlChannel

    ctl = ControlChannel(cfg.ctl_fd)
    mnt = Path(cfg.mountpoint)
    try:
        opts = parse_options(cfg.options, uid=cfg.uid, gid=cfg.gid)
    except OptionError as e:
        ctl.fail(str(e))
        return EXIT_NO_RESTART
    fs_opts = _fs_options(opts)
    flags = MountFlagsWatch(mnt)
    t0 = time.monotonic()
    if cfg.fds:
        persist = Persist.attach(cfg.fds, ctl.keep)
    else:
        persist = Persist.create(ctl.keep)

    def build(fs_kwargs: dict) -> object:
        fs = ShmFs(fs_opts, **fs_kwargs)
        # a populating REMAP prefaults but pushes no NOTIFY_STORE: whether a dead
        # server's queued stores reached the kernel is unknowable, and the routing of
        # a pushed page's write-back depends on it (fsimpl/wincoherence.py _push)
        fs.push_stores = False  # type: ignore[attr-defined]
        return _operations(fs, flags, opts)

    ops, info = persist.recover(build)
    log.info("generation %d: state recovered in %.3f s (%s records replayed, %d replies "
             "kept, %d inodes cached by the kernel)", cfg.generation, time.monotonic() - t0,
             getattr(info, "records", "?"), len(getattr(info, "replies", ()) or ()),
             len(getattr(info, "cached_inodes", ()) or ()))

    def ready() -> None:
        if cfg.generation == 0 and os.geteuid() == 0:
            mounting.set_readahead(mnt, READAHEAD_KIB)
        ctl.ready()

    devabort.serving(mnt)
    session = Session(cfg.fuse_fd, ops, mnt, on_ready=ready, debug=cfg.debug,
                      cpu_latency=CpuLatencyHold(opts.cpu_latency_us), readers=1,
                      persist=persist, recovered=info if cfg.generation > 0 else None,
                      refuse=ctl.fail)
    try:
        code = EXIT_UNMOUNTED if serve(session) else 1
    finally:
        flags.close()
        close = getattr(persist, "close", None)
        if close is not None:
            close()
    if session.refused:
        return EXIT_NO_RESTART
    if code == EXIT_UNMOUNTED:
        ctl.bye()
    return code


def _child_logging(cfg: ChildConfig) -> None:
    handlers: list[logging.Handler] = []
    if cfg.log:
        handlers.append(logging.FileHandler(cfg.log))
    if cfg.foreground:
        handlers.append(logging.StreamHandler(sys.stderr))
    logging.basicConfig(
        level=logging.DEBUG if cfg.debug else logging.INFO,
        format="%(asctime)s shmfs[%(process)d] %(levelname)s %(name)s: %(message)s",
        handlers=handlers or [logging.NullHandler()], force=True)


def _wait_as_spare(ctl_fd: int) -> ChildConfig | None:
    """A spare child (mount/server/supervisor.py): import everything a server needs,
    then wait for the supervisor's "go" -- the configuration, and the descriptors by
    SCM_RIGHTS -- so that a restart costs no interpreter start and no imports.
    None: the supervisor closed the socket (no longer needed)."""
    import array
    import socket

    import fsimpl  # noqa: F401 -- the point of a spare: imported before it is needed
    import mount.server.persist
    import mount.server.session  # noqa: F401
    from mount.server.supervisor import ChildConfig

    sock = socket.socket(fileno=ctl_fd)
    msg, anc, _flags, _addr = sock.recvmsg(1 << 16, socket.CMSG_SPACE(4 * 64))
    sock.detach()  # the fd stays open: it is the child's control socket from now on
    if not msg:
        return None
    doc = json.loads(msg)
    fds = array.array("i")
    for level, kind, data in anc:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            fds.frombytes(data[: len(data) - len(data) % fds.itemsize])
    cfg = ChildConfig.from_json(doc["config"])
    cfg.ctl_fd = ctl_fd
    cfg.fuse_fd = fds[0]
    cfg.fds = dict(zip(doc["names"], fds[1:], strict=True))
    return cfg


def child_main(argv: list[str]) -> int:
    """``python -m mount.server.daemon --child CTLFD JSON`` or ``--spare CTLFD``
    (started by the supervisor, never by hand)."""
    from mount.server.supervisor import EXIT_UNMOUNTED, ChildConfig

    if len(argv) == 3 and argv[0] == "--child":
        cfg = ChildConfig.from_json(argv[2])
        cfg.ctl_fd = int(argv[1])
    elif len(argv) == 2 and argv[0] == "--spare":
        spare = _wait_as_spare(int(argv[1]))
        if spare is None:
            return EXIT_UNMOUNTED
        cfg = spare
    else:
        print("usage: python -m mount.server.daemon --child CTLFD CONFIG | --spare CTLFD "
              "(started by shmfs)", file=sys.stderr)
        return 2
    _child_logging(cfg)
    # `kill -USR1 PID` prints every thread's stack to the log: what a hung server waits on
    faulthandler.register(signal.SIGUSR1, all_threads=True)
    return run_child(cfg)


if __name__ == "__main__":
    sys.exit(child_main(sys.argv[1:]))
