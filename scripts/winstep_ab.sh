#!/bin/bash
# A/B of SHMFS_WINFAST_EARLY on window_bench.py's stream (docs/performance.md, change 40):
#   MODES="1 0" scripts/winstep_ab.sh ROUNDS STORES STEPS
# VAR=SHMFS_WINLEAN MODES="1 0" scripts/winstep_ab.sh ...: the same A/B of another switch
# (winlean, change 43); the line's first field is then that switch's value.
# one line per run: the mode, the load, steps/s (shmfs, tmpfs) and the engine's counters.
cd "$(dirname "$0")/.."
for r in $(seq 1 $1); do for E in ${MODES:-1 0}; do
  L=$(cut -d' ' -f1 /proc/loadavg)
  env "${VAR:-SHMFS_WINFAST_EARLY}=$E" .venv/bin/python scripts/window_bench.py --only stream --steps $3 --stores $2 --json "${TMPDIR:-/tmp}/winstep_ab.json" >/dev/null 2>&1
  .venv/bin/python - "$E" "$L" "${TMPDIR:-/tmp}/winstep_ab.json" "${VAR:-SHMFS_WINFAST_EARLY}" <<'PY'
import json,sys
d=json.load(open(sys.argv[3])); s=d['shmfs']; n=s['daemon_native']; w=n['writer']; e=n['early']
def avg(a,b): return w[a]/max(1,w[b])/1e3
lab={"SHMFS_WINFAST_EARLY": "early", "SHMFS_WINLEAN": "lean"}.get(sys.argv[4], sys.argv[4])
print(f"{lab}={sys.argv[1]} load={sys.argv[2]} shmfs={s['stream']['steps_per_s']:.0f} tmpfs={d['tmpfs']['stream']['steps_per_s']:.0f} "
      f"handoff={avg('handoff_ns','handoffs'):.1f} inval={avg('inval_write_ns','inval_writes'):.1f} store={avg('store_write_ns','store_writes'):.1f} "
      f"reply={avg('reply_write_ns','reply_writes'):.1f} remap={e['remap_ns']/max(1,e['remaps'])/1e3:.1f} seal={e['seal_ns']/max(1,e['batches'])/1e3:.1f} "
      f"sleeps={e['sleeps']}/{e['batches']} backoffs={e['backoffs']} launders={n['launders']} errors={s['stream']['errors']}")
PY
done; done
