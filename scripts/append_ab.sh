#!/bin/bash
# Appends A/B (docs/performance.md change 30): for each configuration, a fresh
# `shmfs MNT -o size=4g`, then `dd bs=4k count=40000` twice and `dd bs=512
# count=80000` twice, removing the file after each (the first run of each size
# writes fresh frames, the second the frames the previous file freed); a kernel
# tmpfs in the same rounds; /proc/loadavg after each mount.
#
#   scripts/append_ab.sh [ROUNDS] CONFIG...
#
# CONFIG is `NAME=ENV...@SHMFS` with SHMFS the shmfs command (another checkout's
# .venv/bin/shmfs for a before/after pair), e.g.
#   scripts/append_ab.sh 3 "reserve@.venv/bin/shmfs" \
#       "off=SHMFS_RESERVE=0@.venv/bin/shmfs" "main@/work/main/.venv/bin/shmfs" tmpfs
# The configurations alternate within each round. PERF=1 adds the daemon's CPU
# time per WRITE (perf stat over all its threads) after each MB/s. NICE=-20 runs
# the daemon and dd at that niceness (as root): on a machine shared with other
# load, both then get the CPU they ask for, for the seconds a run takes.
set -u
rounds=$1; shift
configs=("$@")
M=$(mktemp -d /tmp/append_ab.XXXX)
trap 'mountpoint -q "$M" && umount "$M"; rmdir "$M"' EXIT
# PERF=1: also the daemon's CPU time per WRITE (all its threads; perf stat -p):
# robust to other load where dd's MB/s is not, since here dd and the request loop
# take turns on one vCPU (docs/performance.md, change 30)
one() {  # bs count -> "MB/s" of one dd into a new file (and "/us CPU"), then rm
  local r c=""
  if [ "${PERF:-0}" = 1 ] && [ -n "$pid" ]; then
    r=$(perf stat -x, -e task-clock -p "$pid" -o "$M.perf" -- \
        nice -n "${NICE:-0}" dd if=/dev/zero of="$M/f" bs="$1" count="$2" 2>&1 | tail -1)
    c=$(awk -F, -v n="$2" '/task-clock/ {printf "/%.2fus", $1 * 1000 / n}' "$M.perf")
    rm -f "$M.perf"
  else
    r=$(nice -n "${NICE:-0}" dd if=/dev/zero of="$M/f" bs="$1" count="$2" 2>&1 | tail -1)
  fi
  rm -f "$M/f"
  awk '{u=$NF; v=$(NF-1); if (u=="GB/s") v*=1000; if (u=="kB/s") v/=1000; printf "%.1f", v}' <<<"$r"
  printf "%s" "$c"
}
for ((round = 1; round <= rounds; round++)); do
  for cfg in "${configs[@]}"; do
    pid=""
    if [ "$cfg" = tmpfs ]; then
      mount -t tmpfs -o size=4g tmpfs "$M" || exit 1
    else
      name=${cfg%%@*}; cmd=${cfg#*@}; envs=${name#*=}; [ "$envs" = "$name" ] && envs=""
      # shellcheck disable=SC2086
      nice -n "${NICE:-0}" env $envs $cmd "$M" -o size=4g || exit 1
      pid=$(pgrep -f -- " $M( |\$)" | head -1)
    fi
    load=$(cut -d' ' -f1-3 /proc/loadavg)
    line="${cfg%%@*}"
    for bs in 4k 512; do
      n=40000; [ $bs = 512 ] && n=80000
      line="$line | $bs fresh $(one $bs $n) reuse $(one $bs $n)"
    done
    umount "$M"
    echo "round $round: $line MB/s | load $load"
  done
done
