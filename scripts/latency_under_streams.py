"""create+close latency percentiles while two 1 MiB streaming writers run
(issue 15's head-of-line workload; docs/performance.md, change 13).

    .venv/bin/python scripts/latency_under_streams.py DIR [--seconds 5]

DIR is a directory on the filesystem under test (a shmfs mounted with or
without -o readers=2, or a kernel tmpfs for reference). Two writer processes
rewrite 64 MiB files in 1 MiB write(2)s for the whole run; this process
creates and closes empty files in DIR/c (removed in batches of 1,000, outside
the timing) and prints the median, p90, p99 and max, with the load average.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time

_WRITER = """
import os, sys, time
buf = b"w" * (1 << 20)
end = time.time() + float(sys.argv[2])
while time.time() < end:
    fd = os.open(sys.argv[1], os.O_CREAT | os.O_WRONLY | os.O_TRUNC, 0o644)
    for _ in range(64):
        os.write(fd, buf)
    os.close(fd)
"""


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("dir")
    p.add_argument("--seconds", type=float, default=5.0)
    a = p.parse_args()
    cdir = os.path.join(a.dir, "c")
    os.makedirs(cdir, exist_ok=True)
    writers = [subprocess.Popen([sys.executable, "-c", _WRITER, os.path.join(a.dir, f"stream{i}"),
                                 str(a.seconds + 0.5)]) for i in range(2)]
    try:
        time.sleep(0.3)  # let both streams start
        lat: list[int] = []
        made: list[str] = []
        end = time.monotonic() + a.seconds
        while time.monotonic() < end:
            path = os.path.join(cdir, f"f{len(lat)}")
            t = time.perf_counter_ns()
            os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o644))
            lat.append(time.perf_counter_ns() - t)
            made.append(path)
            if len(made) == 1000:
                for q in made:
                    os.unlink(q)
                made.clear()
        for q in made:
            os.unlink(q)
    finally:
        for w in writers:
            w.wait()
    lat.sort()

    def pct(f: float) -> float:
        return lat[min(len(lat) - 1, int(f * len(lat)))] / 1000

    print(f"create+close x {len(lat)}: median {pct(0.5):.0f} us, p90 {pct(0.9):.0f}, "
          f"p99 {pct(0.99):.0f}, max {lat[-1] / 1000:.0f}; "
          f"load {open('/proc/loadavg').read().split()[0]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
