"""Turning Results into a table, floor verdicts, a scaling view, JSON and a PNG.

Ratios are *relative speed*: subject speed / reference speed (throughput or
ops/s; for wall times, reference time / subject time). 1.00x means as fast as
the reference, 0.25x four times slower. Absolute numbers stay next to every
ratio so nothing depends on the reader knowing that convention.
"""

from __future__ import annotations

import json
import os
import platform
import shlex
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .workloads import GiB, MiB, Result

# -- floors -------------------------------------------------------------------


@dataclass(frozen=True)
class Floor:
    """One promised bound on the subject target (issue N, result name, bound)."""

    issue: int
    name: str
    metric: str  # gib_per_s | ops_per_s | us_per_op | time_ratio | rss
    bound: float
    text: str

    def check(self, by_name: dict[str, dict[str, Result]], subject: str, reference: str
              ) -> tuple[bool | None, str]:
        """(met or None if not measured, what was measured)."""
        r = by_name.get(self.name, {}).get(subject)
        if r is None or r.skipped:
            why = r.skipped if r is not None else "not run"
            return None, f"not measured ({why})"
        if self.metric == "time_ratio":
            ref = by_name[self.name].get(reference)
            if ref is None or ref.skipped or not ref.value or not r.value:
                return None, "not measured (no reference time)"
            ratio = r.value / ref.value
            return ratio <= self.bound, f"{r.value:.2f}s vs {ref.value:.2f}s = {ratio:.2f}x"
        if self.metric == "rss":
            limit = r.params["limit_bytes"]
            return r.nbytes <= limit, (f"{r.nbytes / MiB:.0f} MiB "
                                       f"(limit {limit / MiB:.0f} MiB for {r.params['stored']})")
        value = getattr(r, self.metric)
        if value is None:
            return None, "not measured"
        if self.metric == "us_per_op":
            return value <= self.bound, f"{value:.1f} µs"
        if self.metric == "ops_per_s":
            return value >= self.bound, f"{value:,.0f}/s"
        return value >= self.bound, f"{value:.2f} GiB/s"


FLOORS = [
    Floor(6, "seq_write_1m", "gib_per_s", 1.5, "sequential write, 1 MiB blocks >= 1.5 GiB/s"),
    Floor(6, "seq_read_cold_1m", "gib_per_s", 3.0, "cold sequential read, 1 MiB >= 3 GiB/s"),
    Floor(6, "rand_read_4k", "ops_per_s", 40_000, "cold 4 KiB random read >= 40,000/s"),
    Floor(6, "rand_write_4k", "ops_per_s", 40_000, "4 KiB random write >= 40,000/s"),
    Floor(6, "mmap_first_touch", "gib_per_s", 2.0, "first-touch faults, MAP_SHARED >= 2 GiB/s"),
    Floor(6, "create", "us_per_op", 30, "create+close <= 30 µs"),
    Floor(6, "unlink", "us_per_op", 25, "unlink <= 25 µs"),
    Floor(6, "stat_expired", "us_per_op", 15, "stat with expired cache <= 15 µs"),
    Floor(6, "uml_boot", "time_ratio", 1.3, "UML boot <= 1.3x the boot on kernel tmpfs"),
    Floor(6, "daemon_rss", "rss", 0, "daemon RSS <= stored data + 5% + 64 MiB"),
    Floor(2, "seq_write_1m", "gib_per_s", 700 / 1024, "sequential write, 1 MiB >= 700 MiB/s"),
    Floor(2, "seq_read_cold_1m", "gib_per_s", 1.5, "cold sequential read, 1 MiB >= 1.5 GiB/s"),
    Floor(2, "create", "us_per_op", 80, "create+close <= 80 µs"),
]


def index(results: list[Result]) -> dict[str, dict[str, Result]]:
    """name -> target label -> Result, in first-seen name order."""
    out: dict[str, dict[str, Result]] = {}
    for r in results:
        out.setdefault(r.name, {})[r.target] = r
    return out


def check_floors(results: list[Result], subject: str, reference: str) -> list[dict[str, Any]]:
    by_name = index(results)
    out = []
    for f in FLOORS:
        met, measured = f.check(by_name, subject, reference)
        out.append({"issue": f.issue, "name": f.name, "floor": f.text,
                    "measured": measured, "met": met})
    return out


def format_floors(floors: list[dict[str, Any]], subject: str) -> str:
    lines = []
    for issue in sorted({f["issue"] for f in floors}, reverse=True):
        lines.append(f"Floors of issue {issue} on {subject}:")
        for f in (f for f in floors if f["issue"] == issue):
            verdict = {True: "met", False: "NOT MET", None: "n/a"}[f["met"]]
            lines.append(f"  {verdict:8} {f['floor']:48} measured {f['measured']}")
    return "\n".join(lines)


# -- scaling: does a cost grow with file or directory size? -------------------

SCALING_PAIRS = [
    ("rand_read_4k_smallfile", "rand_read_4k"),
    ("rand_write_4k_smallfile", "rand_write_4k"),
    ("create_smalldir", "create"),
    ("stat_warm_smalldir", "stat_warm"),
    ("stat_expired_smalldir", "stat_expired"),
    ("readdir_smalldir", "readdir"),
    ("unlink_smalldir", "unlink"),
]


def scaling(results: list[Result], labels: list[str]) -> list[dict[str, Any]]:
    """For each pair, cost per op large / small on each target (1.0 = flat)."""
    by_name = index(results)
    out = []
    for small, large in SCALING_PAIRS:
        row: dict[str, Any] = {"small": small, "large": large}
        for label in labels:
            a = by_name.get(small, {}).get(label)
            b = by_name.get(large, {}).get(label)
            ok = a and b and not a.skipped and not b.skipped and a.us_per_op and b.us_per_op
            row[label] = b.us_per_op / a.us_per_op if ok else None  # type: ignore[union-attr]
        if any(row[label] is not None for label in labels):
            out.append(row)
    return out


