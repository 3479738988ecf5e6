#!/usr/bin/env bash
# Build the C extensions (native/*.c) with AddressSanitizer + UndefinedBehaviorSanitizer
# in a scratch copy of this checkout and run tests against them there, so a read past
# a buffer in a C request path aborts the daemon with a report instead of passing
# silently. The checkout's own .venv and its (-O2) extensions are not touched.
#
#   scripts/asan_check.sh                      # tests/reliability/test_cfuzz.py + tests/server
#   scripts/asan_check.sh tests/windows -q     # any pytest arguments
#   SHMFS_CFUZZ_SEEDS=20 scripts/asan_check.sh tests/reliability/test_cfuzz.py
#
# ASAN_DIR (default /tmp/shmfs-asan) holds the copy; it is refreshed from the working
# tree on every run (tar) and only changed C files are rebuilt. Leak detection is
# off (CPython frees little at exit); any other ASan/UBSan report ends the process
# with status 1 and a stack on stderr, which the session tests see as a dead driver.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DIR="${ASAN_DIR:-/tmp/shmfs-asan}"
PY="$ROOT/.venv/bin/python"
[ -x "$PY" ] || { echo "asan_check: run scripts/bootstrap.sh first" >&2; exit 2; }
LIBASAN="$(gcc -print-file-name=libasan.so)"
LIBUBSAN="$(gcc -print-file-name=libubsan.so)"
[ -e "$LIBASAN" ] || { echo "asan_check: no libasan.so (apt-get install gcc)" >&2; exit 2; }

mkdir -p "$DIR"
mkdir -p "$DIR/src"
tar -C "$ROOT" --exclude=./.venv --exclude=./.git --exclude='*.so' --exclude=./build \
    --exclude=__pycache__ --exclude=.pytest_cache --exclude=.hypothesis -cf - . | tar -C "$DIR/src" -xf -
SAN="-fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined -g"
(cd "$DIR/src" && CFLAGS="$SAN" LDSHARED="gcc -pthread -shared $SAN" \
    "$PY" setup.py -q build_ext --inplace --build-temp "$DIR/build" >"$DIR/build.log" 2>&1) || {
    tail -30 "$DIR/build.log" >&2; exit 2; }
for so in mount/server/_hotpath mount/server/_winfast vmcore/_ptscan; do
    ls "$DIR/src/$so".*.so >/dev/null 2>&1 || { echo "asan_check: $so not built" >&2; tail -30 "$DIR/build.log" >&2; exit 2; }
done
[ "$#" -gt 0 ] || set -- tests/reliability/test_cfuzz.py tests/server -q -p no:cacheprovider
cd "$DIR/src"
# the copy first on sys.path: its sanitized extensions, not the editable install's
export PYTHONPATH="$DIR/src" SHMFS_ASAN_CHECK=1
export LD_PRELOAD="$LIBASAN $LIBUBSAN"
export ASAN_OPTIONS="detect_leaks=0:abort_on_error=0:exitcode=1:halt_on_error=1:print_summary=1"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1:exitcode=1"
exec "$PY" -m pytest "$@"
