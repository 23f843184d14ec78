"""Measure llama.cpp (through llama-cpp-python) the way `mote bench` measures mote.

pp<N>: one batched eval of N prompt tokens on an empty cache (tokens/s).
tg<N>: N single-token evals after a 1-token warm prompt (tokens/s).
-d D: both after D tokens already evaluated (untimed); the tests are named pp<N>@d<D>.
Prints one JSON object per line: {"engine","test","threads","tokens_per_s","load_s"}.
"""
import argparse, json, resource, sys, time

from llama_cpp import Llama


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("-m", "--model", required=True)
    ap.add_argument("-t", "--threads", type=int, default=1)
    ap.add_argument("-p", "--n-prompt", type=int, default=512)
    ap.add_argument("-n", "--n-gen", type=int, default=128)
    ap.add_argument("-r", "--repetitions", type=int, default=1)
    ap.add_argument("-d", "--n-depth", type=int, default=0)
    a = ap.parse_args()
    at = f"@d{a.n_depth}" if a.n_depth else ""

    t0 = time.perf_counter()
    batch = max(a.n_prompt, 512 if a.n_depth else 1)
    llm = Llama(model_path=a.model, n_ctx=a.n_depth + a.n_prompt + a.n_gen + 16, n_batch=batch,
                n_ubatch=batch, n_threads=a.threads, n_threads_batch=a.threads,
                verbose=False, logits_all=False)
    load_s = time.perf_counter() - t0
    vocab = llm.n_vocab()
    # Same token pattern as mote bench: deterministic ids spread over the vocabulary.
    prompt = [(i * 7919 + 13) % vocab for i in range(a.n_prompt)]
    context = [(i * 7919 + 13) % vocab for i in range(a.n_depth)]
    for _ in range(a.repetitions):
        if a.n_prompt > 0:
            llm.reset()
            llm._ctx.memory_clear(True) if hasattr(llm._ctx, "memory_clear") else None
            if context:
                llm.eval(context)
            t = time.perf_counter()
            llm.eval(prompt)
            dt = time.perf_counter() - t
            print(json.dumps({"engine": "llama.cpp", "test": f"pp{a.n_prompt}{at}", "threads": a.threads,
                              "tokens_per_s": a.n_prompt / dt, "load_s": load_s}), flush=True)
        if a.n_gen > 0:
            llm.reset()
            llm._ctx.memory_clear(True) if hasattr(llm._ctx, "memory_clear") else None
            if context:
                llm.eval(context)
            llm.eval([13])
            t = time.perf_counter()
            for i in range(a.n_gen):
                llm.eval([(i * 31 + 7) % vocab])
            dt = time.perf_counter() - t
            print(json.dumps({"engine": "llama.cpp", "test": f"tg{a.n_gen}{at}", "threads": a.threads,
                              "tokens_per_s": a.n_gen / dt, "load_s": load_s}), flush=True)
    rss_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"engine": "llama.cpp", "test": "rss", "peak_rss_mib": rss_kib / 1024}), flush=True)


if __name__ == "__main__":
    sys.exit(main())
