"""Runs an exported ONNX folder in ONNX Runtime and compares it with reference logits.

Knows nothing about mote: it reads `model.onnx` (Optimum's decoder-with-past interface)
and a reference made by another runtime on the same weights (REF.json: `prompt`,
`generated`, `vocab`; REF.bin: float32 logits, one row per prompt position, then one per
decode step fed with `generated[j]`).

  export_onnx_check.py ONNX_DIR REF --max-abs 1e-3 --min-agree 1.0 [--max-kl X]

Checks: onnx.checker.check_model(full_check=True); the prompt teacher-forced in one call
with an empty past, then each decode step through the returned KV cache; max |Δlogit|,
mean KL(ref || onnx) in nats, argmax agreement; and that ONNX Runtime's own greedy
continuation equals the reference's. Prints one JSON line; exits 1 if a bound fails.
"""

import argparse
import json
import os
import sys
import time

import numpy as np
import onnx
import onnxruntime as ort


def log_softmax(x):
    x = x.astype(np.float64)
    m = x.max(axis=-1, keepdims=True)
    return x - m - np.log(np.exp(x - m).sum(axis=-1, keepdims=True))


class Decoder:
    def __init__(self, path, threads):
        so = ort.SessionOptions()
        if threads:
            so.intra_op_num_threads = threads
        self.sess = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
        self.past = [i for i in self.sess.get_inputs() if i.name.startswith("past_key_values.")]
        self.outputs = [o.name for o in self.sess.get_outputs()]

    def start(self):
        self.cache = {
            i.name: np.zeros((1, i.shape[1], 0, i.shape[3]), dtype=np.float32) for i in self.past
        }
        self.length = 0

    def step(self, ids):
        n = len(ids)
        feeds = {
            "input_ids": np.array([ids], dtype=np.int64),
            "attention_mask": np.ones((1, self.length + n), dtype=np.int64),
            "position_ids": np.arange(self.length, self.length + n, dtype=np.int64)[None, :],
        }
        feeds.update(self.cache)
        out = dict(zip(self.outputs, self.sess.run(self.outputs, feeds)))
        for name in self.cache:
            self.cache[name] = out[name.replace("past_key_values.", "present.")]
        self.length += n
        return out["logits"][0]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("onnx_dir")
    ap.add_argument("ref")
    ap.add_argument("--max-abs", type=float, default=None)
    ap.add_argument("--max-kl", type=float, default=None)
    ap.add_argument("--min-agree", type=float, default=1.0)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--label", default="")
    a = ap.parse_args()

    path = os.path.join(a.onnx_dir, "model.onnx")
    onnx.checker.check_model(path, full_check=True)
    meta = json.load(open(a.ref + ".json"))
    vocab = meta["vocab"]
    ref = np.fromfile(a.ref + ".bin", dtype=np.float32).reshape(-1, vocab)
    prompt, generated = meta["prompt"], meta["generated"]

    t0 = time.time()
    dec = Decoder(path, a.threads)
    load_s = time.time() - t0
    dec.start()
    t0 = time.time()
    rows = [dec.step(prompt)]
    prompt_s = time.time() - t0
    t0 = time.time()
    for tok in generated[:-1]:
        rows.append(dec.step([tok]))
    decode_s = time.time() - t0
    got = np.concatenate(rows, axis=0)
    if got.shape != ref.shape:
        sys.exit(f"shape {got.shape} vs reference {ref.shape}")

    # ONNX Runtime's own greedy continuation from the prompt.
    dec.start()
    greedy = [int(np.argmax(dec.step(prompt)[-1]))]
    while len(greedy) < len(generated):
        greedy.append(int(np.argmax(dec.step([greedy[-1]])[-1])))

    lp_ref, lp_got = log_softmax(ref), log_softmax(got)
    kl = (np.exp(lp_ref) * (lp_ref - lp_got)).sum(axis=-1)
    result = {
        "label": a.label,
        "positions": int(ref.shape[0]),
        "max_abs": float(np.abs(got - ref).max()),
        "mean_kl": float(kl.mean()),
        "max_kl": float(kl.max()),
        "argmax_agree": float((got.argmax(-1) == ref.argmax(-1)).mean()),
        "greedy_equal": greedy == generated,
        "greedy_common_prefix": next(
            (i for i, (x, y) in enumerate(zip(greedy, generated)) if x != y), len(generated)
        ),
        "session_s": round(load_s, 3),
        "prompt_tok_s": round(len(prompt) / prompt_s, 1),
        "decode_tok_s": round((len(generated) - 1) / decode_s, 1) if decode_s > 0 else None,
    }
    print(json.dumps(result))
    ok = result["argmax_agree"] >= a.min_agree
    if a.max_abs is not None:
        ok &= result["max_abs"] <= a.max_abs and result["greedy_equal"]
    if a.max_kl is not None:
        ok &= result["mean_kl"] <= a.max_kl
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
