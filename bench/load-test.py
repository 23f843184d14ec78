#!/usr/bin/env python3
"""Bounded load test of `mote serve` on loopback.

For each --parallel value (default: 4, then 1) it starts the server on a free 127.0.0.1
port, runs --clients concurrent clients for --duration seconds (each sends streaming chat
requests back to back), lets the requests in flight finish, stops the server with SIGTERM
and reports: requests by status, 5xx count, dropped connections (a stream that broke off
or ended without `data: [DONE]`), time to first token p50/p99, and aggregate generated
tokens per second. Results also go to out/load-test.json. Standard library only.

    python3 bench/load-test.py                       # SmolLM2, 32 clients, 60 s each
    python3 bench/load-test.py --duration 10 --parallel 2
"""

import argparse
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time

PROMPTS = [
    "What is the capital of France?",
    "Write a haiku about the sea.",
    "Explain what a CPU cache is in two sentences.",
    "Give me three tips for learning to cook.",
    "Why is the sky blue?",
    "Tell me a short story about a robot and a cat.",
    "What are prime numbers?",
    "Summarise the plot of Moby Dick in one paragraph.",
]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_healthy(port, proc, timeout=120):
    end = time.time() + timeout
    while time.time() < end:
        if proc.poll() is not None:
            raise RuntimeError("server exited during start-up")
        try:
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            c.request("GET", "/health")
            if c.getresponse().status == 200:
                return
        except OSError:
            pass
        time.sleep(0.2)
    raise RuntimeError("server did not become healthy")


def percentile(xs, p):
    if not xs:
        return float("nan")
    xs = sorted(xs)
    k = min(len(xs) - 1, max(0, int(round(p / 100 * (len(xs) - 1)))))
    return xs[k]


class Stats:
    def __init__(self):
        self.lock = threading.Lock()
        self.status = {}
        self.dropped = 0
        self.ttft = []
        self.tokens = 0
        self.completed = 0

    def add(self, status=None, dropped=False, ttft=None, tokens=0):
        with self.lock:
            if status is not None:
                self.status[status] = self.status.get(status, 0) + 1
            self.dropped += dropped
            if ttft is not None:
                self.ttft.append(ttft)
            self.tokens += tokens
            self.completed += status == 200 and not dropped


def one_request(port, prompt, max_tokens, stats):
    body = json.dumps({
        "messages": [{"role": "user", "content": prompt}],
        "max_tokens": max_tokens,
        "stream": True,
        "stream_options": {"include_usage": True},
    })
    start = time.perf_counter()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=300)
    try:
        conn.request("POST", "/v1/chat/completions", body, {"Content-Type": "application/json"})
        resp = conn.getresponse()
        if resp.status != 200:
            resp.read()
            stats.add(status=resp.status)
            if resp.status in (429, 503):
                time.sleep(float(resp.getheader("Retry-After", "1")))
            return
        ttft, tokens, done = None, 0, False
        for raw in resp:
            line = raw.decode("utf-8", "replace").strip()
            if not line.startswith("data:"):
                continue
            data = line[5:].strip()
            if data == "[DONE]":
                done = True
                break
            msg = json.loads(data)
            if "error" in msg:
                break
            if msg.get("usage"):
                tokens = msg["usage"]["completion_tokens"]
            for ch in msg.get("choices", []):
                if ch.get("delta", {}).get("content") and ttft is None:
                    ttft = time.perf_counter() - start
        stats.add(status=200, dropped=not done, ttft=ttft, tokens=tokens)
    except (OSError, http.client.HTTPException):
        stats.add(status="conn-error", dropped=True)
    finally:
        conn.close()


def read_metrics(port):
    """The server's counters from GET /metrics (name -> value; labelled series skipped)."""
    try:
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        c.request("GET", "/metrics")
        text = c.getresponse().read().decode()
    except (OSError, http.client.HTTPException):
        return {}
    out = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 2 and not line.startswith("#") and "{" not in parts[0]:
            try:
                out[parts[0]] = float(parts[1])
            except ValueError:
                pass
    return out


def run_phase(args, parallel):
    port = free_port()
    log = open(os.path.join(args.out, f"load-test-server-p{parallel}.log"), "w")
    cmd = [args.bin, "serve", args.model, "--host", "127.0.0.1", "--port", str(port),
           "--parallel", str(parallel), "--ctx-size", str(args.ctx_size),
           "--max-queue", str(args.clients)]
    if args.threads:
        cmd += ["--threads", str(args.threads)]
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_healthy(port, proc)
        stats = Stats()
        deadline = time.time() + args.duration

        def client(i):
            n = 0
            while time.time() < deadline:
                one_request(port, PROMPTS[(i + n) % len(PROMPTS)], args.max_tokens, stats)
                n += 1

        t0 = time.time()
        threads = [threading.Thread(target=client, args=(i,)) for i in range(args.clients)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        elapsed = time.time() - t0
        counters = read_metrics(port)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            rc = proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            rc = "killed"
        log.close()
    five_xx = sum(v for k, v in stats.status.items() if isinstance(k, int) and k >= 500)
    return {
        "parallel": parallel,
        "clients": args.clients,
        "seconds": round(elapsed, 1),
        "requests": {str(k): v for k, v in sorted(stats.status.items(), key=str)},
        "completed": stats.completed,
        "http_5xx": five_xx,
        "dropped": stats.dropped,
        "ttft_p50_s": round(percentile(stats.ttft, 50), 3),
        "ttft_p99_s": round(percentile(stats.ttft, 99), 3),
        "generated_tokens": stats.tokens,
        "tokens_per_s": round(stats.tokens / elapsed, 1),
        "server_exit": rc,
        "prompt_tokens": int(counters.get("mote_prompt_tokens_total", 0)),
        "prompt_tokens_cached": int(counters.get("mote_prompt_tokens_cached_total", 0)),
        # Share of the wall time the scheduler spent in forward passes: what is left is
        # sampling, streaming and waiting.
        "forward_busy": round(counters.get("mote_decode_seconds_total", 0) / elapsed, 3),
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bin", default="target/release/mote")
    ap.add_argument("--model", default="models/SmolLM2-135M-Instruct.Q4_1.gguf")
    ap.add_argument("--clients", type=int, default=32)
    ap.add_argument("--duration", type=float, default=60)
    ap.add_argument("--parallel", default="4,1", help="comma-separated slot counts, one phase each")
    ap.add_argument("--max-tokens", type=int, default=64)
    ap.add_argument("--ctx-size", type=int, default=1024)
    ap.add_argument("--threads", type=int, default=0, help="server kernel threads (0: its default)")
    ap.add_argument("--out", default="out")
    args = ap.parse_args()
    os.chdir(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
    os.makedirs(args.out, exist_ok=True)
    results = [run_phase(args, int(p)) for p in args.parallel.split(",")]
    print("| parallel | clients | s | completed | 5xx | dropped | TTFT p50 s | TTFT p99 s | tokens/s | "
          "prompt (cached) | forward busy | exit |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in results:
        print(f"| {r['parallel']} | {r['clients']} | {r['seconds']} | {r['completed']} | {r['http_5xx']} | "
              f"{r['dropped']} | {r['ttft_p50_s']} | {r['ttft_p99_s']} | {r['tokens_per_s']} | "
              f"{r['prompt_tokens']} ({r['prompt_tokens_cached']}) | {r['forward_busy']:.0%} | {r['server_exit']} |")
    with open(os.path.join(args.out, "load-test.json"), "w") as f:
        json.dump(results, f, indent=2)
    bad = any(r["http_5xx"] or r["dropped"] or r["server_exit"] != 0 for r in results)
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
