"""``shmfs``: mount a shmfs, or talk to a mounted one.

    shmfs [SOURCE] MOUNTPOINT [-o size=,nr_inodes=,mode=,uid=,gid=,allow_other] [-f] [--debug]
    shmfs unmount MOUNTPOINT        (also clears a dead mount: "Transport endpoint ...")
    shmfs restart MOUNTPOINT        (-o restartable: replace the server, files stay open)
    shmfs run [--] PROGRAM ARGS...  (remap_file_pages on shmfs for an unmodified PROGRAM)
    shmfs --version

``shmfs SOURCE MOUNTPOINT -o OPTIONS`` is how mount.fuse3 runs a filesystem
for ``mount -t fuse.shmfs SOURCE MOUNTPOINT``, /etc/fstab and systemd .mount
units: SOURCE is a free label shown in /proc/mounts (as ``tmpfs`` is for a
tmpfs), and ``-o remount,...`` (what mount.fuse3 passes for ``mount -o
remount``) changes a mounted shmfs instead (mount/cli/remount.py).

Without -f the command returns only once the filesystem answers requests
(the daemon reports readiness through a pipe after FUSE_INIT), like
``mount -t tmpfs`` returns once the mount exists.
"""

from __future__ import annotations

import argparse
import errno
import importlib.metadata
import logging
import os
import stat
import sys
from collections.abc import Callable
from pathlib import Path

from mount.mounting import kernel as mounting
from mount.mounting.options import MountOptions, OptionError, parse_options
from mount.server.daemon import run_daemon

log = logging.getLogger("shmfs")

SUBCOMMANDS = ("unmount", "window", "stat", "remount", "run", "restart")


def _mount_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="shmfs",
        description="Mount a tmpfs-like filesystem served from userspace over FUSE.",
        epilog="Other commands: 'shmfs unmount MOUNTPOINT', 'shmfs stat MOUNTPOINT', "
               "'shmfs restart MOUNTPOINT', "
               "'shmfs remount MOUNTPOINT -o size=,nr_inodes=', "
               "'shmfs window create|remap|protect|madvise|query|destroy ...', "
               "'shmfs run [--] PROGRAM ARGS...'.",
    )
    p.add_argument("source", nargs="?", default="shmfs",
                   help="a label shown as the source in /proc/mounts (default: shmfs)")
    p.add_argument("mountpoint", type=Path)
    p.add_argument("-o", dest="options", action="append", default=[],
                   help="size=,nr_blocks=,nr_inodes=,mode=,uid=,gid=,allow_other, "
                        "suid/nosuid,dev/nodev,exec/noexec,noatime,relatime,strictatime,"
                        "nodiratime,lazytime (as tmpfs); pt_size=, cpu_latency=US|off, "
                        "oom_score_adj=N, writeback_cache, readers=1|2|3, "
                        "uring=off|auto|on, restartable (shmfs's own; README.md); "
                        "mount(8)-only options (defaults,noauto,user,_netdev,nofail,x-*) "
                        "are ignored")
    p.add_argument("--version", action="version", version=f"shmfs {version()}")
    p.add_argument("-f", "--foreground", action="store_true", help="do not daemonise")
    p.add_argument("--debug", action="store_true", help="log every request (implies -f)")
    p.add_argument("--log", type=Path, help="log file for the daemon (default: none)")
    p.add_argument("--pidfile", type=Path, help="write the daemon's pid here once mounted")
    p.add_argument("--ready-fd", type=int, help=argparse.SUPPRESS)
    return p


