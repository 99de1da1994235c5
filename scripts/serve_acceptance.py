#!/usr/bin/env python3
"""Acceptance test of `shatter serve` against the official `openai` Python client.

    scripts/bootstrap --serve-test          # .venv-serve with openai==1.109.1
    .venv-serve/bin/python scripts/serve_acceptance.py --shatter .build/debug/shatter --model models/smollm2-135m-instruct

Starts the server on a free loopback port (127.0.0.1 only) with an API key, runs the checks below, stops
the server, and ends with the line `N passed, N failed` (exit status 1 if any failed). Every request has a
timeout and the whole run is bounded by --deadline seconds.

Checks: models list; a chat completion; the streamed chat completion's deltas concatenate to the
non-streamed text at temperature 0; the same for /v1/completions; a stop string; 400 for a bad field, bad
JSON and a prompt longer than the context (the message names the context length); 401 for a missing and a
wrong key; 413 for an oversized body; 8 concurrent streamed requests that all finish with the text each
gets alone; /health shows they were decoded in one batch.
"""
import argparse
import concurrent.futures
import json
import os
import re
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

import openai

KEY = "sk-shatter-test"
results = []


def check(name, fn):
    t0 = time.time()
    try:
        detail = fn()
        results.append((name, True))
        print(f"PASS {name} ({time.time() - t0:.1f}s){': ' + detail if detail else ''}", flush=True)
    except Exception as e:  # noqa: BLE001 - report every failure and go on
        results.append((name, False))
        print(f"FAIL {name} ({time.time() - t0:.1f}s): {type(e).__name__}: {e}", flush=True)


