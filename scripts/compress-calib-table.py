#!/usr/bin/env python3
"""Builds the calibration-aware Q4_0 table in docs/compression.md: plain Q4_0, imatrix
Q4_0 (mote's `--imatrix`, which writes llama.cpp's bytes) and GPTQ Q4_0, for each
model, all from the model's dequantized F16 version and the same calibration text, each
scored by mote against the F16 (ΔPPL, KL) on a held-out text. With the reference venv
it adds llama.cpp's side: its own imatrix Q4_0 (llama_model_quantize given the same
imatrix), whether its bytes equal mote's, and llama.cpp's perplexity on the F16, on
its own imatrix Q4_0 and on mote's GPTQ file (which shows llama.cpp loads it).

Every step's output is kept in --work and reused when present, so a run can resume.

Usage: .cache/ref-venv/bin/python scripts/compress-calib-table.py [--exe PATH]
       [--work DIR] [--models smollm2,gemma3] [--chunks 5] [--calib-chunks 16]
       [--gptq-args '--gptq-damp-diag 1'] [--no-llama] [--json OUT]
"""
import argparse
import json
import os
import shlex
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODELS = os.environ.get("MOTE_MODELS", os.path.join(ROOT, "models"))
SOURCES = {
    "smollm2": ("SmolLM2-135M", "SmolLM2-135M-Instruct.Q4_1.gguf"),
    "gemma3": ("Gemma-3-270m", "gemma-3-270m-Q4_K_M.gguf"),
}
PY = sys.executable


def run(cmd):
    return subprocess.run(cmd, check=True, capture_output=True, text=True).stdout


