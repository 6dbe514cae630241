#!/usr/bin/env bash
# The regression gate on the project's own sample knowledge base (CI runs it after the tests):
# a fresh embedded database, the sample KB ingested, then retrieval and answers evaluated against
# the committed baselines in bot/evals/baselines/. Exit 1, naming the metrics, when one dropped.
#
#   bash scripts/eval_baseline.sh          # check
#   bash scripts/eval_baseline.sh --save   # record new baselines (after a deliberate change; commit them)
#
# A project that deploys supportbot does the same with its own knowledge base and questions.
set -euo pipefail
cd "$(dirname "$0")/.."
venv=${SUPPORTBOT_VENV:-.venv}
questions=bot/evals/data/sample_kb_questions.csv
baselines=bot/evals/baselines
# Short answers keep this fast; the baselines were recorded with the same limit.
export SUPPORTBOT_MAX_NEW_TOKENS=48
home=$(mktemp -d -t supportbot-baseline-XXXXXX)
trap 'rm -rf "$home"' EXIT
export SUPPORTBOT_HOME=$home
unset DATABASE_URL SUPPORTBOT_DATABASE_URL

if [ "${1:-}" = "--save" ]; then
    gate=(--save-baseline)
else
    gate=(--baseline)
fi
"$venv/bin/supportbot" ingest bot/sample_kb
"$venv/bin/supportbot" eval retrieval --questions "$questions" "${gate[@]}" "$baselines/sample_kb_retrieval.json"
# Greedy decoding is deterministic on one machine; the tolerance absorbs another CPU's rounding.
"$venv/bin/supportbot" eval answers --questions "$questions" --adapter base --tolerance 0.05 \
    "${gate[@]}" "$baselines/sample_kb_answers.json"