def format_scaling(rows: list[dict[str, Any]], labels: list[str], results: list[Result]) -> str:
    if not rows:
        return ""
    by_name = index(results)

    def size(name: str) -> str:
        r = next(iter(by_name[name].values()))
        return str(r.params.get("file") or f"{r.params.get('entries')} entries")

    lines = ["Cost growth, cost per op large / small (1.00 = independent of size):",
             f"  {'operation':18} {'small':>12} {'large':>14} " +
             " ".join(f"{lb:>10}" for lb in labels)]
    for row in rows:
        vals = " ".join(f"{row[lb]:>9.2f}x" if row[lb] else f"{'-':>10}" for lb in labels)
        lines.append(f"  {row['large']:18} {size(row['small']):>12} {size(row['large']):>14} "
                     f"{vals}")
    return "\n".join(lines)


# -- table ----------------------------------------------------------------------


def fmt_value(r: Result | None) -> str:
    if r is None:
        return "-"
    if r.skipped:
        return "skipped"
    if r.kind == "bytes":
        return f"{r.gib_per_s:.2f} GiB/s"
    if r.kind == "ops":
        return f"{r.us_per_op:.2f} µs {_k(r.ops_per_s)}/s"
    if r.kind == "seconds":
        return f"{r.value:.2f} s"
    if r.kind == "rss":
        return f"{r.nbytes / MiB:.0f} MiB"
    return "?"


def _k(x: float | None) -> str:
    if x is None:
        return "?"
    if x >= 1e6:
        return f"{x / 1e6:.2f}M"
    if x >= 1e3:
        return f"{x / 1e3:.1f}k"
    return f"{x:.0f}"


def ratio(a: Result | None, b: Result | None) -> float | None:
    sa, sb = (a.speed() if a else None), (b.speed() if b else None)
    return sa / sb if sa and sb else None


def params_text(r: Result) -> str:
    keys = ("file", "block", "entries")
    return ", ".join(f"{r.params[k]}" + (" entries" if k == "entries" else "")
                     for k in keys if k in r.params)


def format_table(results: list[Result], subject: str, reference: str,
                 others: Sequence[str] = ()) -> str:
    """The table; ``others``: more targets of the same run, a value and a ratio
    column each (e.g. --targets shmfs,shmfs:uring,tmpfs)."""
    by_name = index(results)
    head = ["workload", "size", subject, *others, reference, f"{subject}/{reference}"]
    head += [f"{o}/{reference}" for o in others]
    rows = [tuple(head)]
    for name, sides in by_name.items():
        a, b = sides.get(subject), sides.get(reference)
        any_r = a or b
        qs = [ratio(sides.get(t), b) for t in (subject, *others)]
        rows.append((name, params_text(any_r) if any_r else "", fmt_value(a),
                     *(fmt_value(sides.get(o)) for o in others), fmt_value(b),
                     *(f"{q:.2f}x" if q else "-" for q in qs)))
    widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
    out = []
    for i, row in enumerate(rows):
        out.append("  ".join(c.ljust(w) if j < 2 else c.rjust(w)
                             for j, (c, w) in enumerate(zip(row, widths, strict=True))))
        if i == 0:
            out.append("  ".join("-" * w for w in widths))
    notes = [f"  {r.name} on {r.target}: {r.skipped}" for r in results if r.skipped]
    if notes:
        out += ["", "Skipped:", *notes]
    out += ["", f"Ratio = {subject} speed / {reference} speed (1.00x = same; below 1 = slower)."]
    return "\n".join(out)


# -- metadata -------------------------------------------------------------------


def machine_info() -> dict[str, Any]:
    """What produced the numbers: host, CPU, memory, kernel, Python, git commit."""
    cpu = ""
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((ln.split(":", 1)[1].strip() for ln in f
                        if ln.startswith("model name")), "")
    except OSError:
        pass
    mem = 0
    with open("/proc/meminfo") as f:
        for ln in f:
            if ln.startswith("MemTotal:"):
                mem = int(ln.split()[1]) * 1024
    u = platform.uname()
    repo = Path(__file__).resolve().parents[2]
    git = subprocess.run(["git", "-C", str(repo), "describe", "--always", "--dirty"],
                         capture_output=True, text=True, check=False).stdout.strip()
    return {
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "hostname": socket.gethostname(),
        "kernel": f"{u.system} {u.release} {u.version}",
        "machine": u.machine,
        "cpu": cpu,
        "cpus": os.cpu_count(),
        "mem_bytes": mem,
        "mem": f"{mem / GiB:.1f} GiB",
        "python": sys.version.split()[0],
        "git": git,
        "command": shlex.join([sys.executable, *sys.argv]),
        "cwd": os.getcwd(),
        "uid": os.geteuid(),
        "loadavg_start": loadavg(),
    }


def loadavg() -> str:
    """/proc/loadavg's 1/5/15-minute figures: other work on the machine skews results."""
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def meta_line(meta: dict[str, Any]) -> str:
    return (f"{meta['date']}  {meta['hostname']}  {meta['cpus']}x {meta['cpu']}  {meta['mem']}"
            f"\nkernel {meta['kernel']}  python {meta['python']}  git {meta['git']}"
            f"  engine {meta.get('engine')}  load {meta.get('loadavg_start')}"
            f" -> {meta.get('loadavg_end', '?')}\ncommand: {meta['command']}")


def write_json(path: Path, doc: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc, indent=2, ensure_ascii=False) + "\n")
