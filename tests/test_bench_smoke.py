"""Smoke test of scripts/bench.py: a --quick run, tmpfs against tmpfs, both engines.

Checks the shape of what the benchmark produces -- every workload present in
the JSON for both targets, positive and self-consistent numbers, the floors
and the machine/kernel/command record -- and that it unmounts what it mounted.
No timing thresholds: how fast anything is is the benchmark's business.
As root the targets are fresh kernel tmpfs mounts; otherwise two plain
directories (the same code paths except mounting and drop_caches). With a
live mount, shmfs targets (``shmfs:OPT+OPT`` too) are mounted, described
(pid, RSS at mount, command) and taken down, also by a SIGTERM mid-run.
Each run gets its own TMPDIR, so "nothing left behind" is checked where its
mounts were, whatever other test runs on the machine are doing.
"""

from __future__ import annotations

import json
import math
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.mounts import leftovers

REPO = Path(__file__).resolve().parents[1]
BENCH = REPO / "scripts" / "bench.py"
sys.path.insert(0, str(REPO / "scripts"))

from benchlib.report import FLOORS  # noqa: E402
from benchlib.targets import parse_targets  # noqa: E402
from benchlib.workloads import Config  # noqa: E402

# UML boots take far longer than a smoke test may; that unit is run by the
# benchmark proper (and skipped there with a note when uml_boot.py is absent).
SKIPPED_UNITS = ["uml_boot"]


