#!/usr/bin/env bash
# Context shift and answers that end, end to end on `mote serve` with the real models:
# llama-server's context-shift test on SmolLM2 (ctx 256, a 301-token prompt: refused
# without --context-shift, answered and truncated with it), a 60-turn conversation in a
# 512-token context on SmolLM2 and Gemma 3, and 10 /chat + 10 /v1/completions "hi"
# requests with default settings (the 100 + 100 run is bench/answers.sh).
set -euo pipefail
cd "$(dirname "$0")/../.."
source scripts/test.d/serve-helpers.bash
mkdir -p out
T="timeout 600 python3 scripts/test.d/context_test.py"
SMOL="$MOTE_MODELS/SmolLM2-135M-Instruct.Q4_1.gguf"
GEMMA="$MOTE_MODELS/gemma-3-270m-Q4_K_M.gguf"

start_server out/ctx-calibrate.log "$SMOL" --parallel 1 --ctx-size 256
$T calibrate "$PORT"
stop_server

start_server out/ctx-shift.log "$SMOL" --parallel 1 --ctx-size 256 --context-shift --ignore-eos
$T shift "$PORT"
stop_server

for model in "$SMOL" "$GEMMA"; do
  start_server out/ctx-conversation.log "$model" --parallel 1 --ctx-size 512 --context-shift
  echo "$(basename "$model"):"
  $T conversation "$PORT" 60
  stop_server
done

start_server out/ctx-answers.log "$SMOL" --parallel 2 --ctx-size 1024
$T answers "$PORT" 10
stop_server
