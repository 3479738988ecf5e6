"""The supervisor of a restartable mount (``-o restartable``, issue 17 part 2).

A FUSE connection lives as long as some process holds its /dev/fuse file
(fs/fuse/dev.c: fuse_dev_release aborts it only when the last one closes).
So in restartable mode ``shmfs`` stays as a small parent that mounts, holds
the /dev/fuse descriptor and the memfds the server keeps its state in, and
runs the serving process as a child::

    shmfs (supervisor: this module)           holds /dev/fuse, arena/journal/snap memfds
      └─ python -m mount.server.daemon --child  (serves; rebuilt from the memfds)

When the child dies for any reason other than a clean unmount (its exit
status 0, after the device said ENODEV), the supervisor starts a new one with
the same descriptors; the kernel keeps every caller blocked meanwhile (no
ENOTCONN), and the new child asks it to resend what the dead one had read
(FUSE_NOTIFY_RESEND, mount/server/session.py). The child is started with
exec, so ``shmfs restart MOUNTPOINT`` (a SIGKILL of the child, the same path
as a crash) runs the code now installed: a live upgrade.

**fd store.** The child makes its memfds itself (mount/server/persist) and
hands them up over a SOCK_SEQPACKET control socket with SCM_RIGHTS, under a
name (``keep arena journal snap``); the supervisor keeps the latest fd of each
name and passes them all to the next child. A message sent before the sender
was killed is still queued in the supervisor's socket, so the queue is drained
before the next child starts. Other messages: ``ready`` (serving; the pidfile
is rewritten with the child's pid), ``fail REASON`` (cannot serve at all, e.g.
a kernel without FUSE_HAS_RESEND: the mount is taken down, no restart).

**A spare.** Once a child serves, the supervisor starts a spare child that
imports everything a server needs and waits on its own control socket; at
the next death it gets the configuration and the descriptors (SCM_RIGHTS)
and only has to recover, so a restart costs no interpreter start.

**When is a child dead?** When its main thread is: a pidfd reports an exit
only once every thread is gone, and a thread of a killed server can be stuck
in the kernel (the notifier, in an invalidation waiting for a page lock that
a READ the dead server had read holds until the *next* server answers it
after the resend). So the supervisor also reads the leader's state in
/proc/PID/stat every LEADER_POLL_S, starts the next child as soon as it is a
zombie, and reaps the rest of the old one when it ends. A child that leaves
because the mount is gone says ``bye`` first.

**Restart requests** come on an abstract unix socket named after the mount's
device (``@shmfs-supervisor/MAJOR:MINOR``, found through /proc/self/mountinfo
without touching the mount), from root or the mounting user only
(SO_PEERCRED); the answer is ``ok PID`` once the new child serves.

The supervisor imports no fsimpl, vmcore, numpy or trio: it holds descriptors
and waits, so it has next to nothing to fail on. If it dies itself, the
connection ends as a non-restartable mount's does when its daemon dies
(docs/reliability.md).
"""

from __future__ import annotations

import array
import errno
import json
import logging
import os
import select
import signal
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from mount.mounting import kernel as mounting
from mount.mounting.options import MountOptions

log = logging.getLogger("shmfs.supervisor")

EXIT_UNMOUNTED = 0  # child: the device said ENODEV (or DESTROY): the mount is gone
EXIT_NO_RESTART = 3  # child: it can never serve this mount (reported with "fail")
# Children that die this soon after their start, this many times in a row, are a
# crash loop (a bug that replay hits every time): the mount is taken down.
QUICK_DEATH_S = 2.0
QUICK_DEATHS_MAX = 5
MAX_FDS_PER_MESSAGE = 16
SOCKET_PREFIX = "shmfs-supervisor/"
# How often the supervisor looks whether the serving child's main thread is gone while
# its pidfd is not readable yet (a thread of it blocked in the kernel: _child_exited).
LEADER_POLL_S = 0.05
# The restart socket is named after the connection ("major:minor"), and connection
# numbers are reused at once (the lowest free one): the supervisor of the unmounted
# mount that had this number may hold the name for a moment more (median 63 ms, up
# to 335 ms measured at load 8) while it reaps its child. Wait that long for it, no longer.
LISTEN_WAIT_S = 10.0
LISTEN_POLL_S = 0.01


