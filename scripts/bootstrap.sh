#!/usr/bin/env bash
# Bring a fresh machine to the point where shmfs can run and be tested:
# Debian packages (as root), a virtualenv in .venv, shmfs installed editable,
# and (as root) /usr/local/bin/shmfs, the command mount.fuse3 runs for
# `mount -t fuse.shmfs`, /etc/fstab and systemd .mount units.
# Idempotent: a second run only checks.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
APT_PACKAGES=(fuse3 user-mode-linux uml-utilities stress-ng fio)
# the C extensions (setup.py, native/) need a compiler and Python's headers
BUILD_PACKAGES=(gcc libc6-dev python3-dev)
PY="${PYTHON:-python3}"

missing=()
command -v fusermount3 >/dev/null || missing+=(fuse3)
[ -x /usr/bin/linux.uml ] || missing+=(user-mode-linux)
command -v "${CC:-cc}" >/dev/null || missing+=(gcc)
"$PY" -c 'import sysconfig, os, sys; sys.exit(not os.path.exists(os.path.join(sysconfig.get_paths()["include"], "Python.h")))' \
    2>/dev/null || missing+=(python3-dev)
command -v uml_mconsole >/dev/null || missing+=(uml-utilities)
# the external tools tests/compat compares with a kernel tmpfs
command -v stress-ng >/dev/null || missing+=(stress-ng)
command -v fio >/dev/null || missing+=(fio)
if [ "${#missing[@]}" -gt 0 ]; then
    if [ "$(id -u)" = 0 ]; then
        echo "bootstrap: installing Debian packages: ${missing[*]}" >&2
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq >/dev/null
        apt-get install -y -qq "${APT_PACKAGES[@]}" "${BUILD_PACKAGES[@]}" >/dev/null
    else
        echo "bootstrap: missing Debian packages: ${missing[*]}" >&2
        echo "bootstrap: as root run: apt-get install ${APT_PACKAGES[*]} ${BUILD_PACKAGES[*]}" >&2
        echo "bootstrap: (fuse3 is required to mount; the others only for the UML, native-extension and compat tests)" >&2
    fi
fi
if [ ! -e /dev/fuse ]; then
    echo "bootstrap: /dev/fuse is missing; load the fuse module (modprobe fuse) as root" >&2
fi

stamp="$ROOT/.venv/.shmfs-installed"
if [ ! -x "$ROOT/.venv/bin/python" ]; then
    "$PY" -m venv "$ROOT/.venv"
fi
# setup.py builds the C extensions (native/*.c; optional: a failed build leaves
# their Python fallbacks) in the editable install: rebuild when they change, as
# when pyproject.toml does
rebuild=0
for f in "$ROOT/pyproject.toml" "$ROOT/setup.py" "$ROOT"/native/*.c "$ROOT"/native/*.h; do
    [ -e "$f" ] && [ "$f" -nt "$stamp" ] && rebuild=1
done
if [ ! -e "$stamp" ] || [ "$rebuild" = 1 ]; then
    "$ROOT/.venv/bin/pip" install -q --disable-pip-version-check -e "$ROOT[test,bench]"
    touch "$stamp"
fi

# mount(8) -t fuse.shmfs runs /sbin/mount.fuse3, which runs "shmfs SOURCE MNT -o OPTS"
# from PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin. A small
# wrapper there runs this checkout's shmfs; a file there that is not ours is left alone.
WRAPPER=/usr/local/bin/shmfs
MARK="# shmfs mount helper, written by scripts/bootstrap.sh"
wanted="#!/bin/sh
$MARK of $ROOT
exec \"$ROOT/.venv/bin/python\" -m mount.cli \"\$@\""
if [ "$(id -u)" = 0 ]; then
    if [ ! -e "$WRAPPER" ] || grep -q "^$MARK" "$WRAPPER"; then
        if [ "$(cat "$WRAPPER" 2>/dev/null)" != "$wanted" ]; then
            printf '%s\n' "$wanted" > "$WRAPPER.tmp" && chmod 755 "$WRAPPER.tmp"
            mv "$WRAPPER.tmp" "$WRAPPER"
            echo "bootstrap: installed $WRAPPER (for mount -t fuse.shmfs, fstab, systemd)" >&2
        fi
    else
        echo "bootstrap: $WRAPPER exists and is not ours; mount -t fuse.shmfs will run it" >&2
    fi
elif [ ! -x "$WRAPPER" ]; then
    echo "bootstrap: as root, bootstrap installs $WRAPPER for mount -t fuse.shmfs" >&2
fi

# `shmfs run` preloads libshmfs_rfp.so (remap_file_pages for unmodified programs,
# preload/): built into .venv/lib with the C compiler, which is all it needs.
if command -v "${CC:-cc}" >/dev/null; then
    "$ROOT/preload/build.sh" "$ROOT/.venv/lib/libshmfs_rfp.so"
else
    echo "bootstrap: no C compiler (cc): 'shmfs run' and tests/rfp need one;" \
         "as root run: apt-get install gcc libc6-dev" >&2
fi
