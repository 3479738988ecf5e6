#!/bin/bash
# Appends into freed frames (docs/performance.md, change 29): on a fresh
# `shmfs MNT -o size=4g`, three times `dd bs=4k count=40000` then `rm`; the first
# run writes fresh frames, the next two the frames the previous file freed.
# A/B: SHMFS_REUSE_AHEAD=0 scripts/reuse_dd.sh (the daemon inherits the env).
set -u
here=$(cd "$(dirname "$0")/.." && pwd)
M=$(mktemp -d /tmp/reuse_mnt.XXXX)
"$here/.venv/bin/shmfs" "$M" -o size=4g || { rmdir "$M"; exit 1; }
trap 'umount "$M" && rmdir "$M"' EXIT
for _ in 1 2 3; do
  dd if=/dev/zero of="$M/f" bs=4k count=40000 2>&1 | tail -1
  rm "$M/f"
done
cat /proc/loadavg
