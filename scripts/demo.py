"""A short tour of a mounted shmfs: what it stores, how the pager serves it.

Run by scripts/demo.sh against a fresh mount; every step checks its result and
the script exits non-zero if anything is not as tmpfs would have it.
"""

from __future__ import annotations

import mmap
import os
import sys
from pathlib import Path

from mount.syscalls import FALLOC_FL_KEEP_SIZE, FALLOC_FL_PUNCH_HOLE, fallocate

PAGE = 4096


def step(title: str) -> None:
    print(f"\n== {title}")


def check(cond: bool, what: str) -> None:
    print(f"   {'ok ' if cond else 'FAIL'} {what}")
    if not cond:
        raise SystemExit(1)


def main(mnt: Path) -> int:
    step(f"statfs of {mnt}")
    st = os.statvfs(mnt)
    print(f"   bsize={st.f_bsize} blocks={st.f_blocks} free={st.f_bfree} "
          f"files={st.f_files} ffree={st.f_ffree} namemax={st.f_namemax}")
    check(st.f_namemax == 255, "names up to 255 bytes, like tmpfs")

    step("ordinary files: write, read back, rename, hard link, symlink")
    f = mnt / "hello.txt"
    f.write_bytes(b"hello from the pager\n" * 1000)
    check(f.read_bytes() == b"hello from the pager\n" * 1000, "21,000 bytes round-trip")
    os.rename(f, mnt / "greeting.txt")
    os.link(mnt / "greeting.txt", mnt / "also-greeting.txt")
    check(os.stat(mnt / "greeting.txt").st_nlink == 2, "hard link counted")
    os.symlink("greeting.txt", mnt / "link")
    check(os.readlink(mnt / "link") == "greeting.txt", "symlink resolves")

    step("a sparse 1 TiB file costs almost nothing")
    sparse = mnt / "sparse.img"
    fd = os.open(sparse, os.O_RDWR | os.O_CREAT, 0o644)
    os.pwrite(fd, b"X" * PAGE, (1 << 40) - PAGE)
    st1 = os.fstat(fd)
    print(f"   st_size={st1.st_size} st_blocks={st1.st_blocks}")
    check(st1.st_size == 1 << 40 and st1.st_blocks == PAGE // 512, "one page allocated")
    check(os.lseek(fd, 0, os.SEEK_DATA) == (1 << 40) - PAGE, "SEEK_DATA finds the only page")
    os.close(fd)

    step("hole punching (what UML's MADV_REMOVE becomes) returns memory")
    g = mnt / "punch.bin"
    fd = os.open(g, os.O_RDWR | os.O_CREAT, 0o644)
    os.write(fd, os.urandom(64 * PAGE))
    before = os.fstat(fd).st_blocks
    fallocate(fd, FALLOC_FL_KEEP_SIZE | FALLOC_FL_PUNCH_HOLE, 8 * PAGE, 16 * PAGE)
    after = os.fstat(fd).st_blocks
    print(f"   st_blocks {before} -> {after}")
    check(after == before - 16 * PAGE // 512, "16 pages freed")
    check(os.pread(fd, PAGE, 10 * PAGE) == bytes(PAGE), "the hole reads as zeros")
    check(os.lseek(fd, 0, os.SEEK_HOLE) == 8 * PAGE, "SEEK_HOLE finds it")

    step("shared mmap: another process's stores reach read(2)")
    m = mmap.mmap(fd, 64 * PAGE)
    pid = os.fork()
    if pid == 0:
        m2 = mmap.mmap(fd, 64 * PAGE)
        m2[5 * PAGE:5 * PAGE + 5] = b"child"
        m2.flush()
        os._exit(0)
    os.waitpid(pid, 0)
    check(os.pread(fd, 5, 5 * PAGE) == b"child", "msync'd store visible to pread")
    check(m[5 * PAGE:5 * PAGE + 5] == b"child", "and to our own mapping")
    m.close()
    os.close(fd)

    step("a window: remap_file_pages over a 64 GiB object, seen by another process")
    from mount.winapi.client import Window, grant

    obj = mnt / "object"
    with open(obj, "wb") as f:
        f.truncate(64 << 30)
    ofd = os.open(obj, os.O_RDWR)
    for page in (7, 1 << 20, (16 << 20) - 1):  # pages far apart in the object
        os.pwrite(ofd, b"object page %d" % page, page * PAGE)
    # GRANT on our descriptor proves we may open the object; ATTACH spends the token
    w = Window.create(mnt / "win", grant(ofd), npages=8)
    w.remap(0, 1, pgoff=(16 << 20) - 1)  # window page 0 shows the object's last page
    w.remap(1, 1, pgoff=1 << 20)
    w.remap(2, 1, pgoff=7)
    picture = " ".join(f"[{p.pgoff}]" for p in w.query(0, 3))
    print(f"   window pages 0..2 show object pages {picture}")
    code = ("import mmap,os,sys; fd=os.open(sys.argv[1],os.O_RDWR); m=mmap.mmap(fd, 3*4096); "
            "print(m[0:20], m[4096:4116], m[8192:8212]); m[8192:8197]=b'HELLO'; m.flush()")
    import subprocess

    out = subprocess.run([sys.executable, "-c", code, str(mnt / "win")], capture_output=True,
                         text=True, check=True).stdout
    check(b"object page 16777215".decode() in out and "object page 7" in out,
          "another process's mmap of the window sees the remapped pages")
    check(os.pread(ofd, 5, 7 * PAGE) == b"HELLO", "its store through the window reached the object")
    w.remap(0, 1, pgoff=7)
    check(w.pread(0, 5) == b"HELLO", "a remap is visible at once")
    w.close()
    os.close(ofd)

    step("cleanup gives the space back")
    used_before = st_used(mnt)
    for p in mnt.iterdir():
        p.unlink()
    used_after = st_used(mnt)
    print(f"   used blocks {used_before} -> {used_after}")
    check(used_after < used_before, "blocks returned")
    print("\ndemo passed")
    return 0


def st_used(mnt: Path) -> int:
    st = os.statvfs(mnt)
    return st.f_blocks - st.f_bfree


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1])))
