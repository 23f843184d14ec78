#!/usr/bin/env bash
# Benchmark mote against llama.cpp on the same GGUF, same threads, same machine, same run.
# Usage: bench/vs-llamacpp.sh [MODEL] [THREADS_LIST] [PAIRS]
#   e.g. bench/vs-llamacpp.sh models/SmolLM2-135M-Instruct.Q4_1.gguf 1,2 5
#   PP=512 TG=128 DEPTH=0 (env): prompt and generation lengths, tokens in the cache first
# Installs llama-cpp-python (builds llama.cpp, ~5-20 min the first time) into a cached
# venv, builds mote (release), then runs the two engines alternately PAIRS times per test
# and prints each run, the medians and the ratio mote / llama.cpp. Not part of the tests.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd); cd "$repo"
model=${1:-models/SmolLM2-135M-Instruct.Q4_1.gguf}
threads=${2:-1,2}
pairs=${3:-5}
pp=${PP:-512}; tg=${TG:-128}; depth=${DEPTH:-0}
venv=${MOTE_BENCH_VENV:-$repo/.cache/bench-venv}
if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c "import llama_cpp" 2>/dev/null; then
  python3 -m venv "$venv"
  CMAKE_BUILD_PARALLEL_LEVEL=$(nproc) "$venv/bin/pip" install -q llama-cpp-python==0.3.36
fi
cargo build --release -q -p mote-cli
mote_bin=${CARGO_TARGET_DIR:-$repo/target}/release/mote
out=$(mktemp -d); trap 'rm -rf "$out"' EXIT
IFS=, read -ra tlist <<< "$threads"
for t in "${tlist[@]}"; do
  for i in $(seq "$pairs"); do
    for engine in llama mote; do
      if [ $engine = llama ]; then
        "$venv/bin/python" bench/llamacpp_bench.py -m "$model" -t "$t" -p "$pp" -n "$tg" -d "$depth" >> "$out/runs.jsonl"
      else
        "$mote_bin" bench "$model" -t "$t" -p "$pp" -n "$tg" -d "$depth" -r 1 -o jsonl >> "$out/runs.jsonl"
      fi
    done
  done
done
python3 - "$out/runs.jsonl" "$model" <<'PY'
import json, statistics, sys
runs = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
print(f"model: {sys.argv[2]}")
print(f"{'test':>8} {'threads':>7} {'llama.cpp t/s':>14} {'mote t/s':>10} {'ratio':>6}  (medians; runs)")
keys = sorted({(r['test'], r['threads']) for r in runs if 'tokens_per_s' in r})
for test, t in keys:
    l = [r['tokens_per_s'] for r in runs if r.get('test') == test and r.get('threads') == t and r['engine'] == 'llama.cpp']
    m = [r['tokens_per_s'] for r in runs if r.get('test') == test and r.get('threads') == t and r['engine'] == 'mote']
    if l and m:
        lm, mm = statistics.median(l), statistics.median(m)
        print(f"{test:>8} {t:>7} {lm:>14.1f} {mm:>10.1f} {mm/lm:>6.2f}  llama.cpp={[round(x,1) for x in l]} mote={[round(x,1) for x in m]}")
for e in ('llama.cpp', 'mote'):
    rss = [r['peak_rss_mib'] for r in runs if r.get('test') == 'rss' and r['engine'] == e]
    if rss: print(f"peak RSS {e}: median {statistics.median(rss):.1f} MiB")
PY
