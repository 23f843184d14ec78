#!/usr/bin/env python3
"""Builds the quantization table in docs/compression.md: for each model and type,
file size, bits per weight, perplexity, ΔPPL and KL divergence against the model's
dequantized F16 version, measured by mote; beside it llama.cpp's perplexity on the file
its own llama-quantize wrote (through llama-cpp-python), and whether the two
quantizers wrote the same tensor bytes.

Held-out text: the first --bytes of sotu.txt (no calibration data is used by these
presets). Runs are short (--chunks windows of --ctx tokens) for a 2-core machine.

Usage: .cache/ref-venv/bin/python scripts/compress-table.py [--chunks 3] [--ctx 512]
       [--models smollm2,gemma3] [--types Q8_0,Q4_K_M,...] [--no-llama]
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODELS = os.environ.get("MOTE_MODELS", os.path.join(ROOT, "models"))
SOURCES = {
    "smollm2": ("SmolLM2-135M", "SmolLM2-135M-Instruct.Q4_1.gguf"),
    "gemma3": ("Gemma-3-270m", "gemma-3-270m-Q4_K_M.gguf"),
}
TYPES = ["Q8_0", "Q6_K", "Q5_K_M", "Q4_K_M", "Q4_K_S", "Q4_0", "Q3_K_M", "Q2_K"]
PY = sys.executable
FIX = os.path.join(ROOT, "scripts", "fixtures")


def run(cmd, **kw):
    return subprocess.run(cmd, check=True, capture_output=True, text=True, **kw).stdout


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--ctx", type=int, default=512)
    ap.add_argument("--chunks", type=int, default=3)
    ap.add_argument("--bytes", type=int, default=200000)
    ap.add_argument("--models", default="smollm2,gemma3")
    ap.add_argument("--types", default=",".join(TYPES))
    ap.add_argument("--no-llama", action="store_true")
    a = ap.parse_args()

    env = dict(os.environ, CARGO_TARGET_DIR=os.path.join(ROOT, "target", "compress"))
    subprocess.run(["cargo", "build", "--release", "-p", "mote-compress"], cwd=ROOT, env=env,
                   check=True)
    exe = os.path.join(ROOT, "target", "compress", "release", "mote-compress")
    tmp = tempfile.mkdtemp(prefix="mote-table-")
    text = os.path.join(tmp, "heldout.txt")
    with open(os.path.join(MODELS, "texts", "sotu.txt"), "rb") as f:
        data = f.read(a.bytes)
    with open(text, "wb") as f:
        f.write(data)
    ppl_args = ["-f", text, "-c", str(a.ctx), "--chunks", str(a.chunks)]

    print(f"ctx {a.ctx}, {a.chunks} chunks, held-out text: first {a.bytes} bytes of sotu.txt\n")
    print("| model | type | MiB | bpw | PPL (mote) | ΔPPL | mean KLD | same top | "
          "PPL (llama.cpp, its own quant) | same bytes |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---|")
    for key in a.models.split(","):
        label, src = SOURCES[key]
        f16 = os.path.join(tmp, f"{key}-F16.gguf")
        kl = os.path.join(tmp, f"{key}.kl")
        run([exe, "quantize", os.path.join(MODELS, src), f16, "--type", "F16",
             "--allow-requantize"])
        base = json.loads(run([exe, "perplexity", f16, *ppl_args, "--kl-base", kl,
                               "--kl-base-write", "--json"]))
        size = os.path.getsize(f16) / 2**20
        print(f"| {label} | F16 (reference) | {size:.1f} | 16.00 | {base['ppl']:.3f} ± "
              f"{base['ppl_error']:.3f} | — | — | — | — | — |", flush=True)
        for ty in a.types.split(","):
            out = os.path.join(tmp, f"{key}-{ty}.gguf")
            q = json.loads(run([exe, "quantize", f16, out, "--type", ty, "--json"]))
            r = json.loads(run([exe, "perplexity", out, *ppl_args, "--kl-base", kl, "--json"]))
            k = r["kl"]
            llama_ppl, same = "—", "—"
            if not a.no_llama:
                lq = os.path.join(tmp, f"{key}-{ty}-llama.gguf")
                run([PY, os.path.join(FIX, "llama_quantize.py"), "quantize", f16, lq, ty])
                lr = json.loads(run([PY, os.path.join(FIX, "ppl_reference.py"), lq, text,
                                     "--ctx", str(a.ctx), "--chunks", str(a.chunks)]))
                llama_ppl = f"{lr['ppl']:.3f}"
                same = "yes" if identical(out, lq) else "no"
                os.remove(lq)
            print(f"| {label} | {ty} | {q['bytes_out'] / 2**20:.1f} | {q['bpw_out']:.2f} | "
                  f"{r['ppl']:.3f} | {k['delta_ppl']:+.3f} | {k['mean_kl']:.4f} | "
                  f"{100 * k['top1_agreement']:.1f}% | {llama_ppl} | {same} |", flush=True)
            os.remove(out)
        os.remove(f16)


def identical(a, b):
    import numpy as np
    from gguf import GGUFReader
    ra, rb = GGUFReader(a), GGUFReader(b)
    tb = {t.name: t for t in rb.tensors}
    if len(ra.tensors) != len(rb.tensors):
        return False
    for t in ra.tensors:
        u = tb.get(t.name)
        if u is None or t.tensor_type != u.tensor_type:
            return False
        if not np.array_equal(np.asarray(t.data).view(np.uint8), np.asarray(u.data).view(np.uint8)):
            return False
    return True


if __name__ == "__main__":
    main()
