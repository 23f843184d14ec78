#!/usr/bin/env python3
"""Quantize a GGUF with llama.cpp (llama-cpp-python's llama_model_quantize), optionally
with an importance matrix read from an imatrix GGUF (llama-imatrix's or `mote
imatrix`'s). The per-column importance passed is in_sum2 / count, as llama-quantize
computes it. Usage: llama-imatrix-quantize.py IN OUT FTYPE [IMATRIX]
(FTYPE: llama_ftype number, e.g. 2 = Q4_0, 15 = Q4_K_M)."""
import ctypes
import sys

import gguf
import llama_cpp
import numpy as np


def load_importance(path):
    r = gguf.GGUFReader(path)
    tensors = {t.name: np.asarray(t.data, dtype=np.float32).reshape(-1) for t in r.tensors}
    out = {}
    for name, sums in tensors.items():
        if not name.endswith(".in_sum2"):
            continue
        base = name[: -len(".in_sum2")]
        count = float(tensors[base + ".counts"][0])
        out[base] = sums / count if count > 0 else np.ones_like(sums)
    return out


def main():
    src, dst, ftype = sys.argv[1], sys.argv[2], int(sys.argv[3])
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = ftype
    params.allow_requantize = True
    keep = []
    if len(sys.argv) > 4:
        imp = load_importance(sys.argv[4])
        entries = (llama_cpp.llama_model_imatrix_data * (len(imp) + 1))()
        for i, (name, v) in enumerate(sorted(imp.items())):
            arr = np.ascontiguousarray(v, dtype=np.float32)
            keep.append(arr)
            entries[i].name = name.encode()
            entries[i].data = arr.ctypes.data_as(ctypes.POINTER(ctypes.c_float))
            entries[i].size = arr.size
        entries[len(imp)].name = None  # end marker
        keep.append(entries)
        params.imatrix = ctypes.cast(entries, ctypes.POINTER(llama_cpp.llama_model_imatrix_data))
        print(f"{len(imp)} importance entries from {sys.argv[4]}")
    rc = llama_cpp.llama_model_quantize(src.encode(), dst.encode(), ctypes.byref(params))
    sys.exit(rc)


if __name__ == "__main__":
    main()