def step(path, cmd):
    """Runs cmd unless path exists; returns path."""
    if not os.path.exists(path):
        out = run(cmd)
        if path.endswith(".json"):
            with open(path, "w") as f:
                f.write(out)
    return path


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--exe", help="a built mote-compress (default: build one)")
    ap.add_argument("--work", default=os.path.join(ROOT, "target", "compress-calib"))
    ap.add_argument("--models", default="smollm2,gemma3")
    ap.add_argument("--ctx", type=int, default=512)
    ap.add_argument("--chunks", type=int, default=5)
    ap.add_argument("--calib", default=os.path.join(MODELS, "texts", "moby-dick.txt"))
    ap.add_argument("--calib-chunks", type=int, default=16)
    ap.add_argument("--heldout", default=os.path.join(MODELS, "texts", "sotu.txt"))
    ap.add_argument("--gptq-args", default="--gptq-damp-diag 1")
    ap.add_argument("--no-llama", action="store_true")
    ap.add_argument("--json", help="also write the measurements here")
    a = ap.parse_args()

    exe = a.exe
    if exe is None:
        env = dict(os.environ, CARGO_TARGET_DIR=os.path.join(ROOT, "target", "compress"))
        subprocess.run(["cargo", "build", "--release", "-p", "mote-compress"], cwd=ROOT,
                       env=env, check=True)
        exe = os.path.join(ROOT, "target", "compress", "release", "mote-compress")
    os.makedirs(a.work, exist_ok=True)
    ppl_args = ["-f", a.heldout, "-c", str(a.ctx), "--chunks", str(a.chunks)]
    calib_name = os.path.basename(a.calib)
    print(f"calibration: {calib_name}, ctx {a.ctx}, {a.calib_chunks} windows; held-out: "
          f"{os.path.basename(a.heldout)}, ctx {a.ctx}, {a.chunks} windows\n")
    print("| model | method | MiB | PPL | ΔPPL | mean KLD | same top | "
          "PPL (llama.cpp) | ΔPPL (llama.cpp) |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
    results = []
    for key in a.models.split(","):
        label, src = SOURCES[key]
        w = lambda name: os.path.join(a.work, f"{key}-{name}")  # noqa: E731
        f16 = step(w("f16.gguf"), [exe, "quantize", os.path.join(MODELS, src), w("f16.gguf"),
                                   "--type", "F16", "--allow-requantize"])
        kl = w("f16.kl")
        base = json.load(open(step(w("f16.ppl.json"), [
            exe, "perplexity", f16, *ppl_args, "--kl-base", kl, "--kl-base-write", "--json"])))
        imat = step(w("imatrix.gguf"), [exe, "imatrix", f16, "-f", a.calib, "-c", str(a.ctx),
                                        "--chunks", str(a.calib_chunks), "-o", w("imatrix.gguf")])
        hess = w("hessians.gguf")
        variants = [
            ("Q4_0 plain", "q4_0-plain", []),
            ("Q4_0 imatrix (mote = llama.cpp's bytes)", "q4_0-imatrix", ["--imatrix", imat]),
            ("Q4_0 GPTQ (mote)", "q4_0-gptq",
             ["--imatrix", imat, "--method", "gptq", "--calib-file", a.calib,
              "--calib-ctx", str(a.ctx), "--calib-chunks", str(a.calib_chunks),
              "--gptq-hessians", hess, *shlex.split(a.gptq_args)]),
        ]
        llama_base = None
        if not a.no_llama:
            llama_base = json.load(open(step(w("f16.llama-ppl.json"), [
                PY, os.path.join(ROOT, "scripts", "fixtures", "ppl_reference.py"), f16,
                a.heldout, "--ctx", str(a.ctx), "--chunks", str(a.chunks)])))
        row = {"model": label, "method": "F16 (reference)", "mib": os.path.getsize(f16) / 2**20,
               "ppl": base["ppl"], "ppl_error": base["ppl_error"],
               "llama_ppl": llama_base and llama_base["ppl"]}
        results.append(row)
        lp = f"{llama_base['ppl']:.3f}" if llama_base else "—"
        print(f"| {label} | F16 (reference) | {row['mib']:.1f} | {base['ppl']:.3f} ± "
              f"{base['ppl_error']:.3f} | — | — | — | {lp} | — |", flush=True)
        for name, tag, extra in variants:
            out = w(f"{tag}.gguf")
            q = json.load(open(step(w(f"{tag}.quant.json"), [
                exe, "quantize", f16, out, "--type", "Q4_0", "--json", *extra])))
            r = json.load(open(step(w(f"{tag}.ppl.json"), [
                exe, "perplexity", out, *ppl_args, "--kl-base", kl, "--json"])))
            k = r["kl"]
            lppl = None
            if not a.no_llama and tag == "q4_0-gptq":
                lppl = json.load(open(step(w(f"{tag}.llama-ppl.json"), [
                    PY, os.path.join(ROOT, "scripts", "fixtures", "ppl_reference.py"), out,
                    a.heldout, "--ctx", str(a.ctx), "--chunks", str(a.chunks)])))["ppl"]
            row = {"model": label, "method": name, "mib": q["bytes_out"] / 2**20,
                   "ppl": r["ppl"], "delta_ppl": k["delta_ppl"], "mean_kl": k["mean_kl"],
                   "kl_error": k["kl_error"], "top1": k["top1_agreement"], "llama_ppl": lppl}
            results.append(row)
            print(table_row(row, llama_base), flush=True)
        if not a.no_llama:
            lq = w("q4_0-imatrix-llama.gguf")
            step(lq, [PY, os.path.join(ROOT, "scripts", "llama-imatrix-quantize.py"), f16, lq,
                      "2", imat])
            lr = json.load(open(step(w("q4_0-imatrix-llama.llama-ppl.json"), [
                PY, os.path.join(ROOT, "scripts", "fixtures", "ppl_reference.py"), lq,
                a.heldout, "--ctx", str(a.ctx), "--chunks", str(a.chunks)])))
            same = identical(w("q4_0-imatrix.gguf"), lq)
            row = {"model": label, "method": "Q4_0 imatrix (llama.cpp's own quantize)",
                   "mib": None, "llama_ppl": lr["ppl"], "same_bytes_as_mote": same}
            results.append(row)
            print(f"| {label} | Q4_0 imatrix (llama.cpp's quantize; same bytes as mote's: "
                  f"{'yes' if same else 'no'}) | — | — | — | — | — | {lr['ppl']:.3f} | "
                  f"{lr['ppl'] - llama_base['ppl']:+.3f} |", flush=True)
    if a.json:
        with open(a.json, "w") as f:
            json.dump(results, f, indent=1)


def table_row(r, llama_base):
    lp = ld = "—"
    if r.get("llama_ppl") is not None and llama_base:
        lp = f"{r['llama_ppl']:.3f}"
        ld = f"{r['llama_ppl'] - llama_base['ppl']:+.3f}"
    return (f"| {r['model']} | {r['method']} | {r['mib']:.1f} | {r['ppl']:.3f} | "
            f"{r['delta_ppl']:+.3f} | {r['mean_kl']:.4f} | {100 * r['top1']:.1f}% | {lp} | {ld} |")


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