def version() -> str:
    """The installed package's version (pyproject.toml)."""
    try:
        return importlib.metadata.version("shmfs")
    except importlib.metadata.PackageNotFoundError:
        return "unknown (not installed)"


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``shmfs`` console script."""
    args = list(sys.argv[1:] if argv is None else argv)
    if args and args[0] in SUBCOMMANDS:
        return _subcommand(args[0], args[1:])
    ns = _mount_parser().parse_args(args)
    try:
        opts = parse_options(",".join(ns.options), uid=os.getuid(), gid=os.getgid())
    except OptionError as e:
        print(f"shmfs: {e}", file=sys.stderr)
        return 2
    if opts.remount:  # mount -o remount,... through mount.fuse3
        from mount.cli import remount

        return remount.apply(ns.mountpoint, opts)
    problem = _check_mountpoint(ns.mountpoint) or _check_files(ns.log, ns.pidfile)
    if problem:
        print(f"shmfs: {problem}", file=sys.stderr)
        return 2
    if opts.restartable and opts.readers > 1:
        # a cloned fd's requests are ended (ECONNABORTED) when the dying server's clone
        # closes, instead of waiting for the resend (fs/fuse/dev.c fuse_dev_release)
        print("shmfs: -o restartable serves with one reader; drop readers=2", file=sys.stderr)
        return 2
    if opts.restartable and opts.uring == "on":
        # the io_uring queues belong to the serving process's ring, which dies with it;
        # resending them to the next server is neither built nor tested (uring=auto
        # means /dev/fuse on a restartable mount: the child never asks for a ring)
        print("shmfs: -o restartable cannot be combined with -o uring", file=sys.stderr)
        return 2
    mnt = Path(os.path.realpath(ns.mountpoint))
    foreground = ns.foreground or ns.debug
    if opts.restartable:
        return _supervise(mnt, opts, ns, foreground)
    if foreground:
        _setup_logging(ns.debug, ns.log, to_stderr=True)
        ready_fd = ns.ready_fd
        return run_daemon(mnt, opts, ns.debug, _ready_writer(ready_fd, ns.pidfile), ns.source)
    return _daemonise(mnt, opts, ns)


def not_shmfs(path: Path) -> str | None:
    """Why path is not the mountpoint of a shmfs (alive or dead), or None if it is.
    Read from /proc/self/mountinfo only: a dead mount cannot be stat()ed."""
    fstype = mounting.mount_fstype(path)
    if fstype is None:
        return "not a mount point"
    if fstype != "fuse.shmfs":
        return f"not a shmfs mount (it is {fstype}); use umount(8) for other filesystems"
    return None


def _check_mountpoint(path: Path) -> str | None:
    """Why path cannot be mounted on, in words a user can act on; None if it can."""
    try:
        st = os.stat(path)
    except OSError as e:
        if e.errno == errno.ENOTCONN:
            return (f"{path} is a dead mount (its daemon is gone: 'Transport endpoint is "
                    f"not connected'); clear it with: shmfs unmount -z {path}")
        return f"mountpoint {path}: {e.strerror}"
    if not stat.S_ISDIR(st.st_mode):
        return f"mountpoint {path} is not a directory"
    return None


def _check_files(log: Path | None, pidfile: Path | None) -> str | None:
    """Why --log or --pidfile cannot be written, before anything is mounted: found
    later, the daemon died after the mount (a traceback with -f; a dead mount left
    behind for a pidfile). The log is opened for appending as the daemon will open it;
    the pidfile's directory must let us create it."""
    if log is not None:
        try:
            with open(log, "a"):
                pass
        except OSError as e:
            return f"--log {log}: {e.strerror}"
    if pidfile is not None:
        where = pidfile.parent
        if pidfile.is_dir():
            return f"--pidfile {pidfile}: Is a directory"
        if not where.is_dir():
            return f"--pidfile {pidfile}: No such directory {where}"
        if not os.access(where, os.W_OK | os.X_OK) and not os.access(pidfile, os.W_OK):
            return f"--pidfile {pidfile}: Permission denied"
    return None


def _setup_logging(debug: bool, path: Path | None, *, to_stderr: bool) -> None:
    handlers: list[logging.Handler] = []
    if path is not None:
        handlers.append(logging.FileHandler(path))
    if to_stderr:
        handlers.append(logging.StreamHandler(sys.stderr))
    if not handlers:
        handlers.append(logging.NullHandler())
    logging.basicConfig(
        level=logging.DEBUG if debug else logging.INFO,
        format="%(asctime)s shmfs[%(process)d] %(levelname)s %(name)s: %(message)s",
        handlers=handlers,
        force=True,
    )


def _ready_writer(fd: int | None, pidfile: Path | None = None) -> Callable[[str], None]:
    def report(status: str) -> None:
        if status == "ok" and pidfile is not None:
            pidfile.write_text(f"{os.getpid()}\n")
        if fd is None:
            if status != "ok":
                print(f"shmfs: {status}", file=sys.stderr)
            return
        try:
            os.write(fd, status.encode())
            os.close(fd)
        except OSError:
            pass

    return report


