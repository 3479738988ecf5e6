"""What ``shmfs stat`` reports about the session: requests by opcode with their
service times, counted the same on the fast path (GETATTR/LOOKUP/...) and the
generic one, and a STATS ioctl that does no work it could have done earlier.

The session runs in its own process over a socketpair (tests/reliability
session_driver), exactly as it serves /dev/fuse."""

from __future__ import annotations

import json
import struct
import subprocess
import sys
from itertools import count
from pathlib import Path

from tests.reliability import wire as W

REPO = Path(__file__).resolve().parents[2]


def test_every_request_is_counted_once_with_a_non_negative_service_time() -> None:
    """Fast-path requests (GETATTR, LOOKUP) and generic ones (OPENDIR, STATFS,
    READDIR, RELEASEDIR, MKDIR) interleaved: each opcode's count is exactly what
    was sent and its mean service time is >= 0 (issue 15 saw negative means)."""
    uniques = count(100)
    sent: dict[int, int] = {}

    def call(ch: W.Channel, opcode: int, nodeid: int, body: bytes = b"") -> W.Reply:
        sent[opcode] = sent.get(opcode, 0) + 1
        return ch.call(opcode, next(uniques), nodeid, body)

    with W.served_session() as ch:
        d = call(ch, W.MKDIR, 1, struct.pack("<II", 0o755, 0o022) + b"d\0")
        assert d.error == 0
        for _ in range(50):
            assert call(ch, W.LOOKUP, 1, b"d\0").error == 0
            assert call(ch, W.LOOKUP, 1, b"missing\0").error < 0
            assert call(ch, W.GETATTR, 1, bytes(16)).error == 0
            o = call(ch, W.OPENDIR, 1, struct.pack("<II", 0, 0))
            assert o.error == 0
            fh = struct.unpack_from("<Q", o.payload)[0]
            readdir_in = struct.pack("<QQIIQII", fh, 0, 4096, 0, 0, 0, 0)
            assert call(ch, W.READDIR, 1, readdir_in).error == 0
            assert call(ch, W.RELEASEDIR, 1, struct.pack("<QIIQ", fh, 0, 0, 0)).error == 0
            assert call(ch, W.STATFS, 1).error == 0
    reqs = ch.final_stats["session"]["requests"]  # type: ignore[index]
    # every exchange also sent one root GETATTR probe (W.Channel.exchange),
    # the INIT of served_session's included
    probes = sum(sent.values()) + 1
    expected = dict(sent)
    expected[W.GETATTR] = expected.get(W.GETATTR, 0) + probes
    for opcode, n in expected.items():
        v = reqs[str(opcode)]
        assert v["count"] == n, (opcode, v, n)
        assert v["mean_us"] >= 0, (opcode, v)
    for opcode, v in reqs.items():
        assert v["mean_us"] >= 0, (opcode, v)
        # the exact total, for differences between two snapshots
        assert isinstance(v["total_ns"], int) and v["total_ns"] >= 0
        assert abs(v["total_ns"] / v["count"] / 1000 - v["mean_us"]) < 1e-6


_NO_IMPORT_ON_STATS = r"""
import json, os, struct, sys
from fsimpl import FsOptions, ShmFs
from mount.server.ops import Operations
from mount.wire.codec import parse_request
from mount.winapi.abi import SHMFS_IOC_STATS, STATS_HEAD, STATS_SIZE

fs = ShmFs(FsOptions(size_bytes=1 << 24, nr_inodes=100))
ops = Operations(fs)
before = set(sys.modules)
body = struct.pack("<QIIQII", 0, 1 << 4, SHMFS_IOC_STATS, 0, STATS_SIZE, STATS_SIZE)
data = bytearray(STATS_SIZE)
STATS_HEAD.pack_into(data, 0, 0, 0, 0, 0)
msg = struct.pack("<IIQQIIIHH", 40 + len(body) + STATS_SIZE, 39, 5, 1, 0, 0, 1, 0, 0)
out = ops.handle(parse_request(memoryview(msg + body + bytes(data))))
reply = b"".join(bytes(b) for b in out)
error = struct.unpack_from("<i", reply, 4)[0]
_off, total, n, _f = STATS_HEAD.unpack_from(reply, 16 + 16)
doc = json.loads(reply[16 + 16 + STATS_HEAD.size : 16 + 16 + STATS_HEAD.size + n])
print(json.dumps({"error": error, "new": sorted(set(sys.modules) - before),
                  "inodes": doc["fs"]["inodes"]}))
"""


def test_the_stats_ioctl_imports_nothing_on_the_request_path() -> None:
    """The first STATS (or any ioctl: every Python open() sends a TCGETS) used to
    import the window and ioctl modules inside the request, 40-80 ms of service
    time (issue 15). A fresh process: once Operations exists, serving STATS may
    not import any module."""
    out = subprocess.run([sys.executable, "-c", _NO_IMPORT_ON_STATS], cwd=REPO, check=True,
                         capture_output=True, text=True, timeout=120).stdout
    res = json.loads(out.strip().splitlines()[-1])
    assert res["error"] == 0
    assert res["inodes"] == 1
    assert res["new"] == [], res["new"]
