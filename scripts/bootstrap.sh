#!/usr/bin/env bash
# Bring a fresh machine to the point where shmfs can run and be tested:
# Debian packages (as root), a virtualenv in .venv, shmfs installed editable.
# Idempotent: a second run only checks.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
APT_PACKAGES=(fuse3 user-mode-linux uml-utilities)
PY="${PYTHON:-python3}"

missing=()
command -v fusermount3 >/dev/null || missing+=(fuse3)
[ -x /usr/bin/linux.uml ] || missing+=(user-mode-linux)
command -v uml_mconsole >/dev/null || missing+=(uml-utilities)
if [ "${#missing[@]}" -gt 0 ]; then
    if [ "$(id -u)" = 0 ]; then
        echo "bootstrap: installing Debian packages: ${missing[*]}" >&2
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq >/dev/null
        apt-get install -y -qq "${APT_PACKAGES[@]}" >/dev/null
    else
        echo "bootstrap: missing Debian packages: ${missing[*]}" >&2
        echo "bootstrap: as root run: apt-get install ${APT_PACKAGES[*]}" >&2
        echo "bootstrap: (fuse3 is required to mount; the others only for the UML tests)" >&2
    fi
fi
if [ ! -e /dev/fuse ]; then
    echo "bootstrap: /dev/fuse is missing; load the fuse module (modprobe fuse) as root" >&2
fi

stamp="$ROOT/.venv/.shmfs-installed"
if [ ! -x "$ROOT/.venv/bin/python" ]; then
    "$PY" -m venv "$ROOT/.venv"
fi
if [ ! -e "$stamp" ] || [ "$ROOT/pyproject.toml" -nt "$stamp" ]; then
    "$ROOT/.venv/bin/pip" install -q --disable-pip-version-check -e "$ROOT[test,bench]"
    touch "$stamp"
fi
