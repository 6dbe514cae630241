#!/usr/bin/env bash
# Install the test dependencies and run the whole test suite (what CI runs).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh test
venv=${SUPPORTBOT_VENV:-.venv}
echo "==> ruff"
"$venv/bin/ruff" check .
echo "==> pytest"
"$venv/bin/python" -m pytest "$@"
