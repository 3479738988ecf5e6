"""Boot User-Mode Linux with its physical memory on a given filesystem.

UML keeps the guest's "physical" memory in an unlinked file in ``$TMPDIR``
(O_TMPFILE, else mkstemp + unlink), maps it MAP_SHARED, and gives memory back
to the host with ``madvise(MADV_REMOVE)`` when mconsole's ``config mem=-N``
unplugs guest pages. Pointing TMPDIR into a shmfs mount therefore makes UML a
real client of shmfs's fault path and of its hole punching (kernel-semantics.md
§5.3). This module boots the Debian ``linux.uml`` binary that way and reports
what happened as data, so that tests, the demo and the benchmark share one
harness:

* :class:`Uml` boots a guest whose root is the host's ``/`` over hostfs,
  mounted read-only so the guest can never write to the host. Its ``init`` is
  a generated shell script that touches guest memory (writes a payload into a
  guest tmpfs, checksums it, deletes it), optionally holds until the host
  releases it, then powers off through ``/proc/sysrq-trigger``.
* The console goes to a pipe that a reader thread drains; waiting is done on
  log lines (:meth:`Uml.wait_for`) with a deadline, never with sleeps.
* :meth:`Uml.unplug` drives ``uml_mconsole`` and measures what the host got
  back: the used blocks of TMPDIR's filesystem (statvfs, because the memory
  file is unlinked) and, for shmfs, the daemon's VmRSS.
* Teardown kills UML's whole process tree and removes the work directory
  (init script, ``uml_dir`` with the mconsole socket), whatever happened.

Host quirk handled here: this 6.1 UML saves and restores the guest's FPU state
with PTRACE_SETREGSET(NT_X86_XSTATE) using a buffer sized for pre-AMX CPUs.
Linux insists on a full-size XSAVE buffer there, so on a host with AMX every
guest process dies at once with "ptrace set fp regs failed, errno = 14"
(EFAULT) and init panics. UML falls back to PTRACE_GETFPREGS/SETFPREGS when
its probe of NT_X86_XSTATE fails at boot, so :func:`install_xstate_filter`
installs a tiny seccomp filter in the UML process (inherited by its helpers)
that fails only ``PTRACE_{GET,SET}REGSET`` of ``NT_X86_XSTATE`` with EIO.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import re
import select
import shutil
import signal
import struct
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

UML_BINARY = Path("/usr/bin/linux.uml")
MCONSOLE_BINARY = Path("/usr/bin/uml_mconsole")
MIB = 1 << 20

MARK = "UMLTEST:"
PAYLOAD_LINE = b"shmfs-uml-payload\n"
# Exact lines printed by this UML (6.1) that the tests look for.
MADV_REMOVE_OK = "Checking host MADV_REMOVE support...OK"
MADV_REMOVE_FAILED = "Can't release memory to the host - memory hotplug won't be supported"
POWER_DOWN = "reboot: Power down"
KERNEL_PANIC = "Kernel panic"

DEFAULT_MEM_MIB = 192
DEFAULT_TOUCH_MIB = 112
BOOT_TIMEOUT = 90.0
EXIT_TIMEOUT = 60.0


class UmlError(RuntimeError):
    """UML did not do what was expected; the message carries the tail of its log."""


# --------------------------------------------------------------------------- host probes


def used_bytes(path: Path) -> int:
    """Bytes in use on the filesystem holding path, from statvfs.

    UML's memory file is unlinked, so its size only shows in the filesystem's
    block counts, not in any directory listing.
    """
    st = os.statvfs(path)
    return (st.f_blocks - st.f_bfree) * st.f_frsize


def rss_bytes(pid: int) -> int:
    """Resident set size of pid (VmRSS of /proc/PID/status) in bytes."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise UmlError(f"no VmRSS for pid {pid}")


