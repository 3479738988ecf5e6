#!/usr/bin/env python3
"""Boot User-Mode Linux with its physical memory in a directory and time it.

UML's memory file goes to ``--dir`` (through TMPDIR), the guest touches some
memory, checks a payload's md5 and powers off. With ``--unplug N`` the guest
waits once its memory is touched, N MiB are unplugged through uml_mconsole and
the space the filesystem (and, with ``--daemon-pid``, the shmfs daemon) got
back is measured. Used by the demo and the benchmark; tests use the same
harness (tests/support/uml.py).

    sudo .venv/bin/python scripts/uml_boot.py --dir /mnt/shmfs
    sudo .venv/bin/python scripts/uml_boot.py --dir /mnt/shmfs --unplug 64 \\
        --daemon-pid "$(pgrep -f 'mount.cli /mnt/shmfs')" --json

Exit status 0 when the guest ran its workload, MADV_REMOVE worked and UML
halted cleanly (and the unplug was accepted); 1 otherwise.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.support.uml import (  # noqa: E402  (needs the repo on sys.path)
    BOOT_TIMEOUT,
    DEFAULT_MEM_MIB,
    DEFAULT_TOUCH_MIB,
    MIB,
    Run,
    UmlError,
    boot,
    payload_md5,
    unplug_run,
)


def _problems(run: Run, touch_mib: int) -> list[str]:
    res = run.result
    out = []
    if not res.madv_remove_ok:
        out.append("MADV_REMOVE check did not print OK")
    if touch_mib and res.markers.get("payload_md5") != payload_md5(touch_mib):
        out.append(f"payload md5 {res.markers.get('payload_md5')!r} != expected")
    if not res.halted:
        out.append(f"no clean halt (rc={res.returncode}, panicked={res.panicked})")
    if run.leftovers:
        out.append(f"UML processes left: {run.leftovers}")
    if run.unplug is not None and not run.unplug.reply.startswith("OK"):
        out.append(f"unplug refused: {run.unplug.reply!r}")
    return out


def _as_dict(run: Run, wall: float, problems: list[str]) -> dict[str, object]:
    res = run.result
    d: dict[str, object] = {
        "command": run.command, "wall_seconds": wall, "returncode": res.returncode,
        "halted": res.halted, "madv_remove_ok": res.madv_remove_ok,
        "timings": res.timings, "markers": res.markers,
        "used_baseline": run.used_baseline, "used_ready": run.used_ready,
        "used_end": run.used_end, "problems": problems,
    }
    if run.unplug is not None:
        u = run.unplug
        d["unplug"] = {"requested": u.requested_bytes, "reply": u.reply,
                       "used_before": u.used_before, "used_after": u.used_after,
                       "used_drop": u.used_drop, "rss_before": u.rss_before,
                       "rss_after": u.rss_after, "rss_drop": u.rss_drop,
                       "seconds": u.seconds}
    return d


def _print_text(run: Run, wall: float, problems: list[str]) -> None:
    res = run.result
    print("command:", " ".join(run.command))
    for name, t in res.timings.items():
        print(f"  {name:<11} {t:8.3f} s")
    print(f"wall: {wall:.3f} s  halted: {res.halted}  MADV_REMOVE: "
          f"{'OK' if res.madv_remove_ok else 'FAILED'}")
    if run.unplug is not None:
        u = run.unplug
        print(f"unplug {u.requested_bytes // MIB} MiB: reply {u.reply!r} in {u.seconds:.3f} s; "
              f"fs used {u.used_before / MIB:.1f} -> {u.used_after / MIB:.1f} MiB "
              f"(-{u.used_drop / MIB:.1f})")
        if u.rss_drop is not None and u.rss_before is not None and u.rss_after is not None:
            print(f"  daemon VmRSS {u.rss_before / MIB:.1f} -> {u.rss_after / MIB:.1f} MiB "
                  f"(-{u.rss_drop / MIB:.1f})")
    for p in problems:
        print("PROBLEM:", p)


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, run one boot (or boot + unplug), print the result."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dir", type=Path, required=True,
                    help="directory for UML's memory file (TMPDIR)")
    ap.add_argument("--mem", type=int, default=DEFAULT_MEM_MIB, help="guest memory, MiB")
    ap.add_argument("--touch", type=int, default=DEFAULT_TOUCH_MIB,
                    help="MiB of guest memory the workload writes and frees")
    ap.add_argument("--unplug", type=int, default=0, help="MiB to unplug while the guest waits")
    ap.add_argument("--daemon-pid", type=int, help="shmfs daemon whose VmRSS to measure")
    ap.add_argument("--timeout", type=float, default=BOOT_TIMEOUT, help="seconds per phase")
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    ap.add_argument("--log", action="store_true", help="also print UML's console log")
    args = ap.parse_args(argv)
    if not args.dir.is_dir():
        ap.error(f"--dir {args.dir}: not a directory")

    t0 = time.monotonic()
    try:
        if args.unplug:
            run = unplug_run(args.dir, args.unplug, daemon_pid=args.daemon_pid,
                             mem_mib=args.mem, touch_mib=args.touch, timeout=args.timeout)
        else:
            run = boot(args.dir, mem_mib=args.mem, touch_mib=args.touch, timeout=args.timeout)
    except UmlError as e:
        print(f"uml_boot: {e}", file=sys.stderr)
        return 1
    wall = time.monotonic() - t0
    problems = _problems(run, args.touch)
    if args.log:
        print(run.result.log)
    if args.json:
        print(json.dumps(_as_dict(run, wall, problems), indent=2, default=str))
    else:
        _print_text(run, wall, problems)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
