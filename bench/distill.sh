#!/usr/bin/env bash
# Distillation experiment (not CI): SmolLM2-135M (Q4_1 dequantized to F32) as teacher,
# students with K blocks dropped (`mote prune --structured layers:K`), each healed by
# distillation (`mote distill`) and, for comparison, by hard-label training on the same
# tokens (`mote finetune`, same seed, steps, windows). Held-out PPL and KL to the teacher
# by `mote perplexity --kl-base` on text not used for training. Prints a Markdown table.
#
#   KS="2 6" STEPS=40 CTX=64 BATCH=2 THREADS=2 bench/distill.sh
set -euo pipefail
cd "$(dirname "$0")/.."
MOTE=${MOTE:-target/release/mote}
MODELS=${MOTE_MODELS:-models}
OUT=${OUT:-/tmp/mote-distill}
KS=${KS:-"2 4 6"}
STEPS=${STEPS:-40}
CTX=${CTX:-64}
BATCH=${BATCH:-2}
LR=${LR:-2e-4}
THREADS=${THREADS:-2}
LAYERS=${LAYERS:-all}
EVAL_CHUNKS=${EVAL_CHUNKS:-16}
mkdir -p "$OUT"
# Training text: the first 300 kB of Moby Dick; held-out: its last 60 kB.
head -c 300000 "$MODELS/texts/moby-dick.txt" > "$OUT/train.txt"
tail -c 60000 "$MODELS/texts/moby-dick.txt" > "$OUT/held.txt"
T="$OUT/teacher-f32.gguf"
[ -f "$T" ] || $MOTE quantize "$MODELS/SmolLM2-135M-Instruct.Q4_1.gguf" "$T" --type F32 --allow-requantize >&2
ppl() { # MODEL -> "PPL KL"
  $MOTE perplexity "$1" -f "$OUT/held.txt" -c "$CTX" --chunks "$EVAL_CHUNKS" --kl-base "$OUT/base.kl" --threads "$THREADS" --json 2>/dev/null \
    | python3 -c 'import json,sys; r=json.load(sys.stdin); print(r["ppl"], (r.get("kl") or {}).get("mean_kl", 0.0))'
}
$MOTE perplexity "$T" -f "$OUT/held.txt" -c "$CTX" --chunks "$EVAL_CHUNKS" --kl-base "$OUT/base.kl" --kl-base-write --threads "$THREADS" >&2
read -r PT _ < <(ppl "$T")
COMMON=(-f "$OUT/train.txt" -c "$CTX" -b "$BATCH" --steps "$STEPS" --lr "$LR" --warmup 4 -t "$THREADS" --seed 1 --train-layers "$LAYERS" --json)
echo "| K | teacher PPL | student PPL / KL | distilled PPL / KL | hard-label PPL / KL | gap closed (distill / hard) | distill tok/s | hard tok/s | steps × tokens | distill s |"
echo "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"
for K in $KS; do
  S="$OUT/student-k$K.gguf"
  [ -f "$S" ] || $MOTE prune "$T" "$S" --structured "layers:$K" -f "$OUT/train.txt" -c 256 --chunks 2 >&2
  read -r P0 K0 < <(ppl "$S")
  DJ=$($MOTE distill --teacher "$T" --student "$S" -o "$OUT/distilled-k$K.gguf" --temperature 1 "${COMMON[@]}")
  read -r P1 K1 < <(ppl "$OUT/distilled-k$K.gguf")
  HJ=$($MOTE finetune "$S" -o "$OUT/hard-k$K.gguf" "${COMMON[@]}")
  read -r P2 K2 < <(ppl "$OUT/hard-k$K.gguf")
  python3 - "$K" "$PT" "$P0" "$K0" "$P1" "$K1" "$P2" "$K2" "$DJ" "$HJ" "$STEPS" "$BATCH" "$CTX" <<'PY'
import json, math, sys
k, pt, p0, k0, p1, k1, p2, k2 = sys.argv[1], *map(float, sys.argv[2:9])
dj, hj = json.loads(sys.argv[9]), json.loads(sys.argv[10])
steps, b, c = map(int, sys.argv[11:14])
gap = lambda p: (math.log(p0) - math.log(p)) / (math.log(p0) - math.log(pt))
print(f"| {k} | {pt:.3f} | {p0:.3f} / {k0:.4f} | {p1:.3f} / {k1:.4f} | {p2:.3f} / {k2:.4f} | "
      f"{100*gap(p1):.0f}% / {100*gap(p2):.0f}% | {dj['tokens_per_s']:.1f} | {hj['tokens_per_s']:.1f} | "
      f"{steps} × {b*c} | {dj['seconds']:.0f} |")
PY
done
