"""remap_file_pages(2) for unmodified programs (issue 16): C programs run under
`shmfs run` on a live shmfs and, without the library, on a kernel tmpfs (the oracle:
Linux's 4.0+ emulation of the syscall).

What each test proves:
* test_rows_match_tmpfs: every kernel-semantics.md section 6 row a syscall caller can
  observe (tests/rfp/rows.c) gives the same result as on tmpfs, except the documented
  differences: the VMA count (one per window under the library) and MAP_CHGPROT.
* test_chgprot_*: the per-page protection extension: a store to a page made
  read-only by MAP_CHGPROT gets SIGSEGV with si_addr = that page.
* test_past_the_wall: 200,000 single-page remaps in one 1 GiB mapping complete on
  shmfs with every page verified and one VMA, while tmpfs stops with ENOMEM.
* test_threads_and_fork: two threads remapping halves of a mapping; a child after
  fork sees the parent's layout.
* test_unprivileged_user_*: the library reaches only what the program's own
  descriptors reach.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from mount.cli.run import is_dynamic_elf, library_path, preload_env
from mount.winapi.client import mount_stats
from tests.rfp.conftest import shmfs_cmd
from tests.support.mounts import shmfs_mount

pytestmark = pytest.mark.mount

SIGSEGV_AT_PAGE = 100 + 11  # rows.c touch(): died of SIGSEGV with si_addr == the page
SIGBUS_AT_PAGE = 100 + 7


def run(cmd: list[str], *, preload: bool, timeout: float = 300) -> str:
    """Run cmd (under `shmfs run` if preload) and return its stdout; it must exit 0."""
    full = [*shmfs_cmd(), "run", "--", *cmd] if preload else cmd
    env = {k: v for k, v in os.environ.items() if k != "LD_PRELOAD"}
    p = subprocess.run(full, capture_output=True, text=True, timeout=timeout, env=env)
    assert p.returncode == 0, (full, p.returncode, p.stdout, p.stderr)
    return p.stdout


def parse(out: str) -> dict[str, dict[str, str]]:
    """rows.c lines ("name key=value ...") as {name: {key: value}}."""
    rows: dict[str, dict[str, str]] = {}
    for line in out.splitlines():
        name, *pairs = line.split()
        rows[name] = dict(p.split("=", 1) for p in pairs)
    return rows


def windows_left(mnt: Path) -> tuple[int, int]:
    """(live windows, windows ever attached) of the mount's daemon."""
    w = mount_stats(mnt)["windows"]
    return w["windows"], w["counters"].get("attached", 0)


