#!/usr/bin/env bash
# Prints the Python the side-by-side benchmarks run: $PYTHON if set, else bench/compare/.venv's,
# made from PyPI with the pinned versions of requirements.txt on first use.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
if [ -n "${PYTHON:-}" ]; then
    echo "$PYTHON"
    exit 0
fi
if [ ! -x "$here/.venv/bin/python" ]; then
    python3 -m venv "$here/.venv" >&2
    "$here/.venv/bin/pip" install -q --upgrade pip >&2
    "$here/.venv/bin/pip" install -q -r "$here/requirements.txt" >&2
fi
echo "$here/.venv/bin/python"
