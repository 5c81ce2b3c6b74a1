#!/usr/bin/env bash
# Set up if needed (with the [dev] extra), lint, then run the whole test suite.
set -euo pipefail
cd "$(dirname "$0")"
./compile.sh dev >&2
.venv/bin/python -m ruff check .
exec .venv/bin/python -m pytest "$@"