def test_rows_match_tmpfs(rfp_bin: Path, shmfs: Path, tmpfs: Path) -> None:
    want = parse(run([str(rfp_bin / "rows"), str(tmpfs)], preload=False))
    got = parse(run([str(rfp_bin / "rows"), str(shmfs)], preload=True))
    live, attached = windows_left(shmfs)
    assert attached >= len(got) and live == 0  # windows made, and gone with their mappings
    # every file not on shmfs passes straight through: the library changes nothing there
    (tmpfs / "again").mkdir()
    assert parse(run([str(rfp_bin / "rows"), str(tmpfs / "again")], preload=True)) == want
    assert set(got) == set(want) and not any("died" in r for r in got)
    # the documented differences first
    assert want["row1"]["vmas"] == "8" and got["row1"]["vmas"] == "1"  # one VMA per window
    assert want["viasyscall"]["vmas"] == "8" and got["viasyscall"]["vmas"] == "1"  # syscall(3)
    assert want["chgprot"]["ret"] == "-1" and want["chgprot"]["errno"] == "EINVAL"
    assert got["chgprot"]["ret"] == "0"  # the extension (test_chgprot_* below)
    for name in want:
        if name == "chgprot":
            continue
        w = {k: v for k, v in want[name].items() if not k.endswith("vmas")}
        g = {k: v for k, v in got[name].items() if not k.endswith("vmas")}
        assert g == w, name
    # and what the rows say, so that a change on both sides is noticed too
    assert want["row1"]["tags"] == "7,6,5,4,3,2,1,0" and want["row1"]["whole"] == "1"
    assert want["viasyscall"]["tags"] == "7,6,5,4,3,2,1,0"
    assert want["row2"]["errno"] == want["row3"]["errno"] == want["row4"]["errno"] == "EINVAL"
    assert want["row6"]["touch0"] == str(SIGBUS_AT_PAGE) and want["row6"]["touch1"] == "0"
    assert want["row8"]["after_truncate"] == str(SIGBUS_AT_PAGE)
    assert want["row20"]["across"] == "-1/EINVAL" and want["row20"]["write5"] == str(
        SIGSEGV_AT_PAGE)
    assert want["row21"]["write3"] == str(SIGSEGV_AT_PAGE) and want["row21"]["write4"] == "0"
    assert want["row22"]["unmapped"] == "-1/EINVAL"
    assert want["row23"]["child"] == "5,1,7,2,0,3,6,4"
    assert want["store"]["object_page0"] == "X" and want["store"]["page5_ok"] == "1"
    assert want["unmap"] == {"gone": "-1/EINVAL", "rest": "0", "tag5": "2", "fds_left": "0"}
    assert want["moved"] == {"at_dst": "1", "ret": "0/0", "old": "-1/EINVAL", "tag0": "6",
                             "tag1": "5"}
    assert want["row13"] == {"ret": "0", "cow": "X", "read_before": "c", "read_after": "0",
                             "row14_cow_after_truncate": str(SIGBUS_AT_PAGE),
                             "row14_page0": "0"}
    assert want["row11"]["shared_ro"] == "-1/EACCES"
    assert want["row11"]["mprotect_rw_of_rdonly_fd"] == "-1/EACCES"


@pytest.mark.shmfs_options("size=1m")
def test_row15_full_mount_store_to_a_hole_is_sigbus(rfp_bin: Path, shmfs: Path,
                                                     tmpfs: Path) -> None:
    want = parse(run([str(rfp_bin / "rows"), str(tmpfs), "row15"], preload=False))
    got = parse(run([str(rfp_bin / "rows"), str(shmfs), "row15"], preload=True))
    assert got == want
    assert want["row15"] == {"filler_stopped": "ENOSPC", "write": "-1/ENOSPC",
                             "store_hole": str(SIGBUS_AT_PAGE), "store_page0": "0"}


def test_chgprot_read_only_page_gets_sigsegv_at_the_page(rfp_bin: Path, shmfs: Path) -> None:
    r = parse(run([str(rfp_bin / "rows"), str(shmfs), "chgprot"], preload=True))["chgprot"]
    assert r["ret"] == "0" and r["tag2"] == "5"  # remapped to page 5 ...
    assert r["write2"] == str(SIGSEGV_AT_PAGE)  # ... read-only: SIGSEGV, si_addr = the page
    assert r["write3"] == "0"  # its neighbour keeps the VMA's protection
    assert int(r["vmas"]) <= 3  # one VMA per protection run, as 2.6 mprotect split
    # a plain remap gives the page the VMA's protection back: writable again
    assert r["back"] == "0" and r["back_tag2"] == "2" and r["back_write2"] == "0"


def test_past_the_wall(rfp_bin: Path, shmfs: Path, tmpfs: Path) -> None:
    args = ["262144", "200000", "8192"]  # 1 GiB mapping, 200,000 remaps, 32 MiB of blocks
    p = subprocess.run([str(rfp_bin / "bufcache"), str(tmpfs / "db"), *args],
                       capture_output=True, text=True, timeout=300)
    max_map_count = int(Path("/proc/sys/vm/max_map_count").read_text())
    if max_map_count < 2 * 200_000:  # each remap inside a VMA splits it in three
        assert p.returncode == 1 and "errno=ENOMEM" in p.stdout, p.stdout + p.stderr
        at = int(parse(p.stdout)["failed"]["at"])
        assert at < 200_000 and at >= (max_map_count - 1000) // 2 - 1000
    else:  # a machine that raised the limit (some distributions do): no wall there
        assert p.returncode == 0 and int(parse(p.stdout)["done"]["vmas"]) > 200_000
    out = run([str(rfp_bin / "bufcache"), str(shmfs / "db"), *args], preload=True,
              timeout=540)
    r = parse(out)["done"]
    assert r["remaps"] == r["verified"] == "200000"
    assert int(r["vmas"]) <= 2


