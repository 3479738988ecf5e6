#!/usr/bin/env bash
# The whole test suite, from a fresh machine: bootstrap, lint, then pytest.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$ROOT/scripts/bootstrap.sh"
cd "$ROOT"
.venv/bin/ruff check .
exec .venv/bin/python -m pytest "$@"
