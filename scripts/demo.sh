#!/usr/bin/env bash
# From a fresh machine: bootstrap, mount a shmfs, run the tour, unmount.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$ROOT/scripts/bootstrap.sh"
MNT="$(mktemp -d /tmp/shmfs-demo.XXXXXX)"
cleanup() {
    "$ROOT/.venv/bin/shmfs" unmount "$MNT" 2>/dev/null || true
    rmdir "$MNT" 2>/dev/null || true
}
trap cleanup EXIT
"$ROOT/.venv/bin/shmfs" "$MNT" -o size=256m,nr_inodes=10k
echo "shmfs mounted at $MNT:"
grep " $MNT " /proc/mounts
"$ROOT/.venv/bin/python" "$ROOT/scripts/demo.py" "$MNT"
