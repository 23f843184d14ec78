#!/usr/bin/env bash
# The web chat page in headless Chromium (Debian's `chromium`, driven by npm's
# playwright-core): send a message, watch tokens stream in, press stop, go on with a
# second turn; screenshot in out/browser-chat.png. Installs playwright-core into
# .cache/browser-test on first use.
set -euo pipefail
cd "$(dirname "$0")/../.."
source scripts/test.d/serve-helpers.bash

CHROMIUM=${CHROMIUM:-$(command -v chromium || command -v chromium-browser || true)}
[ -n "$CHROMIUM" ] || { echo "chromium not found: run scripts/setup.sh test" >&2; exit 1; }
PW=.cache/browser-test
if [ ! -d "$PW/node_modules/playwright-core" ]; then
  mkdir -p "$PW"
  npm install --silent --no-audit --no-fund --prefix "$PW" playwright-core@1 >/dev/null
fi
mkdir -p out
# SmolLM2 rather than the tiny model, and --ignore-eos: the answer must still be streaming
# when the test presses stop, however fast the machine (a "long story" can otherwise end
# within the second the test watches tokens arrive).
start_server out/browser-server.log "$MOTE_MODELS/SmolLM2-135M-Instruct.Q4_1.gguf" --parallel 1 --ctx-size 4096 --ignore-eos
PLAYWRIGHT_DIR="$PWD/$PW" CHROMIUM="$CHROMIUM" node scripts/test.d/browser_test.cjs "$PORT" out/browser-chat.png
stop_server
