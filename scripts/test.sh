#!/usr/bin/env bash
# Set everything up (idempotently), then run the whole test suite: lint, import contract,
# unit, integration and GUI tests (under a virtual X server when there is no display).
# Extra arguments go to pytest, e.g. `bash scripts/test.sh -k ingest`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export QT_QPA_PLATFORM="${QT_QPA_PLATFORM:-offscreen}"
.venv/bin/ruff check splatstudio tests benchmarks scripts
.venv/bin/lint-imports
if [ -z "${DISPLAY:-}" ] && command -v xvfb-run >/dev/null; then
  exec xvfb-run -a -s "-screen 0 1920x1080x24" .venv/bin/python -m pytest "$@"
fi
exec .venv/bin/python -m pytest "$@"
