"""Host-side helpers of the UML harness (tests/support/uml.py).

* probes of what the host got back: a filesystem's used bytes, a process's RSS;
* process-tree bookkeeping to kill UML and every helper it forked;
* the xstate workaround: this 6.1 UML saves the guest's FPU state with
  PTRACE_SETREGSET(NT_X86_XSTATE) using a buffer sized for pre-AMX CPUs, so on
  a host with AMX every guest process dies ("ptrace set fp regs failed, errno
  = 14") and init panics. UML falls back to PTRACE_GETFPREGS/SETFPREGS when its
  probe of NT_X86_XSTATE fails at boot, so :func:`install_xstate_filter`
  installs a seccomp filter (inherited by UML's helpers) that fails only
  ``PTRACE_{GET,SET}REGSET`` of ``NT_X86_XSTATE`` with EIO.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import select
import signal
import struct
import time
from collections.abc import Sequence
from pathlib import Path

MIB = 1 << 20
PAYLOAD_LINE = b"shmfs-uml-payload\n"


class UmlError(RuntimeError):
    """UML did not do what the harness expected; the message says what it saw."""

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


