"""Where a FUSE request's latency goes: kernel tracepoints joined with the
daemon's request timeline (used by scripts/latency_under_streams.py --trace).

``KernelTrace`` records ``fuse:fuse_request_send`` and ``fuse_request_end``
in a tracing instance of its own (so nobody else's tracing is touched) with
``trace_clock=mono``, the clock of ``time.perf_counter_ns()``; the daemon's
records come from mount/server/reqtrace.py. ``breakdown`` splits every
request but WRITE (the streams' own) into parts and summarises them.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

TRACING = Path("/sys/kernel/tracing")
OPCODE_WRITE = 16
OPCODE_UNLINK = 10
_LINE = re.compile(r"-(\d+)\s+\[.*?\s(\d+\.\d+): fuse_request_(send|end): connection (\d+) "
                   r"req (\d+)(?: opcode (\d+))?")


class KernelTrace:
    """A private ftrace instance with the two FUSE request tracepoints."""

    def __init__(self, name: str = "shmfs-latency") -> None:
        self.dir = TRACING / "instances" / name
        if not self.dir.exists():
            self.dir.mkdir()
        (self.dir / "trace_clock").write_text("mono")
        (self.dir / "buffer_size_kb").write_text("65536")
        for ev in ("fuse_request_send", "fuse_request_end"):
            (self.dir / "events" / "fuse" / ev / "enable").write_text("1")

    def start(self) -> None:
        (self.dir / "trace").write_text("")  # clear
        (self.dir / "tracing_on").write_text("1")

    def stop(self, out: Path) -> None:
        (self.dir / "tracing_on").write_text("0")
        shutil.copyfile(self.dir / "trace", out)

    def close(self) -> None:
        (self.dir / "tracing_on").write_text("0")
        os.rmdir(self.dir)


def parse_kernel(path: Path, connection: int) -> dict[int, dict[str, int]]:
    """unique -> {"send": ns, "end": ns, "opcode": n, "pid": sender} for one connection."""
    out: dict[int, dict[str, int]] = {}
    with open(path) as f:
        for line in f:
            m = _LINE.search(line)
            if m is None or int(m.group(4)) != connection:
                continue
            ns = round(float(m.group(2)) * 1e9)
            rec = out.setdefault(int(m.group(5)), {})
            rec[m.group(3)] = ns
            if m.group(6):
                rec["opcode"] = int(m.group(6))
                rec["pid"] = int(m.group(1))
    return out


def parse_daemon(path: Path) -> dict[int, list[int]]:
    """unique -> (unique, opcode, len, tid, t_rs, t_read, t_locked, t_done, cpu)."""
    out: dict[int, list[int]] = {}
    with open(path) as f:
        for line in f:
            r = json.loads(line)
            out[r[0]] = r
    return out


def _overlap(a0: int, a1: int, spans: list[tuple[int, int]]) -> int:
    return sum(max(0, min(a1, b1) - max(a0, b0)) for b0, b1 in spans)


def breakdown(kernel: dict[int, dict[str, int]], daemon: dict[int, list[int]],
              pid: int) -> dict:
    """Per-part means and p99s (µs): the requests process ``pid`` sent (the timed
    creates; its untimed UNLINKs left out) and the streams' WRITEs."""
    writes = sorted((r[4], r[7]) for u, r in daemon.items()
                    if r[1] == OPCODE_WRITE and u in kernel)
    parts: dict[str, list[float]] = {k: [] for k in (
        "total", "queued_behind_write", "queued_other", "read", "lock_wait", "handle",
        "handle_off_cpu", "reply_to_end")}
    wparts: dict[str, list[float]] = {"read": [], "lock_wait": [], "handle": [],
                                      "handle_off_cpu": []}
    for u, k in kernel.items():
        r = daemon.get(u)
        if r is None or "send" not in k or "end" not in k:
            continue
        _, op, _, _, t_rs, t_read, t_locked, t_done, cpu = r
        if op == OPCODE_WRITE:
            wparts["read"].append((t_read - t_rs) / 1e3)
            wparts["lock_wait"].append((t_locked - t_read) / 1e3)
            wparts["handle"].append((t_done - t_locked) / 1e3)
            wparts["handle_off_cpu"].append(max(0, t_done - t_locked - cpu) / 1e3)
            continue
        if k.get("pid") != pid or op == OPCODE_UNLINK:
            continue
        send = k["send"]
        queued = max(0, t_rs - send)  # no reader had started reading yet
        behind = min(queued, _overlap(send, max(send, t_rs), writes))
        parts["total"].append((k["end"] - send) / 1e3)
        parts["queued_behind_write"].append(behind / 1e3)
        parts["queued_other"].append((queued - behind) / 1e3)
        parts["read"].append((t_read - max(t_rs, send)) / 1e3)  # wake-up and copy
        parts["lock_wait"].append((t_locked - t_read) / 1e3)
        parts["handle"].append((t_done - t_locked) / 1e3)
        parts["handle_off_cpu"].append(max(0, t_done - t_locked - cpu) / 1e3)
        parts["reply_to_end"].append(max(0, k["end"] - t_done) / 1e3)

    def summary(d: dict[str, list[float]]) -> dict[str, dict[str, float]]:
        out = {}
        for name, v in d.items():
            v = sorted(v)
            out[name] = {"n": len(v), "mean": sum(v) / len(v) if v else 0.0,
                         "p50": v[len(v) // 2] if v else 0.0,
                         "p99": v[min(len(v) - 1, int(0.99 * len(v)))] if v else 0.0}
        return out
    return {"small": summary(parts), "write": summary(wparts)}


def show(label: str, b: dict) -> str:
    lines = [f"{label}: small requests (n={b['small']['total']['n']}), µs mean / p50 / p99:"]
    for name, s in b["small"].items():
        lines.append(f"    {name:22} {s['mean']:9.1f} {s['p50']:9.1f} {s['p99']:9.1f}")
    lines.append(f"  1 MiB WRITEs (n={b['write']['read']['n']}):")
    for name, s in b["write"].items():
        lines.append(f"    {name:22} {s['mean']:9.1f} {s['p50']:9.1f} {s['p99']:9.1f}")
    return "\n".join(lines)
