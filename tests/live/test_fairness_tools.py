"""The fairness measuring tools (issue 15): the mixed stress's command line, the
latency script on a plain directory, and the trace breakdown's arithmetic on a
made-up timeline (so that the parts docs/performance.md change 24 reports mean
what they say)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "scripts"))

from latencytrace import breakdown, parse_kernel  # noqa: E402
from stresslib.mixed import ROLES  # noqa: E402


def test_stress_mixed_command_reports_every_role(tmp_path: Path) -> None:
    out = tmp_path / "mixed.json"
    p = subprocess.run([sys.executable, str(REPO / "scripts" / "stress.py"), "--mixed",
                        "--seconds", "0.5", "--dir", str(tmp_path), "--json", str(out)],
                       capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stdout + p.stderr
    s = json.loads(out.read_text())
    assert set(s["workers"]) == set(ROLES) and s["starved"] == [] and s["errors"] == 0
    for role in ROLES:
        assert role in p.stdout


def test_latency_script_on_a_directory(tmp_path: Path) -> None:
    p = subprocess.run([sys.executable, str(REPO / "scripts" / "latency_under_streams.py"),
                        str(tmp_path), "--seconds", "0.3", "--streams", "0"],
                       capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr
    assert "create+close x" in p.stdout and "median" in p.stdout
    assert not list((tmp_path / "c").iterdir())  # every file it made removed


def test_breakdown_attributes_queue_time_to_the_write_in_progress(tmp_path: Path) -> None:
    # a WRITE (unique 2) read from t=0 to 100 us, handled until 300 us; a LOOKUP
    # (unique 4, sent by pid 77 at 50 us) read at 300-302, handled 302-320, ended at 321
    ktrace = tmp_path / "k"
    ktrace.write_text(
        " python3-50      [000] .....     0.000000: fuse_request_send: connection 9 req 2 "
        "opcode 16 (FUSE_WRITE) len 1048656\n"
        " python3-77      [001] .....     0.000050: fuse_request_send: connection 9 req 4 "
        "opcode 1 (FUSE_LOOKUP) len 45\n"
        " python3-1       [001] .....     0.000300: fuse_request_end: connection 9 req 2 "
        "len 24 error 0\n"
        " python3-1       [001] .....     0.000321: fuse_request_end: connection 9 req 4 "
        "len 144 error 0\n"
        " python3-77      [001] .....     0.000400: fuse_request_send: connection 8 req 4 "
        "opcode 1 (FUSE_LOOKUP) len 45\n")  # another connection: ignored
    kernel = parse_kernel(ktrace, 9)
    assert set(kernel) == {2, 4} and kernel[4]["pid"] == 77
    us = 1000
    daemon = {
        2: [2, 16, 1048656, 1, 0, 100 * us, 100 * us, 300 * us, 150 * us],
        4: [4, 1, 45, 1, 300 * us, 302 * us, 302 * us, 320 * us, 18 * us],
    }
    b = breakdown(kernel, daemon, 77)
    small = b["small"]
    assert small["total"]["n"] == 1
    assert small["total"]["mean"] == 271.0  # 50 -> 321
    assert small["queued_behind_write"]["mean"] == 250.0  # 50 -> 300, the WRITE in progress
    assert small["queued_other"]["mean"] == 0.0
    assert small["read"]["mean"] == 2.0
    assert small["handle"]["mean"] == 18.0 and small["handle_off_cpu"]["mean"] == 0.0
    assert small["reply_to_end"]["mean"] == 1.0
    w = b["write"]
    assert w["read"]["mean"] == 100.0 and w["handle"]["mean"] == 200.0
    assert w["handle_off_cpu"]["mean"] == 50.0
    assert breakdown(kernel, daemon, 78)["small"]["total"]["n"] == 0  # another sender