def _bind_listener(dev: str, wait: float = LISTEN_WAIT_S) -> socket.socket | None:
    """The listening restart socket of connection ``dev``, or None (logged). While the
    name is taken (EADDRINUSE), it is the predecessor's on its way out (LISTEN_WAIT_S):
    looked at again every LISTEN_POLL_S until ``wait`` runs out."""
    deadline = time.monotonic() + wait
    while True:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        try:
            s.bind(socket_name(dev))
        except OSError as e:
            s.close()
            if e.errno == errno.EADDRINUSE and time.monotonic() < deadline:
                time.sleep(LISTEN_POLL_S)
                continue
            log.warning("restart socket for %s: %s", dev, e)
            return None
        s.listen(4)
        return s


def _leader_gone(pid: int) -> bool:
    """True once the main thread of ``pid`` has exited (a zombie leader), even if
    other threads of it are still alive; /proc/PID/stat's state field."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            state = f.read().rsplit(b")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True
    return state in (b"Z", b"X")


def socket_name(device: str) -> bytes:
    """The abstract socket a mount's supervisor listens on, by its "major:minor"."""
    return b"\0" + (SOCKET_PREFIX + device).encode()


@dataclass(slots=True)
class ChildConfig:
    """What the serving child needs besides its inherited descriptors (JSON on argv)."""

    mountpoint: str
    options: str
    uid: int
    gid: int
    source: str
    debug: bool
    log: str | None
    foreground: bool
    fuse_fd: int
    ctl_fd: int
    fds: dict[str, int] = field(default_factory=dict)
    generation: int = 0

    def to_json(self) -> str:
        return json.dumps({k: getattr(self, k) for k in self.__slots__})  # type: ignore[attr-defined]

    @classmethod
    def from_json(cls, text: str) -> ChildConfig:
        return cls(**json.loads(text))


# --- the child's side of the control socket -------------------------------------------------

class ControlChannel:
    """The serving child's end of the control socket (used by mount/server/daemon.py)."""

    def __init__(self, fd: int) -> None:
        self.sock = socket.socket(fileno=fd)

    def keep(self, fds: dict[str, int]) -> None:
        """Hand ``fds`` (name -> fd) to the supervisor, which keeps them for the next child."""
        items = list(fds.items())
        for i in range(0, len(items), MAX_FDS_PER_MESSAGE):
            chunk = items[i:i + MAX_FDS_PER_MESSAGE]
            names = " ".join(name for name, _ in chunk)
            self.sock.sendmsg([b"keep " + names.encode()],
                              [(socket.SOL_SOCKET, socket.SCM_RIGHTS,
                                array.array("i", [fd for _, fd in chunk]))])

    def ready(self) -> None:
        self._send(b"ready")

    def bye(self) -> None:
        """The mount is gone (ENODEV): this exit is not a death to recover from."""
        self._send(b"bye")

    def fail(self, reason: str) -> None:
        self._send(b"fail " + reason.encode(errors="replace"))

    def _send(self, msg: bytes) -> None:
        try:
            self.sock.send(msg)
        except OSError as e:  # the supervisor is gone: nothing to tell
            log.warning("control socket: %s", e)


# --- the supervisor ---------------------------------------------------------------------------

