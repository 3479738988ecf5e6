"""``shmfs run [--] PROGRAM ARGS...``: run an unmodified program with libshmfs_rfp.so.

The preload library (preload/shmfs_rfp.c, docs/windows.md "remap_file_pages for
unmodified programs") turns each MAP_SHARED mmap of a file on a shmfs mount into a
window mapping, so the program's remap_file_pages(2) calls become window REMAPs:
one VMA per window instead of one per remapped piece.  LD_PRELOAD is appended to,
never replaced.  A statically linked PROGRAM cannot load it: said on stderr.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

LIB_NAME = "libshmfs_rfp.so"
ELF_INTERP = 3  # PT_INTERP


def library_path() -> Path | None:
    """The built library: $SHMFS_RFP_LIB, else <venv>/lib/libshmfs_rfp.so (bootstrap
    builds it there), else next to the checkout's .venv; None if none exists."""
    env = os.environ.get("SHMFS_RFP_LIB")
    candidates = [Path(env)] if env else []
    candidates.append(Path(sys.prefix) / "lib" / LIB_NAME)
    candidates.append(Path(__file__).resolve().parents[2] / ".venv" / "lib" / LIB_NAME)
    for c in candidates:
        if c.is_file():
            return c.resolve()
    return None


def is_dynamic_elf(path: str) -> bool | None:
    """True if path is an ELF with a program interpreter (so LD_PRELOAD applies),
    False for a static ELF, None if it is not ELF (a script: its interpreter is)."""
    try:
        with open(path, "rb") as f:
            head = f.read(64)
            if head[:4] != b"\x7fELF":
                return None
            is64 = head[4] == 2
            le = "little" if head[5] == 1 else "big"
            if is64:
                phoff = int.from_bytes(head[32:40], le)
                phentsize = int.from_bytes(head[54:56], le)
                phnum = int.from_bytes(head[56:58], le)
            else:
                phoff = int.from_bytes(head[28:32], le)
                phentsize = int.from_bytes(head[42:44], le)
                phnum = int.from_bytes(head[44:46], le)
            f.seek(phoff)
            table = f.read(phentsize * phnum)
    except OSError:
        return None
    return any(int.from_bytes(table[i * phentsize : i * phentsize + 4], le) == ELF_INTERP
               for i in range(phnum))


def preload_env(lib: Path, env: dict[str, str]) -> dict[str, str]:
    """env with lib appended to LD_PRELOAD (kept if it is already there)."""
    out = dict(env)
    parts = [p for p in out.get("LD_PRELOAD", "").replace(":", " ").split() if p]
    if str(lib) not in parts:
        parts.append(str(lib))
    out["LD_PRELOAD"] = " ".join(parts)
    return out


def main(argv: list[str]) -> int:
    """Exec PROGRAM with the library preloaded (never returns on success)."""
    if argv and argv[0] == "--":
        argv = argv[1:]
    if not argv or argv[0] in ("-h", "--help"):
        print("usage: shmfs run [--] PROGRAM [ARGS...]\n"
              "Run PROGRAM with libshmfs_rfp.so preloaded: remap_file_pages(2) on its\n"
              "MAP_SHARED mappings of shmfs files uses shmfs windows (docs/windows.md).",
              file=sys.stderr if not argv else sys.stdout)
        return 2 if not argv else 0
    lib = library_path()
    if lib is None:
        print(f"shmfs run: {LIB_NAME} is not built; run scripts/bootstrap.sh "
              "(it needs a C compiler)", file=sys.stderr)
        return 1
    prog = shutil.which(argv[0]) if "/" not in argv[0] else argv[0]
    if prog is None:
        print(f"shmfs run: {argv[0]}: command not found", file=sys.stderr)
        return 127
    if is_dynamic_elf(prog) is False:
        print(f"shmfs run: warning: {prog} is statically linked; the library cannot be "
              "preloaded and its remap_file_pages calls get the kernel's emulation",
              file=sys.stderr)
    try:
        os.execve(prog, argv, preload_env(lib, dict(os.environ)))
    except OSError as e:
        print(f"shmfs run: {prog}: {e.strerror}", file=sys.stderr)
        return 126
    return 0  # not reached
