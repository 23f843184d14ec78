#!/usr/bin/env bash
# The issue's answer check at full size: 100 POST /chat {"prompt": "hi"} and 100
# /v1/completions "hi" with the server's default settings on SmolLM2 (seeds 1..100);
# prints the length distributions and finish reasons. N=10 for a quick run.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/test.d/serve-helpers.bash
mkdir -p out
start_server out/bench-answers.log "$MOTE_MODELS/SmolLM2-135M-Instruct.Q4_1.gguf" --parallel 4
python3 scripts/test.d/context_test.py answers "$PORT" "${N:-100}"
stop_server
