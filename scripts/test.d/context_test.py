"""Context-shift and answer checks against a running `mote serve` (stdlib only).

Usage: context_test.py PHASE PORT [ARGS]
  calibrate PORT          server WITHOUT --context-shift, ctx 256: finds a 301-token
                          prompt (the error message says the count), checks the 400
                          context_length_exceeded, writes it to out/ctx-prompt.txt
  shift PORT              server --ctx-size 256 --context-shift --ignore-eos: llama-server's
                          test_ctx_shift_enabled (301-token prompt answered, truncated,
                          predicted_n == max_tokens, prompt kept = 173 tokens)
  conversation PORT TURNS server --ctx-size 512 --context-shift: TURNS scripted turns
                          through /v1/chat/completions, full history sent each time
  answers PORT N          server with default settings: N /chat {"prompt": "hi"} and N
                          /v1/completions, seeds 1..N; prints the length distribution
"""
import json
import re
import sys
import time
import urllib.error
import urllib.request

LOREM = (
    "Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tempor "
    "incididunt ut labore et dolore magna aliqua. Ut enim ad minim veniam, quis nostrud "
    "exercitation ullamco laboris nisi ut aliquip ex ea commodo consequat. Duis aute irure "
    "dolor in reprehenderit in voluptate velit esse cillum dolore eu fugiat nulla pariatur. "
    "Excepteur sint occaecat cupidatat non proident, sunt in culpa qui officia deserunt "
    "mollit anim id est laborum. "
)


def post(port, path, body, timeout=300):
    req = urllib.request.Request(
        f"http://127.0.0.1:{port}{path}",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def calibrate(port):
    words = (LOREM * 8).split(" ")
    lo, hi = 1, len(words)
    found = None
    while lo <= hi:
        mid = (lo + hi) // 2
        text = " ".join(words[:mid])
        status, body = post(port, "/v1/completions", {"prompt": text, "max_tokens": 1})
        m = re.search(r"the prompt has (\d+) tokens", json.dumps(body))
        n = int(m.group(1)) if m else 0
        if status == 200:
            lo = mid + 1
            continue
        assert body["error"]["code"] == "context_length_exceeded", body
        assert "exceeds the available context size" in body["error"]["message"], body
        if n == 301:
            found = text
            break
        if n > 301:
            hi = mid - 1
        else:
            lo = mid + 1
    assert found, "no 301-token prompt found"
    with open("out/ctx-prompt.txt", "w") as f:
        f.write(found)
    print("calibrate: 301-token prompt refused with context_length_exceeded without --context-shift")


def shift(port):
    text = open("out/ctx-prompt.txt").read()
    t0 = time.time()
    status, body = post(port, "/v1/completions", {"prompt": text, "max_tokens": 96, "seed": 1})
    dt = time.time() - t0
    assert status == 200, body
    u = body["usage"]
    assert u["completion_tokens"] == 96, u
    assert u["prompt_tokens"] == 173, u
    assert body["truncated"] is True and body["n_discarded"] >= 128, body
    assert dt < 120, f"took {dt:.1f} s"
    print(f"shift: 301-token prompt in a 256 context: prompt_n {u['prompt_tokens']}, "
          f"predicted_n {u['completion_tokens']}, n_discarded {body['n_discarded']}, {dt:.1f} s")


QUESTIONS = [
    "What is the capital of France?", "Name a fruit that is yellow.",
    "How many legs does a spider have?", "What color is the sky on a clear day?",
    "Give me a word that rhymes with cat.", "What is 3 plus 4?",
    "Which animal says moo?", "What do bees make?", "Name a planet.",
    "What is frozen water called?", "Say hello in Spanish.", "What do plants need to grow?",
]


def one_token_loop(text):
    words = text.split()
    return len(words) >= 8 and len(set(words)) == 1


def conversation(port, turns):
    system = "You are a helpful assistant. Answer in one short sentence."
    messages = [{"role": "system", "content": system}]
    truncated, t0, lengths = 0, time.time(), []
    for i in range(turns):
        messages.append({"role": "user", "content": QUESTIONS[i % len(QUESTIONS)]})
        status, body = post(port, "/v1/chat/completions",
                            {"messages": messages, "max_tokens": 24, "seed": i + 1})
        assert status == 200, (i, body)
        answer = body["choices"][0]["message"]["content"]
        assert answer.strip(), (i, body)
        assert not one_token_loop(answer), (i, answer)
        truncated += bool(body.get("truncated"))
        lengths.append(body["usage"]["completion_tokens"])
        messages.append({"role": "assistant", "content": answer})
    dt = time.time() - t0
    assert truncated > 0, "the conversation never outgrew the context"
    print(f"conversation: {turns} turns answered in {dt:.1f} s, {truncated} with older turns "
          f"dropped, answer tokens min {min(lengths)} median {sorted(lengths)[len(lengths)//2]} "
          f"max {max(lengths)}")


def answers(port, n):
    def dist(xs):
        xs = sorted(xs)
        return f"min {xs[0]} median {xs[len(xs)//2]} p90 {xs[int(len(xs)*0.9)]} max {xs[-1]}"
    chat_lens, t0 = [], time.time()
    for seed in range(1, n + 1):
        status, body = post(port, "/chat", {"prompt": "hi", "seed": seed})
        assert status == 200, body
        assert body["response"].strip(), (seed, body)
        chat_lens.append(len(body["response"]))
    comp, finishes = [], {}
    for seed in range(1, n + 1):
        status, body = post(port, "/v1/completions", {"prompt": "hi", "seed": seed})
        assert status == 200, body
        c = body["choices"][0]
        finishes[c["finish_reason"]] = finishes.get(c["finish_reason"], 0) + 1
        comp.append(body["usage"]["completion_tokens"])
        assert c["finish_reason"] != "length" or not one_token_loop(c["text"]), (seed, c)
    print(f"answers: {n} /chat 'hi': none empty, characters {dist(chat_lens)}")
    print(f"answers: {n} /v1/completions 'hi': tokens {dist(comp)}, finish {finishes}, "
          f"{time.time() - t0:.1f} s")


if __name__ == "__main__":
    phase, port = sys.argv[1], int(sys.argv[2])
    if phase == "calibrate":
        calibrate(port)
    elif phase == "shift":
        shift(port)
    elif phase == "conversation":
        conversation(port, int(sys.argv[3]))
    elif phase == "answers":
        answers(port, int(sys.argv[3]))
    else:
        sys.exit(f"unknown phase {phase}")
