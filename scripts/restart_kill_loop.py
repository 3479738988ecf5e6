#!/usr/bin/env python3
"""The stress oracle on a restartable shmfs while a loop SIGKILLs its server.

    scripts/restart_kill_loop.py [--seconds S] [--kills N] [--gap G] [--procs P]
                                 [--seed SEED] [--size 1g] [--json FILE]

Mounts a fresh ``-o restartable`` shmfs (mount.mounting.managed, always taken
down), runs scripts/stress.py inside it (``--dir``: every read verified
against the workers' models, the shared-directory races checked at the end,
any unexpected errno -- ENOTCONN included -- a failure), and meanwhile kills
the serving child again and again: ask the supervisor which child serves
(which also waits until one does, no sleep), wait a random 0..2G seconds
(the random moment), SIGKILL it, until N kills were made or the stress run
ends. Prints and returns (``--json``) the stress summary, the number of
kills, the time from each kill until the next child served (restart, replay,
resend), and the load average. Exit status 0 only if the stress run passed,
the wanted number of kills was made, and the log of the supervisor and its
children holds no error record.

The CI version is tests/restart/test_kill_loop.py (50 kills in about a
minute); docs/reliability.md has the figures of the longer runs.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from mount.mounting.managed import daemon_log_errors, managed_shmfs  # noqa: E402
from mount.server.supervisor import request_restart  # noqa: E402

STRESS = REPO / "scripts" / "stress.py"


def loadavg() -> str:
    return Path("/proc/loadavg").read_text().split(" ", 3)[:3].__str__()


class Killer(threading.Thread):
    """Kills the serving child at random moments until told to stop or ``kills`` done."""

    def __init__(self, mnt: Path, kills: int, gap: float, seed: int) -> None:
        super().__init__(name="killer", daemon=True)
        self.mnt, self.kills, self.gap = mnt, kills, gap
        self.rng = random.Random(seed)
        self.stop = threading.Event()
        self.done: list[dict[str, float]] = []  # per kill: pid, generation, seconds to serve
        self.error: str | None = None

    def _serving(self) -> tuple[int, int]:
        ok, msg = request_restart(self.mnt, 60.0, request="status")
        if not ok:
            raise RuntimeError(f"supervisor: {msg}")
        _, pid, gen = msg.split()
        return int(pid), int(gen)

    def run(self) -> None:
        try:
            pid, gen = self._serving()
            while len(self.done) < self.kills and not self.stop.is_set():
                # the random moment; the stop event only shortens the wait
                if self.stop.wait(self.rng.uniform(0, 2 * self.gap)):
                    break
                t0 = time.monotonic()
                os.kill(pid, signal.SIGKILL)
                new, new_gen = self._serving()
                while new == pid:  # the supervisor has not seen the death yet
                    new, new_gen = self._serving()
                self.done.append({"pid": pid, "generation": gen,
                                  "serving_after_s": time.monotonic() - t0})
                pid, gen = new, new_gen
        except Exception as e:  # reported in the summary: the run fails
            self.error = repr(e)


def run(args: argparse.Namespace) -> dict[str, Any]:
    """One run (see the module docstring): the summary."""
    load_before = loadavg()
    piddir = Path(tempfile.mkdtemp(prefix="shmfs-killloop-"))
    out = piddir / "stress.json"
    summary: dict[str, Any] = {"seed": args.seed, "load_before": load_before}
    try:
        with managed_shmfs(f"restartable,size={args.size}", prefix="shmfs-killloop-",
                           extra_args=("--pidfile", str(piddir / "pid"))) as m:
            killer = Killer(m.path, args.kills, args.gap, args.seed)
            cmd = [sys.executable, str(STRESS), "--dir", str(m.path), "--seconds",
                   str(args.seconds), "--procs", str(args.procs), "--seed", str(args.seed),
                   "--json", str(out)]
            if args.skip:
                cmd += ["--skip", args.skip]
            t0 = time.monotonic()
            stress = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE,
                                      stderr=subprocess.STDOUT, text=True)
            killer.start()
            text, _ = stress.communicate(timeout=args.seconds + 600)
            killer.stop.set()
            killer.join(120)
            summary["elapsed_s"] = time.monotonic() - t0
            summary["stress_rc"] = stress.returncode
            summary["stress_tail"] = text[-6000:]
            summary["supervisor_alive"] = m.poll() is None
        summary["log_errors"] = daemon_log_errors(m.log_text)
        summary["log_tail"] = m.log_text[-30000:]  # the supervisor's and children's log
        summary["restarts_logged"] = m.log_text.count("starting generation")
        s = json.loads(out.read_text()) if out.exists() else {}
    finally:
        shutil.rmtree(piddir, ignore_errors=True)
    gaps = [k["serving_after_s"] for k in killer.done]
    summary.update({
        "load_after": loadavg(),
        "kills": len(killer.done),
        "killer_error": killer.error,
        "serving_after_kill_s": {
            "min": min(gaps, default=0.0), "median": statistics.median(gaps) if gaps else 0.0,
            "max": max(gaps, default=0.0)},
        "ops": s.get("ops"), "errors": s.get("errors"), "failures": s.get("failures"),
        "shared_errors": s.get("shared_errors"), "bytes_verified": s.get("bytes_verified"),
        "per_kind": s.get("per_kind"),
    })
    summary["passed"] = bool(
        summary["stress_rc"] == 0 and s.get("errors") == 0 and summary["kills"] >= args.kills
        and killer.error is None and not summary["log_errors"] and summary["supervisor_alive"])
    return summary


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seconds", type=float, default=60.0, help="stress run length")
    p.add_argument("--kills", type=int, default=50, help="kills wanted (the loop stops there)")
    p.add_argument("--gap", type=float, default=0.3,
                   help="mean seconds between a child serving and its kill")
    p.add_argument("--procs", type=int, default=3)
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--size", default="1g")
    p.add_argument("--skip", default="", help="stress kinds to leave out")
    p.add_argument("--json", type=Path)
    args = p.parse_args(argv)

    def on_term(signum: int, _frame: object) -> None:  # unwind: the mount is taken down
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, on_term)
    if args.seed is None:
        args.seed = int(time.time()) % 100000
    s = run(args)
    g = s["serving_after_kill_s"]
    print(s["stress_tail"].rstrip()[-3000:])
    print(f"kills: {s['kills']} (wanted {args.kills}); serving again after a kill: "
          f"min {g['min']:.3f} s, median {g['median']:.3f} s, max {g['max']:.3f} s")
    print(f"ops {s['ops']}, errors {s['errors']}, bytes verified {s['bytes_verified']}; "
          f"load {s['load_before']} -> {s['load_after']}; seed {s['seed']}")
    if s["killer_error"]:
        print(f"killer: {s['killer_error']}")
    for e in s["log_errors"]:
        print(f"log error: {e}")
    print("PASS" if s["passed"] else "FAIL")
    if args.json:
        args.json.write_text(json.dumps(s, indent=1))
    return 0 if s["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
