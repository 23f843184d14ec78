#!/usr/bin/env bash
# One command from a fresh clone to a chat with the default model (SmolLM2-135M-Instruct).
# Extra arguments go to `mote chat` (e.g. --temp 0 -sys "You are terse.").
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
scripts/fetch-models.sh smollm2
# `cargo run` finds the binary wherever CARGO_TARGET_DIR puts it.
exec cargo run --release -q -p mote-cli -- chat models/SmolLM2-135M-Instruct.Q4_1.gguf "$@"
