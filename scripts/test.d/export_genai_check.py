"""onnxruntime-genai on an `--ort-genai` export folder: its tokenizer must give the
reference's prompt ids for TEXT, and its greedy generation must give the reference's
tokens (REF.json from mote_logits: `prompt`, `generated`). Prints one JSON line; exits 1
on a mismatch.

  export_genai_check.py DIR REF TEXT
"""

import json
import sys

import onnxruntime_genai as og


def main():
    folder, ref, text = sys.argv[1:4]
    meta = json.load(open(ref + ".json"))
    prompt, want = meta["prompt"], meta["generated"]
    model = og.Model(folder)
    tok = og.Tokenizer(model)
    ids = [int(i) for i in tok.encode(text)][: len(prompt)]
    params = og.GeneratorParams(model)
    params.set_search_options(max_length=len(prompt) + len(want), do_sample=False, top_k=1)
    gen = og.Generator(model, params)
    gen.append_tokens(prompt)
    while not gen.is_done():
        gen.generate_next_token()
    got = [int(t) for t in gen.get_sequence(0)][len(prompt):]
    result = {
        "tokenizer_same_ids": ids == prompt,
        "generated": len(got),
        "greedy_equal": got == want[: len(got)] and len(got) == len(want),
        "text": tok.decode(got),
    }
    print(json.dumps(result))
    sys.exit(0 if result["tokenizer_same_ids"] and result["greedy_equal"] else 1)


if __name__ == "__main__":
    main()
