#!/usr/bin/env bash
# The official OpenAI Python client against `mote serve` on the tiny model: models list,
# chat and completions, streaming and not, and error cases, all parsed by the client.
# Installs the client into .cache/test-venv (from PyPI) on first use.
set -euo pipefail
cd "$(dirname "$0")/../.."
source scripts/test.d/serve-helpers.bash

VENV=.cache/test-venv
if ! "$VENV/bin/python" -c 'import openai' 2>/dev/null; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q openai
fi
mkdir -p out
start_server out/openai-client-server.log "$MOTE_MODELS/tiny.gguf" \
  --parallel 2 --ctx-size 256 --n-predict 24 --api-key test-key
"$VENV/bin/python" scripts/test.d/openai_client_test.py "$PORT" test-key
stop_server
