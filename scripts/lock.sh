#!/usr/bin/env bash
# Rewrite the pinned tail of constraints.txt from the working environment (after changing dependencies
# and checking that scripts/test.sh passes). The commented pins at the top are kept.
set -euo pipefail
cd "$(dirname "$0")/.."
venv=${SUPPORTBOT_VENV:-.venv}
head=$(sed '/^# Everything else, exactly as resolved/,$d' constraints.txt)
pinned=$(printf '%s\n' "$head" | grep -v '^#' | grep '==' | sed 's/==.*//' | tr 'A-Z_.' 'a-z--')
{
    printf '%s\n\n' "$head"
    echo "# Everything else, exactly as resolved and tested together (pip freeze): without it pip's"
    echo "# resolver backtracks for many minutes on a fresh machine (chainlit, langchain, presidio)."
    echo "# Regenerate after a dependency change: scripts/lock.sh"
    "$venv/bin/python" -m pip freeze --exclude-editable 2>/dev/null | grep '==' | while IFS= read -r line; do
        name=$(printf '%s' "${line%%==*}" | tr 'A-Z_.' 'a-z--')
        printf '%s\n' "$pinned" | grep -qx "$name" || printf '%s\n' "$line"
    done
    echo "torchvision==0.28.0"  # removed after install when it cannot load (see scripts/install.sh)
} > constraints.txt.new
mv constraints.txt.new constraints.txt
