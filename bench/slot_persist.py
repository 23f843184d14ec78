#!/usr/bin/env python3
"""Slot files: save/restore time per MB through `mote serve`, and `mote run --prompt-cache`
time to first token on a long prompt (docs/context.md, "Slot files").

    python3 bench/slot_persist.py [--model M] [--tokens 1500] [--runs 5] [--threads 2]

Needs target/release/mote (cargo build --release -p mote-cli). Prints markdown tables.
"""

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MOTE = os.path.join(ROOT, "target", "release", "mote")
MODELS = os.environ.get("MOTE_MODELS", os.path.join(ROOT, "models"))


def prompt_of(model, tokens, threads, workdir):
    """A prompt from Moby Dick of about `tokens` tokens; returns its file and token count."""
    words = open(os.path.join(MODELS, "texts", "moby-dick.txt"), encoding="utf-8").read().split()
    n_words = int(tokens * 0.75)
    path = os.path.join(workdir, "prompt.txt")
    for _ in range(6):
        with open(path, "w", encoding="utf-8") as f:
            f.write(" ".join(words[1000 : 1000 + n_words]))
        got = run_json(model, path, threads, [])["prompt_tokens"]
        if abs(got - tokens) <= 10:
            break
        n_words = int(n_words * tokens / got)
    return path, got


def run_json(model, prompt_file, threads, extra):
    out = subprocess.run(
        [MOTE, "run", model, "-f", prompt_file, "-n", "1", "--temp", "0", "--json", "-t", str(threads)] + extra,
        check=True, capture_output=True, text=True,
    )
    return json.loads(out.stdout)


def ttft_ms(v):
    """Time to first token without the model load (restore + prefill + first sample)."""
    t = v["timings"]
    return t["time_to_first_token_ms"] - t["load_ms"]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def post(port, path, body):
    req = urllib.request.Request(
        f"http://127.0.0.1:{port}{path}", data=json.dumps(body).encode(),
        headers={"content-type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=600) as r:
        return json.loads(r.read())


def serve_bench(model, prompt, threads, runs, cache_type, workdir):
    port = free_port()
    slots = os.path.join(workdir, f"slots-{cache_type}")
    proc = subprocess.Popen(
        [MOTE, "serve", model, "--port", str(port), "-t", str(threads), "--parallel", "2",
         "-ctk", cache_type, "-ctv", cache_type, "--slot-save-path", slots],
        stderr=subprocess.DEVNULL,
    )
    try:
        for _ in range(600):
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1)
                break
            except OSError:
                time.sleep(0.1)
        done = post(port, "/v1/completions", {"prompt": prompt, "max_tokens": 1, "temperature": 0})
        n_tokens = done["usage"]["prompt_tokens"]
        slot = max(
            json.loads(urllib.request.urlopen(f"http://127.0.0.1:{port}/slots").read()),
            key=lambda s: s["n_cached"],
        )["id"]
        saves, restores, size = [], [], 0
        for i in range(runs):
            r = post(port, f"/slots/{slot}?action=save", {"filename": "bench.bin"})
            saves.append(r["timings"]["save_ms"])
            size = r["n_written"]
            r = post(port, f"/slots/{1 - slot}?action=restore", {"filename": "bench.bin"})
            restores.append(r["timings"]["restore_ms"])
        return n_tokens, size, statistics.median(saves), statistics.median(restores)
    finally:
        proc.terminate()
        proc.wait()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default=os.path.join(MODELS, "SmolLM2-135M-Instruct.Q4_1.gguf"))
    ap.add_argument("--tokens", type=int, default=1500)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    if not os.path.exists(MOTE):
        sys.exit("build first: cargo build --release -p mote-cli")
    with tempfile.TemporaryDirectory() as work:
        prompt_file, n = prompt_of(a.model, a.tokens, a.threads, work)
        prompt = open(prompt_file, encoding="utf-8").read()
        print(f"model {os.path.basename(a.model)}, prompt {n} tokens, {a.threads} threads, "
              f"median of {a.runs}\n")
        print("| cache | tokens | file MB | save ms | restore ms | save MB/s | restore MB/s |")
        print("| --- | --- | --- | --- | --- | --- | --- |")
        for ct in ["f16", "q8_0", "f32"]:
            toks, size, save, restore = serve_bench(a.model, prompt, a.threads, a.runs, ct, work)
            mb = size / 1e6
            print(f"| {ct} | {toks} | {mb:.1f} | {save:.1f} | {restore:.1f} | "
                  f"{mb / save * 1e3:.0f} | {mb / restore * 1e3:.0f} |")

        cache = os.path.join(work, "prompt.cache")
        cold = [ttft_ms(run_json(a.model, prompt_file, a.threads, [])) for _ in range(a.runs)]
        first = run_json(a.model, prompt_file, a.threads, ["--prompt-cache", cache])
        warm = [run_json(a.model, prompt_file, a.threads, ["--prompt-cache", cache]) for _ in range(a.runs)]
        print("\n| `mote run -n 1` | time to first token (ms, without model load) | of which restore (ms) | tokens processed |")
        print("| --- | --- | --- | --- |")
        print(f"| no cache | {statistics.median(cold):.0f} | | {n} |")
        print(f"| --prompt-cache, first run (saves) | {ttft_ms(first):.0f} | | {n} |")
        print(f"| --prompt-cache, later runs | {statistics.median(ttft_ms(v) for v in warm):.0f} | "
              f"{statistics.median(v['timings']['prompt_cache_ms'] for v in warm):.1f} | "
              f"{warm[0]['prompt_tokens'] - warm[0]['reused_tokens']} |")


if __name__ == "__main__":
    main()