def _supervise(mnt: Path, opts: MountOptions, ns: argparse.Namespace, foreground: bool) -> int:
    """-o restartable: this process becomes the supervisor (mount/server/supervisor.py);
    the pidfile names its serving child."""
    from mount.server.supervisor import run_supervisor

    def run(report: Callable[[str], None]) -> int:
        return run_supervisor(mnt, opts, ",".join(ns.options), source=ns.source,
                              debug=ns.debug, log_path=ns.log, foreground=foreground,
                              report=report, pidfile=ns.pidfile)

    if foreground:
        _setup_logging(ns.debug, ns.log, to_stderr=True)
        return run(_ready_writer(ns.ready_fd))
    return _daemonise(mnt, opts, ns, run)


def _daemonise(mnt: Path, opts: MountOptions, ns: argparse.Namespace,
               run: Callable[[Callable[[str], None]], int] | None = None) -> int:
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the daemon
        os.close(r)
        os.setsid()
        devnull = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1, 2):
            os.dup2(devnull, fd)
        os.close(devnull)
        _setup_logging(False, ns.log, to_stderr=False)
        code = 1
        try:
            if run is not None:
                code = run(_ready_writer(w))
            else:
                code = run_daemon(mnt, opts, False, _ready_writer(w, ns.pidfile), ns.source)
        finally:
            os._exit(code)
    os.close(w)
    chunks = []
    while chunk := os.read(r, 4096):
        chunks.append(chunk)
    os.close(r)
    status = b"".join(chunks).decode(errors="replace")
    if status == "ok":
        return 0
    print(f"shmfs: {status or 'the daemon exited before the mount was ready'}", file=sys.stderr)
    return 1


def _subcommand(name: str, argv: list[str]) -> int:
    if name == "run":  # remap_file_pages for unmodified programs: mount/cli/run.py
        from mount.cli import run

        return run.main(argv)
    if name == "restart":
        return _restart(argv)
    if name == "remount":
        from mount.cli import remount

        return remount.main(argv)
    if name in ("window", "stat"):  # window files and statistics: mount/cli/window.py
        from mount.cli import window as wincli

        return wincli.window_main(argv) if name == "window" else wincli.stat_main(argv)
    if name == "unmount":
        p = argparse.ArgumentParser(prog="shmfs unmount",
                                    description="Unmount a shmfs, or clear a dead one.")
        p.add_argument("mountpoint", type=Path)
        p.add_argument("-z", "--lazy", action="store_true")
        ns = p.parse_args(argv)
        problem = not_shmfs(ns.mountpoint)
        if problem:
            print(f"shmfs: unmount {ns.mountpoint}: {problem}", file=sys.stderr)
            return 1
        try:
            mounting.unmount(ns.mountpoint.absolute(), lazy=ns.lazy)
        except mounting.MountError as e:
            busy = e.errno == errno.EBUSY or "busy" in str(e)
            print(f"shmfs: unmount {ns.mountpoint}: target is busy (a process has a file or "
                  f"its working directory there); 'shmfs unmount -z' detaches it now, the "
                  f"daemon ends when the last file is closed" if busy else f"shmfs: {e}",
                  file=sys.stderr)
            return 1
        return 0
    raise AssertionError(name)


def _restart(argv: list[str]) -> int:
    """``shmfs restart MOUNTPOINT``: the supervisor replaces the serving process with
    the code now installed; open files, mmaps and windows stay (docs/reliability.md)."""
    p = argparse.ArgumentParser(
        prog="shmfs restart",
        description="Replace the server of a restartable shmfs (-o restartable) with the "
                    "code now installed; files stay open and mapped.")
    p.add_argument("mountpoint", type=Path)
    p.add_argument("--timeout", type=float, default=60.0,
                   help="seconds to wait for the new server (default 60)")
    ns = p.parse_args(argv)
    from mount.server.supervisor import request_restart

    ok, message = request_restart(ns.mountpoint.absolute(), ns.timeout)
    if not ok:
        print(f"shmfs: restart {ns.mountpoint}: {message}", file=sys.stderr)
        return 1
    words = message.split()
    print(f"shmfs: {ns.mountpoint}: serving again (process {words[1]}, generation "
          f"{words[2]})" if len(words) == 3 else f"shmfs: {message}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
