#!/usr/bin/env bash
# mote-tensor's tests cross-built for aarch64 and run under qemu-user: the NEON kernels
# with the dot-product extension (qemu's `max` CPU), without it (`cortex-a53`), and the
# scalar path forced, so that every kernel table is checked against the scalar reference
# on an Arm instruction set. The linker and runner come from .cargo/config.toml.
set -euo pipefail
cd "$(dirname "$0")/../.."
target=aarch64-unknown-linux-gnu
for tool in aarch64-linux-gnu-gcc qemu-aarch64; do
  command -v "$tool" >/dev/null || { echo "aarch64 tests: '$tool' is missing; run scripts/setup.sh test" >&2; exit 1; }
done
rustup target list --installed 2>/dev/null | grep -qx "$target" \
  || { echo "aarch64 tests: Rust target $target is missing; run scripts/setup.sh test" >&2; exit 1; }

# run CPU [KERNELS]: the tests on qemu's CPU model CPU, optionally with MOTE_KERNELS set.
run() {
  echo "-- QEMU_CPU=$1 ${2:+MOTE_KERNELS=$2}"
  env QEMU_CPU="$1" ${2:+MOTE_KERNELS=$2} cargo test --release --target "$target" -p mote-tensor -q
}
cargo test --release --target "$target" -p mote-tensor --no-run -q
run max
run cortex-a53
run max scalar
