#!/usr/bin/env bash
# Set up if needed (with the [dev], [profile], [plot] and [ray] extras), lint, then run the whole test suite
# on every core (pytest-xdist; pass -n 0 to run in one process).
set -euo pipefail
cd "$(dirname "$0")"
./compile.sh dev,profile,plot,ray >&2
# mlc-chakra only cross-checks our Chakra encoder; its declared dependencies are not needed.
if [ ! -f .venv/.installed-chakra ]; then
    .venv/bin/python -m pip install --quiet --disable-pip-version-check --no-deps \
        mlc-chakra==1.0.0 >&2 && touch .venv/.installed-chakra
fi
.venv/bin/python -m ruff check .
exec .venv/bin/python -m pytest -n auto "$@"
