"""Drives a running `mote serve` (tiny model) with the OpenAI Python client.

Usage: openai_client_test.py PORT API_KEY. Prints one line per check and a closing
'N passed, N failed' line; exits 1 if any check failed.
"""

import sys
import traceback

import openai
from openai import OpenAI

port, key = sys.argv[1], sys.argv[2]
base = f"http://127.0.0.1:{port}/v1"
client = OpenAI(base_url=base, api_key=key, max_retries=0, timeout=60)
checks = []


def check(fn):
    checks.append(fn)
    return fn


@check
def models_list():
    models = client.models.list()
    ids = [m.id for m in models.data]
    assert ids == ["tiny"], ids


@check
def chat_non_streaming():
    r = client.chat.completions.create(
        model="tiny",
        messages=[{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hello!"}],
        max_tokens=12,
        temperature=0.7,
        seed=42,
        stop=["\n\n"],
    )
    assert r.object == "chat.completion"
    c = r.choices[0]
    assert c.message.role == "assistant" and isinstance(c.message.content, str)
    assert c.finish_reason in ("stop", "length"), c.finish_reason
    assert r.usage.prompt_tokens > 0 and 0 <= r.usage.completion_tokens <= 12
    assert r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens


@check
def chat_streaming_with_usage():
    stream = client.chat.completions.create(
        model="tiny",
        messages=[{"role": "user", "content": "Count to ten."}],
        max_completion_tokens=10,
        stream=True,
        stream_options={"include_usage": True},
        presence_penalty=0.5,
        frequency_penalty=0.5,
    )
    text, finish, usage = "", None, None
    for chunk in stream:
        if chunk.usage is not None:
            usage = chunk.usage
        for choice in chunk.choices:
            text += choice.delta.content or ""
            finish = choice.finish_reason or finish
    assert finish in ("stop", "length"), finish
    assert usage is not None and usage.completion_tokens <= 10, usage


@check
def completions_both_ways():
    r = client.completions.create(model="tiny", prompt="Once upon a time", max_tokens=8)
    assert r.object == "text_completion" and isinstance(r.choices[0].text, str)
    assert r.usage.completion_tokens <= 8
    pieces = list(client.completions.create(model="tiny", prompt="Once", max_tokens=5, stream=True))
    assert pieces and pieces[-1].choices[0].finish_reason in ("stop", "length")


@check
def seed_reproduces():
    kw = dict(model="tiny", messages=[{"role": "user", "content": "Hi"}], max_tokens=8, seed=7, temperature=1.0)
    a = client.chat.completions.create(**kw).choices[0].message.content
    b = client.chat.completions.create(**kw).choices[0].message.content
    assert a == b, (a, b)


@check
def errors_are_typed():
    try:
        client.chat.completions.create(model="no-such-model", messages=[{"role": "user", "content": "x"}])
        raise AssertionError("unknown model accepted")
    except openai.NotFoundError as e:
        assert e.code == "model_not_found", e.body
    try:
        client.chat.completions.create(model="tiny", messages=[])
        raise AssertionError("empty messages accepted")
    except openai.BadRequestError as e:
        assert e.param == "messages", e.body
    try:
        client.completions.create(model="tiny", prompt="word " * 1000)
        raise AssertionError("over-long prompt accepted")
    except openai.BadRequestError as e:
        assert e.code == "context_length_exceeded", e.body
    bad = OpenAI(base_url=base, api_key="wrong", max_retries=0)
    try:
        bad.models.list()
        raise AssertionError("wrong key accepted")
    except openai.AuthenticationError:
        pass
    # After all that the server still answers.
    chat_non_streaming()


passed = failed = 0
for fn in checks:
    try:
        fn()
        passed += 1
        print(f"ok   {fn.__name__}")
    except Exception:
        failed += 1
        print(f"FAIL {fn.__name__}")
        traceback.print_exc()
print(f"openai-client: {passed} passed, {failed} failed")
sys.exit(1 if failed else 0)
