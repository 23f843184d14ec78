#!/usr/bin/env bash
# The library crates a browser build needs must compile for wasm32 without threads or
# mmap (mote-file is used with default-features = false there). Build only: there is no
# wasm test runner in CI; the scalar kernels they use are tested on the native targets.
set -euo pipefail
cd "$(dirname "$0")/../.."
target=wasm32-unknown-unknown
rustup target list --installed 2>/dev/null | grep -qx "$target" \
  || { echo "wasm32 build: Rust target $target is missing; run scripts/setup.sh test" >&2; exit 1; }
cargo build --release --target "$target" -p mote-tensor -p mote-model -p mote-tokenizer -p mote-session