def raw(base, path, body, headers=None):
    """POST bytes without the client (for bad JSON and missing keys); returns (status, parsed body)."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    req = urllib.request.Request(base + path, data=body, headers=headers or {}, method="POST")
    try:
        with opener.open(req, timeout=60) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def expect(cond, message):
    if not cond:
        raise AssertionError(message)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--shatter", required=True)
    ap.add_argument("--model", required=True)
    ap.add_argument("--max-tokens", type=int, default=24)
    ap.add_argument("--deadline", type=float, default=900)
    args = ap.parse_args()
    for var in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        os.environ.pop(var, None)
    os.environ["NO_PROXY"] = "127.0.0.1"

    server = subprocess.Popen([args.shatter, "serve", "--model", args.model, "--host", "127.0.0.1", "--port", "0",
                               "--api-key", KEY, "--max-batch", "8"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    # Stop the server however this script ends, and at the deadline at the latest.
    watchdog = threading.Timer(args.deadline, lambda: (print("deadline reached: stopping the server", flush=True), server.kill()))
    watchdog.daemon = True
    watchdog.start()
    log_lines = []
    port = None
    try:
        start = time.time()
        while port is None:
            line = server.stderr.readline()
            if not line:
                raise SystemExit(f"shatter serve exited before listening: {''.join(log_lines)}")
            log_lines.append(line)
            m = re.search(r"listening on http://127\.0\.0\.1:(\d+)", line)
            if m:
                port = int(m.group(1))
            if time.time() - start > 300:
                raise SystemExit("shatter serve did not start listening within 300 s")
        threading.Thread(target=lambda: [log_lines.append(l) for l in server.stderr], daemon=True).start()
        run_checks(f"http://127.0.0.1:{port}", args)
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
        watchdog.cancel()
    request_lines = [l for l in log_lines if re.match(r"^(GET|POST) /", l)]
    print(f"server logged {len(request_lines)} request lines, e.g. {request_lines[:1]}")
    passed = sum(ok for _, ok in results)
    failed = len(results) - passed
    print(f"{passed} passed, {failed} failed")
    sys.exit(1 if failed else 0)


def run_checks(base, args):
    client = openai.OpenAI(base_url=base + "/v1", api_key=KEY, max_retries=0, timeout=300)
    n = args.max_tokens
    model_id = {}

    def models():
        ids = [m.id for m in client.models.list().data]
        expect(len(ids) == 1, f"expected one model, got {ids}")
        model_id["id"] = ids[0]
        return f"models {ids}"
    check("GET /v1/models lists the model", models)
    mid = model_id.get("id", "model")
    question = [{"role": "user", "content": "What is 2+2?"}]
    ref = {}

    def chat():
        r = client.chat.completions.create(model=mid, messages=question, temperature=0, max_tokens=n)
        c = r.choices[0]
        expect(r.object == "chat.completion" and c.message.role == "assistant", f"shape: {r}")
        expect(isinstance(c.message.content, str) and c.message.content, f"empty reply: {r}")
        expect(c.finish_reason in ("stop", "length"), f"finish_reason {c.finish_reason}")
        expect(r.usage.prompt_tokens > 0 and r.usage.completion_tokens > 0
               and r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens, f"usage {r.usage}")
        ref["chat"] = (c.message.content, c.finish_reason)
        return f"{c.message.content!r} ({c.finish_reason}, usage {r.usage.prompt_tokens}+{r.usage.completion_tokens})"
    check("POST /v1/chat/completions", chat)

    def chat_stream():
        stream = client.chat.completions.create(model=mid, messages=question, temperature=0, max_tokens=n, stream=True,
                                                stream_options={"include_usage": True})
        text, finish, usage, objects = "", None, None, set()
        for chunk in stream:
            objects.add(chunk.object)
            if chunk.usage:
                usage = chunk.usage
            for c in chunk.choices:
                text += c.delta.content or ""
                finish = c.finish_reason or finish
        expect(objects == {"chat.completion.chunk"}, f"objects {objects}")
        expect((text, finish) == ref["chat"], f"streamed {(text, finish)!r} != non-streamed {ref['chat']!r}")
        expect(usage is not None and usage.completion_tokens > 0, "no usage chunk")
        return f"{text!r}"
    check("streamed chat deltas equal the non-streamed text (temperature 0)", chat_stream)

    def completions():
        prompt = "The capital of France is"
        r = client.completions.create(model=mid, prompt=prompt, temperature=0, max_tokens=n)
        text = r.choices[0].text
        streamed = "".join(c.choices[0].text for c in client.completions.create(
            model=mid, prompt=prompt, temperature=0, max_tokens=n, stream=True) if c.choices)
        expect(text == streamed, f"{text!r} != streamed {streamed!r}")
        expect(r.usage.completion_tokens > 0, f"usage {r.usage}")
        return f"{prompt!r} → {text!r}"
    check("POST /v1/completions, streamed and not", completions)

    def stop_string():
        full, _ = ref["chat"]
        cut = full.strip()[len(full.strip()) // 2:][:3] or full[:1]
        r = client.chat.completions.create(model=mid, messages=question, temperature=0, max_tokens=n, stop=[cut])
        c = r.choices[0]
        expect(c.finish_reason == "stop" and cut not in c.message.content and full.startswith(c.message.content),
               f"stop {cut!r}: {c.message.content!r} ({c.finish_reason}) vs {full!r}")
        return f"stop {cut!r} → {c.message.content!r}"
    check("stop string ends the reply with finish_reason stop", stop_string)

    def bad_field():
        try:
            client.chat.completions.create(model=mid, messages=question, temperature=5)
        except openai.BadRequestError as e:
            err = e.body if isinstance(e.body, dict) else {}
            expect(e.status_code == 400 and err.get("param") == "temperature" and err.get("type") == "invalid_request_error",
                   f"body {e.body}")
            return err.get("message")
        raise AssertionError("no error")
    check("400 for a bad field (OpenAI error object)", bad_field)

    def bad_json():
        status, body = raw(base, "/v1/chat/completions", b"{not json", {"Authorization": f"Bearer {KEY}",
                                                                          "Content-Type": "application/json"})
        expect(status == 400 and set(body["error"]) == {"message", "type", "param", "code"}, f"{status} {body}")
        return body["error"]["message"]
    check("400 for bad JSON", bad_json)

    def too_long():
        try:
            client.chat.completions.create(model=mid, messages=[{"role": "user", "content": "hello " * 9000}], max_tokens=4)
        except openai.BadRequestError as e:
            msg = str(e)
            expect("maximum context length is" in msg, msg)
            return re.search(r"maximum context length is \d+ tokens", msg).group(0)
        raise AssertionError("no error")
    check("400 for a prompt longer than the context, naming the context length", too_long)

    def wrong_key():
        bad = openai.OpenAI(base_url=base + "/v1", api_key="wrong", max_retries=0, timeout=60)
        try:
            bad.models.list()
        except openai.AuthenticationError as e:
            expect(e.status_code == 401, str(e))
        else:
            raise AssertionError("no error")
        status, body = raw(base, "/v1/chat/completions", json.dumps({"messages": question}).encode(),
                           {"Content-Type": "application/json"})
        expect(status == 401 and "error" in body, f"{status} {body}")
        return "wrong key and missing key"
    check("401 for a wrong or missing Bearer key", wrong_key)

    def too_large():
        try:
            client.chat.completions.create(model=mid, messages=[{"role": "user", "content": "a" * 2_000_000}], max_tokens=4)
        except openai.APIStatusError as e:
            expect(e.status_code == 413, f"status {e.status_code}")
            return str(e.body)[:120]
        raise AssertionError("no error")
    check("413 for an oversized body", too_large)

    prompts = [f"Count from {i} to {i + 5}." if i % 2 else f"Name a fruit that starts with the letter {'ABCDEFGH'[i]}."
               for i in range(8)]

    def eight_streams():
        alone = {}
        for p in prompts:
            r = client.chat.completions.create(model=mid, messages=[{"role": "user", "content": p}], temperature=0, max_tokens=n)
            alone[p] = (r.choices[0].message.content, r.choices[0].finish_reason)

        def one(p):
            text, finish, chunks = "", None, 0
            for chunk in client.chat.completions.create(model=mid, messages=[{"role": "user", "content": p}], temperature=0,
                                                        max_tokens=n, stream=True):
                chunks += 1
                for c in chunk.choices:
                    text += c.delta.content or ""
                    finish = c.finish_reason or finish
            return p, text, finish, chunks
        t0 = time.time()
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            got = list(pool.map(one, prompts))
        wall = time.time() - t0
        for p, text, finish, chunks in got:
            expect(finish in ("stop", "length") and chunks >= 2, f"{p!r}: finish {finish}, {chunks} chunks")
            expect((text, finish) == alone[p], f"{p!r}: concurrent {(text, finish)!r} != alone {alone[p]!r}")
        with urllib.request.build_opener(urllib.request.ProxyHandler({})).open(base + "/health", timeout=30) as r:
            health = json.loads(r.read())
        expect(health["largest_batch"] > 1, f"requests were not batched: {health}")
        return f"8 streams in {wall:.1f}s, largest batch {health['largest_batch']}, joined running {health['joined_running']}"
    check("8 concurrent streamed requests complete with their own text (batched)", eight_streams)


if __name__ == "__main__":
    main()
