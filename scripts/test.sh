#!/usr/bin/env bash
# Install the test dependencies and run the whole test suite (what CI runs).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh test
venv=${SUPPORTBOT_VENV:-.venv}

# The browser test drives Debian's chromium (never a downloaded browser). Install it when we can;
# without it that one test is skipped, except in CI, where it fails.
if [ ! -x /usr/bin/chromium ]; then
    if [ "$(id -u)" = 0 ]; then
        echo "==> chromium (Debian package, for the browser test)"
        (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
            || echo "could not install chromium; the browser test will say so"
    else
        echo "note: /usr/bin/chromium is missing (sudo apt-get install -y chromium); the browser test will be skipped"
    fi
fi
# The compose test validates docker-compose.yml with Debian's docker-compose (no Docker engine needed: its
# recommended docker.io stays out).
# Installed the same way: skipped without it, except in CI, where it fails.
if ! command -v docker-compose >/dev/null; then
    if [ "$(id -u)" = 0 ]; then
        echo "==> docker-compose (Debian package, for the compose file test)"
        (apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
            apt-get install -y -qq --no-install-recommends docker-compose >/dev/null) \
            || echo "could not install docker-compose; the compose test will say so"
    else
        echo "note: docker-compose is missing (sudo apt-get install -y docker-compose); the compose test will be skipped"
    fi
fi
# The full-text engine test starts Debian's Sphinx searchd (the SphinxQL server Manticore grew from), the same way.
if ! command -v searchd >/dev/null; then
    if [ "$(id -u)" = 0 ]; then
        echo "==> sphinxsearch (Debian package, for the full-text engine test)"
        (apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
            apt-get install -y -qq --no-install-recommends sphinxsearch >/dev/null) \
            || echo "could not install sphinxsearch; the full-text engine test will say so"
    else
        echo "note: searchd is missing (sudo apt-get install -y sphinxsearch); the full-text engine test will be skipped"
    fi
fi
echo "==> ruff"
"$venv/bin/ruff" check .
echo "==> pytest"
"$venv/bin/python" -m pytest "$@"
echo "==> regression baseline (sample knowledge base)"
bash scripts/eval_baseline.sh