def test_threads_and_fork(rfp_bin: Path, shmfs: Path) -> None:
    r = parse(run([str(rfp_bin / "threads"), str(shmfs / "t"), "20"], preload=True))["threads"]
    assert r == {"errors": "0", "remaps": "1280", "lost": "0", "child_errors": "0",
                 "vmas": "1"}


def test_unprivileged_user_reaches_only_what_it_opened(rfp_bin: Path) -> None:
    with shmfs_mount("allow_other") as mnt:
        pub, secret = mnt / "public", mnt / "secret"
        pub.write_bytes(b"".join(i.to_bytes(8, "little") + bytes(4088) for i in range(8)))
        secret.write_bytes(b"root only" * 1000)
        pub.chmod(0o644)
        secret.chmod(0o600)
        before = pub.read_bytes()
        # the checkout may sit under a 0700 directory (CI clones into one): give the
        # unprivileged process a copy of the library it can load, preloaded the way
        # `shmfs run` does (that wrapper's environment is tested below)
        built = library_path()
        assert built is not None, "the preload library was not built"
        lib = rfp_bin / "libshmfs_rfp.so"
        shutil.copy(built, lib)
        lib.chmod(0o755)
        env = preload_env(lib, {k: v for k, v in os.environ.items() if k != "LD_PRELOAD"})
        p = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                            str(rfp_bin / "secure"), str(pub), str(secret)],
                           capture_output=True, text=True, timeout=300, env=env)
        assert p.returncode == 0 and "cannot be preloaded" not in p.stderr, p
        assert windows_left(mnt)[1] > 0  # the library made windows: it was loaded
        r = parse(p.stdout)["secure"]
        assert r["open_secret"] == "-1/EACCES"
        assert r["map_write"] == "EACCES"  # PROT_WRITE on an O_RDONLY descriptor
        assert r["remap"] == "0" and r["tag0"] == "7"  # its own file: remaps work
        assert r["beyond"] == "0" and r["touch"] == str(SIGBUS_AT_PAGE)  # nothing past EOF
        assert r["mprotect_write"] == "-1/EACCES"
        assert r["chgprot_write"] == "-1/EACCES"
        assert r["madv_remove"] == "-1/EACCES"
        assert pub.read_bytes() == before
        assert not [n for n in os.listdir(mnt) if n not in ("public", "secret")]


def test_shmfs_run_appends_to_ld_preload_and_spots_static_binaries(tmp_path: Path) -> None:
    lib = library_path()
    assert lib is not None
    env = preload_env(lib, {"LD_PRELOAD": "/x/other.so"})
    assert env["LD_PRELOAD"] == f"/x/other.so {lib}"
    assert preload_env(lib, env)["LD_PRELOAD"] == env["LD_PRELOAD"]
    assert is_dynamic_elf("/bin/true") is True
    script = tmp_path / "s.sh"
    script.write_text("#!/bin/sh\n")
    assert is_dynamic_elf(str(script)) is None
    out = subprocess.run([*shmfs_cmd(), "run", "sh", "-c", "echo $LD_PRELOAD"],
                         capture_output=True, text=True, check=True,
                         env={**os.environ, "LD_PRELOAD": ""}).stdout.split()
    assert out == [str(lib)]
    # a static binary cannot load the library: shmfs run says so, and still runs it
    src = tmp_path / "static.c"
    src.write_text("int main(void) { return 7; }\n")
    subprocess.run(["cc", "-static", "-o", str(tmp_path / "static"), str(src)], check=True)
    assert is_dynamic_elf(str(tmp_path / "static")) is False
    p = subprocess.run([*shmfs_cmd(), "run", "--", str(tmp_path / "static")],
                       capture_output=True, text=True)
    assert p.returncode == 7 and "statically linked" in p.stderr
    dyn = subprocess.run([*shmfs_cmd(), "run", "--", "/bin/true"], capture_output=True,
                         text=True)
    assert dyn.returncode == 0 and dyn.stderr == ""
