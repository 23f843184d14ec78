#!/usr/bin/env bash
# One command from a fresh clone to a full test run: fetch and verify the models, check
# formatting and lints, then build once (release) and run every test against that build.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh test
scripts/fetch-models.sh all
export MOTE_REQUIRE_MODELS=1
echo "== cargo fmt"; cargo fmt --all -- --check
echo "== cargo clippy"; cargo clippy --workspace --all-targets --release -- -D warnings
echo "== cargo test"; cargo test --workspace --release
# Same build, kernels forced to their scalar twins: every result must still hold.
echo "== cargo test (MOTE_KERNELS=scalar)"; MOTE_KERNELS=scalar cargo test --workspace --release -q
for extra in scripts/test.d/*.sh; do
  [ -e "$extra" ] || continue
  echo "== $extra"; bash "$extra"
done
echo "== all tests passed"