@pytest.mark.parametrize(("engine", "repeat"), [("c", 1), ("python", 2)])
def test_quick_run_produces_every_workload(tmp_path: Path, engine: str, repeat: int) -> None:
    if os.geteuid() == 0:
        targets = "tmpfs,tmpfs"
    else:
        (tmp_path / "a").mkdir()
        (tmp_path / "b").mkdir()
        targets = f"dir:{tmp_path / 'a'},dir:{tmp_path / 'b'}"
    out = tmp_path / "result.json"
    (tmp_path / "tmp").mkdir()
    proc = subprocess.run(
        [sys.executable, str(BENCH), "--quick", "--targets", targets, "--engine", engine,
         "--repeat", str(repeat),
         "--skip", ",".join(SKIPPED_UNITS), "--report-floors", "--json", str(out)],
        capture_output=True, text=True, timeout=120, check=False, cwd=REPO,
        env=dict(os.environ, TMPDIR=str(tmp_path / "tmp")),  # its mounts: ours alone
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert _left(tmp_path) == [], "bench.py left a mount behind"

    doc = json.loads(out.read_text())
    meta = doc["meta"]
    for key in ("kernel", "cpu", "cpus", "command", "hostname", "date", "git"):
        assert meta[key], key
    assert meta["engine"] == engine
    assert "bench.py" in meta["command"]
    labels = [t["label"] for t in meta["targets"]]
    assert len(labels) == 2 and labels[0] != labels[1]

    results = doc["results"]
    units = {r["name"] for r in results}
    expected = {
        "seq_write_1m", "seq_read_cold_1m", "seq_read_warm_1m",
        "seq_write_128k", "seq_read_cold_128k", "seq_read_warm_128k",
        "rand_read_4k", "rand_write_4k", "rand_read_4k_smallfile", "rand_write_4k_smallfile",
        "mmap_first_touch", "daemon_rss",
        *(f"{op}{sfx}" for op in ("create", "stat_warm", "readdir", "stat_expired", "unlink")
          for sfx in ("", "_smalldir")),
    }
    assert units == expected
    cfg = Config.quick()
    assert len(results) == len(expected) * 2  # one (median) result per name and target
    for r in results:
        if repeat > 1 and not r["skipped"]:
            assert r["params"]["runs"] == repeat and len(r["params"]["speeds"]) == repeat
        assert r["run"]["kernel"] == meta["kernel"] and r["run"]["command"] == meta["command"]
        assert r["params"]["engine"] == engine
        if r["name"] == "daemon_rss":  # no daemon on a kernel filesystem
            assert r["skipped"]
            continue
        if r["name"].startswith("stat_expired") and os.geteuid() != 0:
            assert r["skipped"]  # no drop_caches without root, and no --attr-timeout given
            continue
        assert r["skipped"] is None, r
        _check_sane(r)
        if r["kind"] == "bytes":
            assert r["bytes"] == (cfg.mmap_bytes if r["name"] == "mmap_first_touch"
                                  else cfg.seq_bytes)
        else:
            assert r["kind"] == "ops"
    by = {(r["name"], r["target"]): r for r in results}
    for lb in labels:
        assert by[("rand_read_4k", lb)]["ops"] == cfg.rand_ops
        assert by[("create", lb)]["ops"] == cfg.dir_large
        assert by[("create_smalldir", lb)]["ops"] == cfg.dir_small * cfg.dir_small_rounds
        # readdir returns every entry plus . and ..
        assert by[("readdir", lb)]["ops"] == cfg.dir_large + 2

    floors = doc["floors"]
    assert [(f["issue"], f["name"]) for f in floors] == [(f.issue, f.name) for f in FLOORS]
    _check_floor_verdicts(floors, by, labels[0])
    measured = {f["name"]: f["met"] for f in floors if f["issue"] == 6}
    for name in ("seq_write_1m", "rand_read_4k", "create"):
        assert isinstance(measured[name], bool)
    assert measured["uml_boot"] is None and measured["daemon_rss"] is None
    assert "Floors of issue 6" in proc.stdout and "Floors of issue 2" in proc.stdout
    assert out.with_suffix(".png").stat().st_size > 10_000

    # the saved run can be reported again without running anything
    again = subprocess.run(
        [sys.executable, str(BENCH), "--from-json", str(out), "--no-png", "--check-floors"],
        capture_output=True, text=True, timeout=60, check=False, cwd=REPO,
    )
    missed = [f["name"] for f in floors if f["met"] is False]
    assert again.returncode == (1 if missed else 0), again.stderr[-3000:]
    assert "seq_read_cold_1m" in again.stdout and "Floors of issue 6" in again.stdout
    if engine == "c":  # the exit status of --check-floors, on doctored copies of this run
        _check_floors_exit_status(doc, labels[0], tmp_path)


# Units sanity, orders of magnitude wide (not timing assertions): catches a figure
# in the wrong unit (ns for µs, bytes for GiB) or from a broken division, nothing else.
GIB_PER_S_RANGE = (1e-4, 1e4)  # no machine moves memory faster than 10 TiB/s
US_PER_OP_RANGE = (1e-3, 1e7)  # a syscall takes more than a nanosecond, less than 10 s


def _check_sane(r: dict) -> None:
    """A result's figures: positive, finite, consistent with ns/ops/bytes, plausible units."""
    assert isinstance(r["ns"], int) and r["ns"] > 0, r
    assert isinstance(r["ops"], int) and r["ops"] > 0, r
    for key in ("us_per_op", "ops_per_s"):
        assert isinstance(r[key], float) and math.isfinite(r[key]) and r[key] > 0, (key, r)
    assert r["us_per_op"] == pytest.approx(r["ns"] / 1e3 / r["ops"]), r
    assert r["ops_per_s"] == pytest.approx(r["ops"] / (r["ns"] / 1e9)), r
    assert r["us_per_op"] == pytest.approx(1e6 / r["ops_per_s"]), r
    if r["kind"] == "bytes":
        assert math.isfinite(r["gib_per_s"]) and r["gib_per_s"] > 0, r
        assert r["gib_per_s"] == pytest.approx(r["bytes"] / 2**30 / (r["ns"] / 1e9)), r
        assert GIB_PER_S_RANGE[0] < r["gib_per_s"] < GIB_PER_S_RANGE[1], r
    else:
        assert US_PER_OP_RANGE[0] < r["us_per_op"] < US_PER_OP_RANGE[1], r


def _check_floor_verdicts(floors: list[dict], by: dict, subject: str) -> None:
    """Each measured floor quotes the subject's own figure and its verdict follows
    from that figure and the bound; an unmeasured one says so."""
    bounds = {(f.issue, f.name): f for f in FLOORS}
    for f in floors:
        spec = bounds[(f["issue"], f["name"])]
        if f["met"] is None:
            assert f["measured"].startswith("not measured"), f
            continue
        value = by[(f["name"], subject)][spec.metric]
        shown = float(re.match(r"[\d.,]+", f["measured"]).group().replace(",", ""))
        assert shown == pytest.approx(value, rel=0.05, abs=0.06), (f, value)
        if spec.metric == "us_per_op":
            assert f["met"] == (value <= spec.bound), (f, value)
        else:
            assert f["met"] == (value >= spec.bound), (f, value)


def _check_floors_exit_status(doc: dict, subject: str, tmp_path: Path) -> None:
    """--check-floors on a saved run: 0 when every measured floor is met (the subject
    made a thousand times faster), 1 naming the floor when one is missed."""

    def report(ns_of: dict[str, float], name: str) -> subprocess.CompletedProcess[str]:
        copy = json.loads(json.dumps(doc))
        for r in copy["results"]:
            if r["target"] == subject and not r["skipped"]:
                r["ns"] = max(1, int(r["ns"] * ns_of.get(r["name"], 1e-3)))
        path = tmp_path / name
        path.write_text(json.dumps(copy))
        return subprocess.run(
            [sys.executable, str(BENCH), "--from-json", str(path), "--no-png", "--check-floors"],
            capture_output=True, text=True, timeout=60, check=False, cwd=REPO)

    fast = report({}, "fast.json")
    assert fast.returncode == 0, fast.stdout + fast.stderr
    assert "NOT MET" not in fast.stdout
    slow = report({"seq_write_1m": 1e6}, "slow-write.json")
    assert slow.returncode == 1, slow.stdout + slow.stderr
    assert "floor(s) not met" in slow.stderr and "sequential write" in slow.stderr, slow.stderr
    assert slow.stdout.count("NOT MET") == 2  # the floor of issue 6 and the one of issue 2
    kept = subprocess.run(
        [sys.executable, str(BENCH), "--from-json", str(tmp_path / "slow-write.json"),
         "--no-png", "--report-floors"],
        capture_output=True, text=True, timeout=60, check=False, cwd=REPO)
    assert kept.returncode == 0 and "NOT MET" in kept.stdout, kept.stderr


def test_target_specs() -> None:
    sub, ref = parse_targets("shmfs:cpu_latency=off+nr_inodes=5000,tmpfs", "1g")
    assert (sub.kind, sub.extra_options, sub.label) == ("shmfs", "cpu_latency=off,nr_inodes=5000",
                                                         "shmfs:cpu_latency=off+nr_inodes=5000")
    assert (ref.kind, ref.extra_options, ref.size) == ("tmpfs", "", "1g")
    assert [t.label for t in parse_targets("shmfs,shmfs", "1g")] == ["shmfs", "shmfs#2"]
    with pytest.raises(ValueError):
        parse_targets("shmfs", "1g")
    with pytest.raises(ValueError):
        parse_targets("ext4,tmpfs", "1g")


@pytest.mark.skipif(os.geteuid() != 0, reason="mounts a shmfs")
def test_shmfs_env_items_go_to_the_daemon_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """``shmfs:SHMFS_NAME=VALUE+OPT``: the SHMFS_ item is in that daemon's environment
    (its /proc/PID/environ), not in its -o options nor left in ours; OPT is an option."""
    monkeypatch.delenv("SHMFS_CLONE_SPIN_US", raising=False)
    (t, _ref) = parse_targets("shmfs:SHMFS_CLONE_SPIN_US=7+nr_inodes=5000,tmpfs", "64m")
    try:
        t.open()
        assert "SHMFS_CLONE_SPIN_US" not in os.environ
        assert t.env == {"SHMFS_CLONE_SPIN_US": "7"}
        assert t.mount_options == "size=64m,nr_inodes=5000"
        assert t.daemon_pid is not None
        with open(f"/proc/{t.daemon_pid}/environ", "rb") as f:
            environ = f.read().split(b"\0")
        assert b"SHMFS_CLONE_SPIN_US=7" in environ
    finally:
        t.close()


def _bench(tmp_path: Path, *args: str) -> subprocess.Popen[str]:
    """bench.py with its temporary mountpoints (TMPDIR) in tmp_path/tmp."""
    (tmp_path / "tmp").mkdir()
    env = dict(os.environ, TMPDIR=str(tmp_path / "tmp"))
    return subprocess.Popen([sys.executable, str(BENCH), "--quick", "--no-png", *args],
                            cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)


def _left(tmp_path: Path) -> list[str]:
    """Leftover mounts/daemons, and directories other than the C helper's cache."""
    dirs = [p.name for p in (tmp_path / "tmp").iterdir() if p.name != "shmfs-bench"]
    return leftovers(tmp_path / "tmp") + dirs


@pytest.mark.mount
def test_shmfs_targets_are_mounted_described_and_taken_down(tmp_path: Path) -> None:
    out = tmp_path / "result.json"
    proc = _bench(tmp_path, "--targets", "shmfs:cpu_latency=off+nr_inodes=100000,shmfs",
                  "--size", "1g", "--only", "rand_4k,meta", "--json", str(out))
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 0, stderr[-3000:]
    targets = json.loads(out.read_text())["meta"]["targets"]
    for t, opts in zip(targets, ["size=1g,cpu_latency=off,nr_inodes=100000", "size=1g"],
                       strict=True):
        assert t["kind"] == "shmfs" and t["fstype"] == "fuse.shmfs"
        assert t["mount_options"] == opts
        assert t["command"][t["command"].index("-o") + 1] == opts
        assert t["path"] in t["command"] and "-f" in t["command"]
        assert isinstance(t["daemon_pid"], int) and t["daemon_rss_at_mount"] > 0
        assert f"daemon pid {t['daemon_pid']}" in stderr
    assert targets[0]["path"] != targets[1]["path"]
    assert _left(tmp_path) == []  # unmounted, daemons gone, directories removed


@pytest.mark.mount
def test_sigterm_mid_run_unmounts_everything(tmp_path: Path) -> None:
    proc = _bench(tmp_path, "--targets", "shmfs,shmfs", "--size", "1g",
                  "--json", str(tmp_path / "never.json"))
    assert proc.stderr is not None
    seen = []
    for line in proc.stderr:  # until the second workload is under way
        seen.append(line)
        if line.startswith("[ 2/"):
            break
    assert seen[-1].startswith("[ 2/"), "".join(seen)
    proc.send_signal(signal.SIGTERM)  # the same path as Ctrl-C (KeyboardInterrupt)
    _, rest = proc.communicate(timeout=120)
    assert proc.returncode == 130, "".join(seen) + rest
    assert "interrupted; everything mounted was unmounted" in rest
    assert not (tmp_path / "never.json").exists()
    assert _left(tmp_path) == []
