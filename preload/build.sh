#!/usr/bin/env bash
# Build libshmfs_rfp.so (the remap_file_pages preload library, `shmfs run`) into
# OUT (default: this checkout's .venv/lib/libshmfs_rfp.so, where `shmfs run` looks).
# Needs only a C compiler (cc, or $CC); rebuilds when the source is newer.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
OUT="${1:-$HERE/../.venv/lib/libshmfs_rfp.so}"
CC="${CC:-cc}"
if ! command -v "$CC" >/dev/null; then
    echo "preload: no C compiler ($CC): 'shmfs run' needs libshmfs_rfp.so;" \
         "as root run: apt-get install gcc libc6-dev" >&2
    exit 1
fi
if [ -e "$OUT" ] && [ "$OUT" -nt "$HERE/shmfs_rfp.c" ]; then
    exit 0
fi
mkdir -p "$(dirname "$OUT")"
"$CC" -O2 -g -Wall -Wextra -fPIC -shared -o "$OUT.tmp.$$" "$HERE/shmfs_rfp.c" -ldl -lpthread
mv "$OUT.tmp.$$" "$OUT"