def payload_md5(mib: int) -> str:
    """md5 of the payload the guest writes: PAYLOAD_LINE repeated, cut at mib MiB.

    Computed on the host independently of the guest, so a guest whose memory
    went wrong (lost or stale pages in the memory file) shows up as a mismatch.
    """
    size = mib * MIB
    chunk = PAYLOAD_LINE * (MIB // len(PAYLOAD_LINE) + 2)
    h = hashlib.md5()
    done = 0
    while done < size:
        # Keep the line phase continuous across chunks.
        start = done % len(PAYLOAD_LINE)
        part = chunk[start:start + min(MIB, size - done)]
        h.update(part)
        done += len(part)
    return h.hexdigest()


def _proc_table() -> list[tuple[int, int, int]]:
    """(pid, ppid, pgrp) of every live process (zombies excluded), from /proc/*/stat."""
    table = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        fields = stat[stat.rindex(b")") + 2:].split()
        if fields[0] == b"Z":
            continue
        table.append((int(entry), int(fields[1]), int(fields[2])))
    return table


def _descendants(pid: int) -> list[int]:
    """All live descendants of pid."""
    children: dict[int, list[int]] = {}
    for child, ppid, _ in _proc_table():
        children.setdefault(ppid, []).append(child)
    out: list[int] = []
    todo = [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


def _group_members(pgid: int) -> list[int]:
    """Live processes in process group pgid."""
    return [pid for pid, _, pgrp in _proc_table() if pgrp == pgid]


def _kill_all(pids: Sequence[int], timeout: float = 30.0) -> None:
    """SIGKILL pids and wait (through pidfds, bounded) until each has exited."""
    fds = []
    for pid in pids:
        try:
            fds.append(os.pidfd_open(pid))
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + timeout
    for fd in fds:
        try:
            select.select([fd], [], [], max(0.0, deadline - time.monotonic()))
        finally:
            os.close(fd)


# --------------------------------------------------------------------------- xstate workaround

_PTRACE_GETREGSET = 0x4204
_PTRACE_SETREGSET = 0x4205
_NT_X86_XSTATE = 0x202
_AUDIT_ARCH_X86_64 = 0xC000003E
_NR_PTRACE_X86_64 = 101
_SECCOMP_RET_ALLOW = 0x7FFF0000
_SECCOMP_RET_ERRNO = 0x00050000
_EIO = 5


def xstate_filter_program() -> bytes:
    """Classic-BPF seccomp program: EIO for PTRACE_{GET,SET}REGSET(NT_X86_XSTATE).

    seccomp_data layout: nr at 0, arch at 4, args[i] at 16 + 8*i (low word
    first on x86-64). Everything else, including other regsets, is allowed.
    """
    ld, jeq, ret = 0x20, 0x15, 0x06  # BPF_LD|W|ABS, BPF_JMP|JEQ|K, BPF_RET|K
    prog = [
        (ld, 0, 0, 4),
        (jeq, 0, 8, _AUDIT_ARCH_X86_64),   # other arch -> allow
        (ld, 0, 0, 0),
        (jeq, 0, 6, _NR_PTRACE_X86_64),    # not ptrace -> allow
        (ld, 0, 0, 16),                    # args[0]: request
        (jeq, 1, 0, _PTRACE_GETREGSET),
        (jeq, 0, 3, _PTRACE_SETREGSET),    # other request -> allow
        (ld, 0, 0, 32),                    # args[2]: regset type
        (jeq, 0, 1, _NT_X86_XSTATE),       # other regset -> allow
        (ret, 0, 0, _SECCOMP_RET_ERRNO | _EIO),
        (ret, 0, 0, _SECCOMP_RET_ALLOW),
    ]
    return b"".join(struct.pack("=HBBI", *insn) for insn in prog)


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


_FILTER = ctypes.create_string_buffer(xstate_filter_program())
_FPROG = _SockFprog(len(_FILTER.raw) // 8, ctypes.addressof(_FILTER))
_libc = ctypes.CDLL(None, use_errno=True)
_libc.prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_void_p,
                        ctypes.c_ulong, ctypes.c_ulong]


def install_xstate_filter() -> None:
    """Install the NT_X86_XSTATE filter in the calling process (a preexec_fn).

    Everything is allocated before fork; the child only makes two prctl calls.
    """
    pr_set_no_new_privs, pr_set_seccomp, seccomp_mode_filter = 38, 22, 2
    if _libc.prctl(pr_set_no_new_privs, 1, None, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "PR_SET_NO_NEW_PRIVS")
    if _libc.prctl(pr_set_seccomp, seccomp_mode_filter, ctypes.byref(_FPROG), 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "PR_SET_SECCOMP")


# --------------------------------------------------------------------------- guest init

_INIT_TEMPLATE = """#!/bin/sh
# Guest init generated by tests/support/uml.py: touch memory, checksum, power off.
PATH=/usr/sbin:/usr/bin:/sbin:/bin
export PATH
say() {{ echo "{mark} $*"; }}
meminfo() {{ sed -n "s/^$1: *\\([0-9]*\\) kB$/\\1/p" /proc/meminfo; }}
mount -t proc proc /proc || say "error=mount-proc"
mount -t tmpfs -o size=100% uml-guest-tmp {guest_tmp} || say "error=mount-tmpfs"
say "init"
say "memtotal_kib=$(meminfo MemTotal)"
if [ {touch} -gt 0 ]; then
    yes {payload} | head -c {touch}M > {guest_tmp}/payload
    say "payload_md5=$(md5sum < {guest_tmp}/payload | cut -c1-32)"
    rm -f {guest_tmp}/payload
fi
say "memfree_kib=$(meminfo MemFree)"
say "ready"
{hold}
say "memfree_end_kib=$(meminfo MemFree)"
say "done"
echo o > /proc/sysrq-trigger
# Power-off runs asynchronously in the kernel; init exiting now would panic.
while :; do sleep 1; done
"""

# The guest polls a host file through hostfs: the host's side waits on log lines.
_HOLD_TEMPLATE = """while [ ! -e {release} ]; do sleep 0.05; done
say "released\""""


# --------------------------------------------------------------------------- results


@dataclass
class UmlResult:
    """What one UML run did. Times are seconds since the process was started."""

    argv: list[str]
    tmpdir: Path
    returncode: int | None
    log: str
    markers: dict[str, str]
    timings: dict[str, float]
    halted: bool = False
    madv_remove_ok: bool = False
    panicked: bool = False

    def summary(self) -> str:
        """One line for reports: exit status, halt, MADV_REMOVE, timings."""
        times = " ".join(f"{k}={v:.3f}s" for k, v in self.timings.items())
        return (f"rc={self.returncode} halted={self.halted} "
                f"madv_remove_ok={self.madv_remove_ok} {times}")


@dataclass
class UnplugReport:
    """Host-side effect of one ``config mem=-N`` through mconsole."""

    requested_bytes: int
    reply: str
    used_before: int
    used_after: int
    seconds: float
    rss_before: int | None = None
    rss_after: int | None = None

    @property
    def used_drop(self) -> int:
        """Bytes the filesystem got back (statvfs used before - after)."""
        return self.used_before - self.used_after

    @property
    def rss_drop(self) -> int | None:
        """Bytes the daemon's RSS shrank by, when a daemon pid was given."""
        if self.rss_before is None or self.rss_after is None:
            return None
        return self.rss_before - self.rss_after


# Timing names recorded the first time a line containing the text is seen.
_MILESTONES = {
    "madv_check": "Checking host MADV_REMOVE support",
    "init": f"{MARK} init",
    "ready": f"{MARK} ready",
    "done": f"{MARK} done",
    "power_down": POWER_DOWN,
}


@dataclass
class _Log:
    lines: list[tuple[float, str]] = field(default_factory=list)
    eof: bool = False
    cond: threading.Condition = field(default_factory=threading.Condition)


class Uml:
    """One UML guest with its memory file in ``tmpdir``; use as a context manager.

    ``hold=True`` keeps the guest up after it touched its memory (the log line
    ``UMLTEST: ready``) until :meth:`release`; meanwhile mconsole works.
    """

    def __init__(self, tmpdir: Path, *, mem_mib: int = DEFAULT_MEM_MIB,
                 touch_mib: int = DEFAULT_TOUCH_MIB, hold: bool = False,
                 workdir_parent: Path | None = None, xstate_workaround: bool = True) -> None:
        self.tmpdir = Path(tmpdir)
        self.mem_mib = mem_mib
        self.touch_mib = touch_mib
        self.hold = hold
        self.xstate_workaround = xstate_workaround
        self.umid = f"shmfs-{uuid.uuid4().hex[:8]}"
        self.workdir = Path(tempfile.mkdtemp(prefix="uml-", dir=workdir_parent))
        self.uml_dir = self.workdir / "uml_dir"
        self.guest_tmp = self.workdir / "guest-tmp"
        self.release_file = self.workdir / "release"
        self.init_script = self.workdir / "init.sh"
        self.proc: subprocess.Popen[bytes] | None = None
        self._log = _Log()
        self._reader: threading.Thread | None = None
        self._t0 = 0.0
        self._t_exit: float | None = None

    # -- lifecycle -----------------------------------------------------------

    @property
    def argv(self) -> list[str]:
        """The UML command line (TMPDIR is passed in the environment)."""
        return [str(UML_BINARY), f"mem={self.mem_mib}M", f"umid={self.umid}",
                f"uml_dir={self.uml_dir}", "root=/dev/root", "rootfstype=hostfs",
                "rootflags=/", "ro", f"init={self.init_script}",
                "con0=fd:0,fd:1", "con=null", "ssl=null"]

    @property
    def command(self) -> list[str]:
        """The command as a user would type it, for reports (TMPDIR=... linux.uml ...)."""
        return [f"TMPDIR={self.tmpdir}", *self.argv]

    @property
    def mconsole_socket(self) -> Path:
        """Path of the mconsole socket (exists once the log says it is initialized)."""
        return self.uml_dir / self.umid / "mconsole"

    def _write_init(self) -> None:
        self.uml_dir.mkdir()
        self.guest_tmp.mkdir()
        hold = _HOLD_TEMPLATE.format(release=self.release_file) if self.hold else ""
        self.init_script.write_text(_INIT_TEMPLATE.format(
            mark=MARK, guest_tmp=self.guest_tmp, touch=self.touch_mib,
            payload=PAYLOAD_LINE.decode().strip(), hold=hold))
        self.init_script.chmod(0o755)

    def start(self) -> None:
        """Launch UML in its own session (process group) with TMPDIR=tmpdir."""
        self._write_init()
        env = {k: v for k, v in os.environ.items() if k not in ("TMP", "TEMP")}
        env["TMPDIR"] = str(self.tmpdir)
        self._t0 = time.monotonic()
        self.proc = subprocess.Popen(
            self.argv, env=env, cwd=self.workdir, stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True,
            preexec_fn=install_xstate_filter if self.xstate_workaround else None)
        self._reader = threading.Thread(target=self._read, name=f"uml-log-{self.umid}",
                                        daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        for raw in self.proc.stdout:
            line = raw.decode(errors="replace").rstrip("\r\n")
            with self._log.cond:
                self._log.lines.append((time.monotonic() - self._t0, line))
                self._log.cond.notify_all()
        with self._log.cond:
            self._log.eof = True
            self._log.cond.notify_all()

    def __enter__(self) -> Uml:
        try:
            self.start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def kill(self) -> None:
        """SIGKILL UML and every helper it forked, and reap UML. Idempotent.

        While UML is not reaped its pid pins the process group id, so killpg
        cannot hit a stranger; helpers that outlived a reaped UML are still
        found by their process group, which no new process can take while
        they are in it.
        """
        if self.proc is None:
            return
        if self.proc.returncode is None:
            victims = _descendants(self.proc.pid)
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            _kill_all(victims)
            self.proc.wait()
        _kill_all(_group_members(self.proc.pid))
        if left := _group_members(self.proc.pid):
            raise UmlError(f"UML processes survived SIGKILL: {left}")

    def leftover_processes(self) -> list[int]:
        """Processes of this UML still alive (its process group); [] after a clean end."""
        if self.proc is None:
            return []
        return _group_members(self.proc.pid)

    def close(self) -> None:
        """Kill whatever is left, stop the reader, remove the work directory."""
        try:
            self.kill()
            if self._reader is not None:
                self._reader.join(timeout=EXIT_TIMEOUT)
            if self.proc is not None and self.proc.stdout is not None:
                self.proc.stdout.close()
        finally:
            shutil.rmtree(self.workdir, ignore_errors=True)

    # -- waiting on the log --------------------------------------------------

    def _tail(self, n: int = 40) -> str:
        with self._log.cond:
            return "\n".join(line for _, line in self._log.lines[-n:])

    def wait_for(self, pattern: str, timeout: float = BOOT_TIMEOUT) -> re.Match[str]:
        """Block until a log line matches the regex; UmlError on timeout or EOF."""
        rx = re.compile(pattern)
        deadline = time.monotonic() + timeout
        seen = 0
        with self._log.cond:
            while True:
                for _, line in self._log.lines[seen:]:
                    m = rx.search(line)
                    if m:
                        return m
                seen = len(self._log.lines)
                if self._log.eof:
                    raise UmlError(f"UML output ended before {pattern!r}:\n{self._tail()}")
                left = deadline - time.monotonic()
                if left <= 0:
                    raise UmlError(f"no {pattern!r} within {timeout}s:\n{self._tail()}")
                self._log.cond.wait(left)

    def wait_marker(self, name: str, timeout: float = BOOT_TIMEOUT) -> str:
        """Wait for ``UMLTEST: name`` or ``UMLTEST: name=value``; return the value."""
        m = self.wait_for(rf"^{MARK} {re.escape(name)}(?:=(.*))?$", timeout)
        return m.group(1) or ""

    def wait_exit(self, timeout: float = EXIT_TIMEOUT) -> int:
        """Wait for UML to exit by itself; UmlError (process left running) on timeout."""
        assert self.proc is not None
        try:
            rc = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise UmlError(f"UML still running after {timeout}s:\n{self._tail()}") from None
        self._t_exit = time.monotonic() - self._t0
        if self._reader is not None:
            self._reader.join(timeout=EXIT_TIMEOUT)
        return rc

    # -- control ---------------------------------------------------------------

    def release(self) -> None:
        """Let a held guest go on to power off."""
        self.release_file.touch()

    def mconsole(self, *args: str, timeout: float = 60.0) -> str:
        """Run ``uml_mconsole SOCKET args...`` and return its reply (``OK ...``).

        uml_mconsole first looks the name up as a umid under ~/.uml and
        /tmp/uml and warns on stderr before using it as a socket path; only
        stdout carries the reply.
        """
        out = subprocess.run([str(MCONSOLE_BINARY), str(self.mconsole_socket), *args],
                             stdin=subprocess.DEVNULL, capture_output=True, timeout=timeout)
        return out.stdout.decode(errors="replace").strip()

    def unplug(self, mib: int, daemon_pid: int | None = None) -> UnplugReport:
        """``config mem=-<mib>M`` and what the host's filesystem (and daemon) got back.

        The mconsole reply comes after UML's handler has done all its
        MADV_REMOVE calls, so the measurement right after it is final.
        """
        rss_before = rss_bytes(daemon_pid) if daemon_pid is not None else None
        used_before = used_bytes(self.tmpdir)
        t = time.monotonic()
        reply = self.mconsole("config", f"mem=-{mib}M")
        seconds = time.monotonic() - t
        used_after = used_bytes(self.tmpdir)
        rss_after = rss_bytes(daemon_pid) if daemon_pid is not None else None
        return UnplugReport(mib * MIB, reply, used_before, used_after, seconds,
                            rss_before, rss_after)

    # -- results ----------------------------------------------------------------

    def result(self) -> UmlResult:
        """Everything the run printed, parsed: markers, milestones, halt, MADV_REMOVE."""
        assert self.proc is not None
        with self._log.cond:
            lines = list(self._log.lines)
        markers: dict[str, str] = {}
        timings: dict[str, float] = {}
        for t, line in lines:
            if line.startswith(MARK + " "):
                key, _, value = line[len(MARK) + 1:].partition("=")
                markers.setdefault(key, value)
            for name, text in _MILESTONES.items():
                if name not in timings and text in line:
                    timings[name] = t
        if self._t_exit is not None:
            timings["exit"] = self._t_exit
        log = "\n".join(line for _, line in lines)
        rc = self.proc.poll()
        return UmlResult(argv=self.argv, tmpdir=self.tmpdir, returncode=rc, log=log,
                         markers=markers, timings=timings,
                         halted=rc == 0 and POWER_DOWN in log,
                         madv_remove_ok=MADV_REMOVE_OK in log,
                         panicked=KERNEL_PANIC in log)


@dataclass
class Run:
    """A whole scenario: the UML result plus the host's view of TMPDIR's filesystem.

    ``used_*`` are statvfs used bytes: before boot, when the guest said
    ``ready`` (its memory touched), and after UML exited (the unlinked memory
    file must be gone). ``leftovers`` are UML processes alive after the exit.
    """

    result: UmlResult
    used_baseline: int
    used_ready: int | None
    used_end: int
    leftovers: list[int]
    unplug: UnplugReport | None = None
    command: list[str] = field(default_factory=list)


def boot(tmpdir: Path, *, mem_mib: int = DEFAULT_MEM_MIB, touch_mib: int = DEFAULT_TOUCH_MIB,
         timeout: float = BOOT_TIMEOUT) -> Run:
    """Boot UML with its memory in tmpdir, run the workload, let it power off."""
    baseline = used_bytes(tmpdir)
    with Uml(tmpdir, mem_mib=mem_mib, touch_mib=touch_mib) as uml:
        uml.wait_exit(timeout)
        result = uml.result()
        leftovers = uml.leftover_processes()
        command = uml.command
    return Run(result, baseline, None, used_bytes(tmpdir), leftovers, command=command)


def unplug_run(tmpdir: Path, unplug_mib: int, *, daemon_pid: int | None = None,
               mem_mib: int = DEFAULT_MEM_MIB, touch_mib: int = DEFAULT_TOUCH_MIB,
               timeout: float = BOOT_TIMEOUT) -> Run:
    """Boot, wait until the guest touched its memory, unplug unplug_mib, power off."""
    baseline = used_bytes(tmpdir)
    with Uml(tmpdir, mem_mib=mem_mib, touch_mib=touch_mib, hold=True) as uml:
        uml.wait_marker("ready", timeout)
        used_ready = used_bytes(tmpdir)
        report = uml.unplug(unplug_mib, daemon_pid)
        uml.release()
        uml.wait_exit(timeout)
        result = uml.result()
        leftovers = uml.leftover_processes()
        command = uml.command
    return Run(result, baseline, used_ready, used_bytes(tmpdir), leftovers, report, command)

