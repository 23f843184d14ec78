#!/usr/bin/env bash
# `mote export --format onnx` run in ONNX Runtime: onnx.checker (full check), then
# 32 teacher-forced positions and 32 greedy decode steps through the KV cache against
# mote's logits on the same GGUF (crates/mote-convert/examples/mote_logits.rs), and ONNX
# Runtime's own greedy continuation against mote's. Float exports: max |Δlogit| ≤ 1e-3,
# every argmax and the greedy text equal (SmolLM2: 64 greedy tokens on 3 prompts);
# Q4_0 / Q8_0 (MatMulNBits, same blocks): mean KL ≤ 5e-3, argmax agreement ≥ 98% for
# Q4_0 and ≥ 90% for Q8_0, whose remaining gap is mote's int8 rounding of activations
# (docs/export.md). onnxruntime-genai, on the same SmolLM2 folder (`--ort-genai`), must
# tokenize the prompt to mote's ids and generate mote's greedy tokens. Installs
# onnxruntime, onnxruntime-genai, onnx, numpy into .cache/export-venv.
set -euo pipefail
cd "$(dirname "$0")/../.."

MOTE_BIN=${MOTE_BIN:-target/release/mote}
LOGITS_BIN=${LOGITS_BIN:-target/release/examples/mote_logits}
MOTE_MODELS=${MOTE_MODELS:-models}
VENV=.cache/export-venv
if ! "$VENV/bin/python" -c 'import onnxruntime, onnxruntime_genai, onnx, numpy' 2>/dev/null; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q onnxruntime onnxruntime-genai onnx numpy
fi
[ -x "$LOGITS_BIN" ] || cargo build --release -q -p mote-convert --example mote_logits
OUT=out/export
rm -rf "$OUT"
mkdir -p "$OUT"
text() { head -c 3000 "$MOTE_MODELS/texts/$1"; }

# check NAME GGUF TEXTFILE DECODE CHECK-FLAGS...: export, run mote (32 prompt tokens,
# DECODE greedy steps), run ONNX Runtime, compare.
check() {
  local name=$1 gguf=$2 textfile=$3 decode=$4
  shift 4
  [ -d "$OUT/$name" ] || "$MOTE_BIN" export "$gguf" "$OUT/$name" --format onnx --ort-genai >/dev/null
  "$LOGITS_BIN" "$gguf" "$(text "$textfile")" 32 "$decode" "$OUT/$name-$textfile"
  "$VENV/bin/python" scripts/test.d/export_onnx_check.py "$OUT/$name" "$OUT/$name-$textfile" \
    --label "$name $textfile" "$@"
}

check tiny "$MOTE_MODELS/tiny.gguf" moby-dick.txt 32 --max-abs 1e-3

SMOL="$MOTE_MODELS/SmolLM2-135M-Instruct.Q4_1.gguf"
"$MOTE_BIN" quantize "$SMOL" "$OUT/smol-f32.gguf" --type F32 --allow-requantize >/dev/null
for t in moby-dick.txt sotu.txt shakespeare.txt; do
  check smol-f32 "$OUT/smol-f32.gguf" "$t" 64 --max-abs 1e-3
done
"$VENV/bin/python" scripts/test.d/export_genai_check.py "$OUT/smol-f32" \
  "$OUT/smol-f32-moby-dick.txt" "$(text moby-dick.txt)"
for q in Q4_0:0.98 Q8_0:0.90; do
  t=${q%:*}
  "$MOTE_BIN" quantize "$OUT/smol-f32.gguf" "$OUT/smol-$t.gguf" --type "$t" --pure >/dev/null
  check "smol-$t" "$OUT/smol-$t.gguf" moby-dick.txt 32 --max-kl 5e-3 --min-agree "${q#*:}"
done
rm -rf "$OUT"