class Supervisor:
    """Mount, run serving children until the mount is gone; see the module docstring."""

    def __init__(self, mnt: Path, opts: MountOptions, option_text: str, *, source: str,
                 debug: bool, log_path: Path | None, foreground: bool,
                 report: Callable[[str], None], pidfile: Path | None) -> None:
        self.mnt = mnt
        self.opts = opts
        self.option_text = option_text
        self.source = source
        self.debug = debug
        self.log_path = log_path
        self.foreground = foreground
        self.report: Callable[[str], None] | None = report
        self.pidfile = pidfile
        self.fuse_fd = -1
        self.store: dict[str, int] = {}  # name -> fd handed up by a child
        self.generation = 0
        self.child: subprocess.Popen[bytes] | None = None
        self.ctl: socket.socket | None = None  # our end of the serving child's control socket
        # a spare: a child started ahead with every module imported, waiting for "go"
        self.spare: subprocess.Popen[bytes] | None = None
        self.spare_ctl: socket.socket | None = None
        self.use_spare = True
        self.child_pidfd = -1
        self.child_started = 0.0
        self.child_ready = False
        self.quick_deaths = 0
        self.waiters: list[socket.socket] = []  # `shmfs restart` clients awaiting "ok PID"
        self.stopping = False
        self.signals = 0
        self.result = 0
        self.restarts = 0
        self.child_said_bye = False
        self.departed: dict[int, subprocess.Popen[bytes]] = {}  # pidfd -> dead, not yet reaped

    # --- life -------------------------------------------------------------------------------

    def run(self) -> int:
        """Mount and supervise; the exit status of the shmfs command."""
        try:
            self.fuse_fd = mounting.mount(mounting.MountRequest(
                mountpoint=self.mnt, root_mode=self.opts.mode,
                allow_other=self.opts.allow_other, fsname=self.source,
                ms_flags=self.opts.ms_flags))
        except mounting.MountError as e:
            self._report(str(e))
            return 1
        self.listener = self._listen()
        sig_r, sig_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        old_wakeup = signal.set_wakeup_fd(sig_w)
        handlers = {s: signal.signal(s, self._on_signal)
                    for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)}
        try:
            self._start_child()
            self._loop(sig_r)
        finally:
            signal.set_wakeup_fd(old_wakeup)
            for s, h in handlers.items():
                signal.signal(s, h)
            os.close(sig_r)
            os.close(sig_w)
            self._finish()
        return self.result

    def _listen(self) -> socket.socket | None:
        dev = mounting.mount_device(self.mnt)
        if dev is None:
            log.warning("cannot find the mount of %s in mountinfo: no restart socket", self.mnt)
            return None
        return _bind_listener(dev)

    def _loop(self, sig_r: int) -> None:
        while self.child is not None:
            assert self.ctl is not None
            fds = [sig_r, self.ctl.fileno(), self.child_pidfd, *self.departed]
            if self.listener is not None:
                fds.append(self.listener.fileno())
            ready, _, _ = select.select(fds, [], [], LEADER_POLL_S)
            for fd in [fd for fd in ready if fd in self.departed]:
                self._reap_departed(fd)
            if sig_r in ready:
                while True:
                    try:
                        if not os.read(sig_r, 64):
                            break
                    except BlockingIOError:
                        break
                self._handle_signals()
            if self.ctl is not None and self.ctl.fileno() in ready:
                self._drain_control()
            if self.listener is not None and self.listener.fileno() in ready:
                self._accept_restart()
            if self.child_pidfd in ready:
                self._child_exited()
            elif self.child is not None and _leader_gone(self.child.pid):
                self._child_exited(whole=False)

    def _finish(self) -> None:
        for w in self.waiters:
            self._answer(w, "error: the mount is gone")
        self.waiters.clear()
        if self.listener is not None:
            self.listener.close()
        self._drop_spare()
        if self.ctl is not None:
            self.ctl.close()
            self.ctl = None
        for pidfd, proc in list(self.departed.items()):  # the mount is gone: they end now
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                log.warning("child %d still has a thread in the kernel", proc.pid)
            os.close(pidfd)
        self.departed.clear()
        for fd in self.store.values():
            os.close(fd)
        self.store.clear()
        if self.fuse_fd >= 0:
            os.close(self.fuse_fd)
            self.fuse_fd = -1
        if self.report is not None:  # never got ready
            self._report("the server exited before the mount was ready")

    # --- children ---------------------------------------------------------------------------

    def _config(self, ctl_fd: int) -> ChildConfig:
        return ChildConfig(
            mountpoint=str(self.mnt), options=self.option_text, uid=self.opts.uid,
            gid=self.opts.gid, source=self.source, debug=self.debug,
            log=str(self.log_path) if self.log_path else None, foreground=self.foreground,
            fuse_fd=self.fuse_fd, ctl_fd=ctl_fd, fds=dict(self.store),
            generation=self.generation)

    def _spawn(self, *args: str, pass_fds: tuple[int, ...] = ()
               ) -> tuple[subprocess.Popen[bytes], socket.socket]:
        """A child process running ``python -m mount.server.daemon ARGS`` with a fresh
        control socket (its end's number replaces "{ctl}" in ARGS)."""
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            argv = [sys.executable, "-m", "mount.server.daemon",
                    *(a.replace("{ctl}", str(theirs.fileno())) for a in args)]
            # its own process group: a terminal's Ctrl-C reaches the supervisor, which unmounts
            proc = subprocess.Popen(argv, pass_fds=(theirs.fileno(), *pass_fds),
                                    stdin=subprocess.DEVNULL, process_group=0, cwd="/")
        except BaseException:
            ours.close()
            raise
        finally:
            theirs.close()
        return proc, ours

    def _start_child(self) -> None:
        """Start the serving child: the spare if there is one (its imports are done,
        it only needs the descriptors and the configuration), else a new process."""
        if self.spare is not None and self.spare.poll() is None and self._activate_spare():
            return
        self._drop_spare()
        child, ctl = self._spawn("--child", "{ctl}", self._config(-1).to_json(),
                                 pass_fds=(self.fuse_fd, *self.store.values()))
        self._adopt(child, ctl)

    def _adopt(self, child: subprocess.Popen[bytes], ctl: socket.socket) -> None:
        self.child, self.ctl = child, ctl
        self.child_pidfd = os.pidfd_open(child.pid)
        self.child_started = time.monotonic()
        self.child_ready = False
        self.child_said_bye = False
        log.info("generation %d: serving child %d", self.generation, child.pid)

    def _start_spare(self) -> None:
        if not self.use_spare or self.spare is not None or self.stopping:
            return
        try:
            self.spare, self.spare_ctl = self._spawn("--spare", "{ctl}")
        except OSError as e:
            log.warning("no spare child: %s", e)

    def _activate_spare(self) -> bool:
        """Hand the spare the configuration and the descriptors (SCM_RIGHTS): it serves."""
        assert self.spare is not None and self.spare_ctl is not None
        names = list(self.store)
        cfg = self._config(-1)
        cfg.fds = {}
        msg = json.dumps({"config": cfg.to_json(), "names": names}).encode()
        try:
            self.spare_ctl.sendmsg([msg], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array(
                "i", [self.fuse_fd, *(self.store[n] for n in names)]))])
        except OSError as e:
            log.warning("spare child %d: %s; starting a new one", self.spare.pid, e)
            return False
        spare, ctl = self.spare, self.spare_ctl
        self.spare = self.spare_ctl = None
        self._adopt(spare, ctl)
        return True

    def _drop_spare(self) -> None:
        """End the spare (before a restart request: the new server must run the code
        installed now, not what the spare imported)."""
        spare, ctl = self.spare, self.spare_ctl
        self.spare = self.spare_ctl = None
        if ctl is not None:
            ctl.close()
        if spare is not None:
            spare.kill()
            spare.wait()

    def _child_exited(self, whole: bool = True) -> None:
        """The serving child died. ``whole``: its pidfd said so (every thread is gone);
        otherwise only its main thread is (_leader_gone): another thread may be stuck
        in the kernel -- typically the notifier in an invalidation waiting for a page
        lock that a READ the dead child had read holds until it is answered, which
        only the next child can do after the resend. So the next child starts now and
        the rest of this one is reaped whenever it ends (``departed``)."""
        assert self.child is not None
        self._drain_control()  # what it sent before dying (fds, "ready", "fail", "bye")
        if whole:
            code = self.child.wait()
            os.close(self.child_pidfd)
        else:
            # the status is not known yet: "bye" means it left because the mount is gone
            code = EXIT_UNMOUNTED if self.child_said_bye else -signal.SIGKILL
            if not self.child_said_bye:
                log.warning("child %d: main thread gone, another thread still in the kernel",
                            self.child.pid)
            self.departed[self.child_pidfd] = self.child
        self.child_pidfd = -1
        if self.ctl is not None:
            self.ctl.close()
            self.ctl = None
        pid, self.child = self.child.pid, None
        if code == EXIT_UNMOUNTED:
            log.info("child %d exited: the mount is gone", pid)
            return
        if code == EXIT_NO_RESTART or self.result:
            log.error("child %d cannot serve (status %d): taking the mount down", pid, code)
            self._give_up()
            return
        if self.stopping:
            log.info("child %d exited (status %d) while unmounting", pid, code)
        quick = time.monotonic() - self.child_started < QUICK_DEATH_S and not self.child_ready
        self.quick_deaths = self.quick_deaths + 1 if quick else 0
        if self.quick_deaths >= QUICK_DEATHS_MAX:
            log.error("%d serving children died within %.0f s of their start: giving up",
                      self.quick_deaths, QUICK_DEATH_S)
            self.result = 1
            self._give_up()
            return
        why = f"signal {-code}" if code < 0 else f"status {code}"
        log.warning("serving child %d died (%s): starting generation %d", pid, why,
                    self.generation + 1)
        self.generation += 1
        self.restarts += 1
        self._start_child()

    def _reap_departed(self, pidfd: int) -> None:
        proc = self.departed.pop(pidfd)
        os.close(pidfd)
        log.info("child %d finally ended (status %s)", proc.pid, proc.wait())

    def _give_up(self) -> None:
        """The mount cannot be served: end it (callers get ENOTCONN, as a dead daemon's)."""
        self.result = self.result or 1
        mounting.abort_connection(self.mnt)
        try:
            mounting.unmount(self.mnt, lazy=True)
        except mounting.MountError as e:
            log.error("%s", e)

    def _drain_control(self) -> None:
        while self.ctl is not None:
            try:
                msg, anc, _flags, _addr = self.ctl.recvmsg(
                    4096, socket.CMSG_SPACE(MAX_FDS_PER_MESSAGE * 4), socket.MSG_DONTWAIT)
            except (BlockingIOError, InterruptedError):
                return
            if not msg and not anc:  # end of file: the child and its forks are gone
                return
            fds: list[int] = []
            for level, kind, data in anc:
                if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                    arr = array.array("i")
                    arr.frombytes(data[: len(data) - len(data) % arr.itemsize])
                    fds.extend(arr)
            self._control_message(msg, fds)

    def _control_message(self, msg: bytes, fds: list[int]) -> None:
        word, _, rest = msg.partition(b" ")
        if word == b"keep":
            names = rest.decode().split()
            for name, fd in zip(names, fds, strict=False):
                os.set_inheritable(fd, False)
                old = self.store.pop(name, None)
                if old is not None:
                    os.close(old)
                self.store[name] = fd
            for fd in fds[len(names):]:
                os.close(fd)
            log.info("keeping %s", ", ".join(f"{n}={self.store[n]}" for n in names))
            return
        for fd in fds:
            os.close(fd)
        if word == b"ready":
            self.child_ready = True
            self.quick_deaths = 0
            pid = self.child.pid if self.child is not None else 0
            if self.pidfile is not None:
                tmp = self.pidfile.with_name(self.pidfile.name + ".tmp")
                tmp.write_text(f"{pid}\n")
                os.replace(tmp, self.pidfile)
            self._report("ok")
            self._start_spare()  # now, not earlier: it would slow the start of this one
            for w in self.waiters:
                self._answer(w, f"ok {pid} {self.generation}")
            self.waiters.clear()
        elif word == b"bye":
            self.child_said_bye = True
        elif word == b"fail":
            reason = rest.decode(errors="replace")
            log.error("the server cannot serve: %s", reason)
            self.result = 1
            self._report(reason)
        else:
            log.warning("unknown control message %r", msg[:80])

    def _report(self, status: str) -> None:
        if self.report is not None:
            report, self.report = self.report, None
            report(status)

    # --- signals and restart requests --------------------------------------------------------

    def _on_signal(self, signum: int, _frame: object) -> None:
        self.signals += 1

    def _handle_signals(self) -> None:
        if not self.signals:
            return
        if self.stopping and self.signals > 1:
            # a second signal while a lazy unmount waits for open files: end it now
            log.info("second signal: aborting the connection of %s", self.mnt)
            mounting.abort_connection(self.mnt)
            return
        if self.stopping:
            return
        self.stopping = True
        self.signals = 1
        log.info("signal: unmounting %s", self.mnt)
        try:
            mounting.unmount(self.mnt)
        except mounting.MountError as e:
            log.warning("%s; detaching lazily (open files keep being served)", e)
            try:
                mounting.unmount(self.mnt, lazy=True)
            except mounting.MountError as e2:
                log.error("%s", e2)

    def _accept_restart(self) -> None:
        assert self.listener is not None
        try:
            conn, _ = self.listener.accept()
        except OSError:
            return
        conn.settimeout(2.0)
        try:
            pid, uid, _gid = struct.unpack("3i", conn.getsockopt(
                socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i")))
            request = conn.recv(64).strip()  # read first: closing on unread data resets
            if uid not in (0, os.geteuid()):  # not -o uid=: that owns the root, not the mount
                self._answer(conn, "error: only root or the user who mounted may restart it")
                return
        except OSError as e:
            log.warning("restart request: %s", e)
            conn.close()
            return
        if request not in (b"restart", b"status"):
            self._answer(conn, f"error: unknown request {request[:32]!r}")
            return
        if self.child is None or self.stopping:
            self._answer(conn, "error: the mount is going away")
            return
        if request == b"status":  # "ok PID GENERATION" once a child serves
            conn.settimeout(None)
            # poll(): a child killed a moment ago whose pidfd we have not read yet
            # is not serving, whatever it said before
            if self.child_ready and self.child.poll() is None:
                self._answer(conn, f"ok {self.child.pid} {self.generation}")
            else:
                self.waiters.append(conn)
            return
        log.info("restart requested by pid %d (uid %d): replacing child %d", pid, uid,
                 self.child.pid)
        conn.settimeout(None)
        self.waiters.append(conn)
        # the same path as a crash: the new child recovers from the memfds; a new
        # process, not the spare, so that it runs the code installed now
        self._drop_spare()
        self.child.kill()

    @staticmethod
    def _answer(conn: socket.socket, text: str) -> None:
        try:
            conn.sendall(text.encode() + b"\n")
        except OSError:
            pass
        finally:
            conn.close()


def request_restart(mnt: Path, timeout: float = 60.0, *,
                    request: str = "restart") -> tuple[bool, str]:
    """Ask the supervisor of ``mnt`` to replace its serving child: (ok, "ok PID GEN") once
    the new one serves, else (False, why). ``request="status"``: only wait until a child
    serves (the kill-loop tests' synchronisation, no sleep)."""
    entry = mounting.mount_entry(mnt)
    if entry is None:
        return False, "not a mount point"
    if entry.fstype != "fuse.shmfs":
        return False, f"not a shmfs mount (it is {entry.fstype})"
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    s.settimeout(timeout)
    try:
        try:
            s.connect(socket_name(entry.device))
        except (ConnectionRefusedError, FileNotFoundError):
            return False, "not a restartable mount (mounted without -o restartable)"
        s.sendall(request.encode() + b"\n")
        chunks = []
        while chunk := s.recv(256):
            chunks.append(chunk)
    except OSError as e:
        if e.errno == errno.ETIMEDOUT or isinstance(e, TimeoutError):
            return False, f"no answer from the supervisor within {timeout:g} s"
        return False, str(e)
    finally:
        s.close()
    answer = b"".join(chunks).decode(errors="replace").strip()
    if answer.startswith("ok"):
        return True, answer
    return False, answer.removeprefix("error: ") or "the supervisor closed the connection"


def run_supervisor(mnt: Path, opts: MountOptions, option_text: str, *, source: str,
                   debug: bool, log_path: Path | None, foreground: bool,
                   report: Callable[[str], None], pidfile: Path | None) -> int:
    """Entry point from the CLI for ``-o restartable`` (in the daemon process)."""
    from mount.server.daemon import protect_from_oom

    if not protect_from_oom(opts, report):
        return 1
    sup = Supervisor(mnt, opts, option_text, source=source, debug=debug, log_path=log_path,
                     foreground=foreground, report=report, pidfile=pidfile)
    code = sup.run()
    log.info("supervisor of %s ends (%d restarts)", mnt, sup.restarts)
    return code
