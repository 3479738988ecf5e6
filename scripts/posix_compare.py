#!/usr/bin/env python3
"""Run the POSIX/tmpfs conformance suite (tests/posix) against two filesystems and
print every divergence: which case, which call, what each side returned.

    scripts/posix_compare.py DIR_A DIR_B          # any two directories
    scripts/posix_compare.py --tmpfs DIR_B        # mount a kernel tmpfs as side A
    scripts/posix_compare.py tmpfs shmfs          # mount both (needs root)

A side named ``tmpfs`` mounts a scratch kernel tmpfs, ``shmfs`` mounts shmfs
through tests/support/mounts.py (with allow_other, so cases can act as another
user); anything else is a directory in which a scratch subdirectory is made.
Cases that need their own mount options (size=, nr_inodes= ...) run only when
both sides are mounted by this script.  Needs root (cases act as other uids).
Exit status: 0 when identical, 1 when something diverged.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.posix.framework import load_cases  # noqa: E402
from tests.posix.runner import Side, SideRun, kernel_tmpfs, shmfs_allow_other  # noqa: E402


def make_side(spec: str, label: str) -> Side:
    if spec == "tmpfs":
        return Side(f"tmpfs({label})", mount=kernel_tmpfs)
    if spec == "shmfs":
        return Side("shmfs", mount=shmfs_allow_other)
    path = Path(spec)
    if not path.is_dir():
        raise SystemExit(f"{spec}: not a directory (nor 'tmpfs'/'shmfs')")
    return Side(str(path), directory=path)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tmpfs", action="store_true", help="side A is a scratch kernel tmpfs")
    ap.add_argument("sides", nargs="+", help="DIR_A DIR_B, or DIR_B with --tmpfs")
    ap.add_argument("-k", "--filter", default="", help="only cases whose name contains this")
    ap.add_argument("-v", "--verbose", action="store_true", help="print every case")
    ap.add_argument("--show", action="store_true",
                    help="also print side A's observations for every case run")
    args = ap.parse_args(argv)
    specs = (["tmpfs", *args.sides] if args.tmpfs else args.sides)
    if len(specs) != 2:
        ap.error("need exactly two sides")
    a, b = make_side(specs[0], "A"), make_side(specs[1], "B")
    cases = [c for c in load_cases().values() if args.filter in c.name]
    from tests.posix.framework import compare

    t0 = time.monotonic()
    diverged = skipped = 0
    with SideRun(a) as ra, SideRun(b) as rb:
        for c in cases:
            if not (ra.can_run(c) and rb.can_run(c)):
                skipped += 1
                if args.verbose:
                    print(f"--   {c.name}: needs mount options {c.mount!r}; not run", flush=True)
                continue
            res_a, res_b = ra.run(c), rb.run(c)
            diffs = compare(res_a, res_b, a.name, b.name)
            if args.show:
                print(f"---- {c.name} on {a.name}: {res_a.error or ''}", flush=True)
                for label, value in res_a.obs:
                    print(f"       {label}: {value!r}", flush=True)
            if res_a.error:
                diffs.insert(0, f"(the case raised on {a.name}: {res_a.error})")
            if diffs:
                diverged += 1
                print(f"DIFF {c.name}", flush=True)
                for d in diffs:
                    print(f"       {d}", flush=True)
            elif args.verbose:
                print(f"ok   {c.name} ({len(res_a.obs)} observations)", flush=True)
    ran = len(cases) - skipped
    print(f"{ran} cases run, {diverged} diverged, {skipped} not run (need mounts); "
          f"{time.monotonic() - t0:.1f}s", flush=True)
    return 1 if diverged else 0


if __name__ == "__main__":
    sys.exit(main())
