#!/usr/bin/env python3
"""`shatter serve` under load: a bounded loop of concurrent clients on 127.0.0.1, with adversarial clients
beside them. Python's standard library only (raw HTTP/1.1 over asyncio sockets); run by `make load-test`
and by `make bench` (bench/run.py's "server under load" section).

    /usr/bin/python3 bench/load.py --shatter .build/release/shatter --model models/smollm2-135m-instruct

Starts the server on a free loopback port, waits for /health, then for --duration seconds runs --clients
clients, half of them streaming (SSE), each looping requests with max_tokens in --max-tokens to
/v1/chat/completions and /v1/completions in turn, over one keep-alive connection each. A request fails on a
non-200 status, a malformed or truncated body or stream (bad JSON, no finish reason, no usage, no
`data: [DONE]`, anything after it), or no answer within --request-timeout seconds; every request sent is
either completed or failed, so none is lost silently.

Beside them, for the same duration:
  disconnect   opens a stream asking for 200 tokens, reads two pieces and drops the connection, again and
               again; the server must cancel each job (/health's `cancelled` counts them);
  slow body    sends headers and part of a body, then trickles one byte a second (or stalls); the server
               must answer 408 or close the connection within --body-timeout (+ slack);
  slow headers sends a request line and trickles header bytes; the server must close the connection
               within --idle-timeout (+ slack);
  oversized    a body one byte over --max-body, and one that only declares 100 MiB: 413 with an error object;
  malformed    bad JSON, invalid UTF-8, wrong types and missing fields: 400 with an OpenAI error object, and
               the connection still answers /health after it.
After the load: running and queued must drop to 0; then, on the idle server, one stream asking for 400 tokens
is dropped after three pieces, and the decode steps the engine runs after that must be a handful (it stops
decoding the dropped row), not hundreds.

Prints a table and writes JSON (--json, default out/bench/load.json); exits 1 if any normal request failed
or any check failed."""
import argparse
import asyncio
import json
import os
import random
import re
import statistics
import subprocess
import sys
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HOST = "127.0.0.1"  # loopback only: the load never leaves this machine

CHAT_PROMPTS = ["What is the capital of France?", "Write a haiku about the sea.", "List three prime numbers.",
                "How do I boil an egg?", "Translate 'good morning' to Spanish.", "Explain gravity to a child.",
                "Name a colour of the rainbow.", "What is two plus two?"]
COMPLETION_PROMPTS = ["The capital of France is", "Once upon a time, in a small village,", "The best way to learn to program is",
                      "A list of fruits: apple, banana,", "def fibonacci(n):", "The sun rises in the"]
LONG_PROMPT = "Count from one to one thousand: one, two, three, four,"


class Failure(Exception):
    pass


# MARK: - A small HTTP/1.1 client


class Connection:
    """One keep-alive connection; `request` sends one request and reads its whole answer."""

    def __init__(self, port):
        self.port = port
        self.reader = None
        self.writer = None

    async def open(self):
        self.reader, self.writer = await asyncio.open_connection(HOST, self.port)

    def close(self, abort=False):
        if self.writer is not None:
            if abort:
                self.writer.transport.abort()  # RST: the client vanished
            else:
                self.writer.close()
        self.reader = self.writer = None

    async def send(self, method, path, body=b"", headers=None, content_length=None):
        if self.writer is None:
            await self.open()
        lines = [f"{method} {path} HTTP/1.1", f"Host: {HOST}:{self.port}"]
        if method == "POST":
            lines += ["Content-Type: application/json", f"Content-Length: {len(body) if content_length is None else content_length}"]
        lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
        self.writer.write(("\r\n".join(lines) + "\r\n\r\n").encode() + body)
        await self.writer.drain()

    async def head(self):
        """Status and headers (lower-cased names)."""
        line = await self.reader.readline()
        if not line:
            raise Failure("connection closed before a status line")
        m = re.match(rb"HTTP/1\.1 (\d{3})", line)
        if not m:
            raise Failure(f"bad status line {line[:80]!r}")
        headers = {}
        while True:
            h = await self.reader.readline()
            if not h:
                raise Failure("connection closed inside the headers")
            if h in (b"\r\n", b"\n"):
                break
            k, _, v = h.decode("latin-1").partition(":")
            headers[k.strip().lower()] = v.strip()
        return int(m.group(1)), headers

    async def body_pieces(self, headers):
        """Yields the body as it arrives: chunks of a chunked body, or the Content-Length bytes at once."""
        if headers.get("transfer-encoding", "").lower() == "chunked":
            while True:
                size_line = await self.reader.readline()
                if not size_line.endswith(b"\n"):
                    raise Failure("stream truncated inside a chunk header")
                size = int(size_line.split(b";")[0].strip() or b"x", 16)
                if size == 0:
                    trailer = await self.reader.readline()
                    if trailer not in (b"\r\n", b"\n"):
                        raise Failure(f"bad chunked trailer {trailer!r}")
                    return
                data = await self.reader.readexactly(size + 2)
                yield data[:-2]
        elif "content-length" in headers:
            yield await self.reader.readexactly(int(headers["content-length"]))
        else:
            yield await self.reader.read()  # until the server closes
            self.close()

    async def request(self, method, path, obj=None, raw=None):
        body = raw if raw is not None else (json.dumps(obj).encode() if obj is not None else b"")
        await self.send(method, path, body)
        status, headers = await self.head()
        data = b"".join([p async for p in self.body_pieces(headers)])
        if headers.get("connection", "").lower() == "close":
            self.close()
        return status, headers, data


class SSEReader:
    """Splits a byte stream into SSE `data:` payloads."""

    def __init__(self):
        self.buffer = b""

    def feed(self, data):
        self.buffer += data
        out = []
        while b"\n\n" in self.buffer:
            event, self.buffer = self.buffer.split(b"\n\n", 1)
            lines = [l[5:].lstrip(b" ") for l in event.split(b"\n") if l.startswith(b"data:")]
            if lines:
                out.append(b"\n".join(lines).decode())
        return out


# MARK: - Normal clients


def validate_nonstream(kind, status, headers, data, max_tokens):
    if status != 200:
        raise Failure(f"status {status}: {data[:200]!r}")
    try:
        o = json.loads(data)
    except ValueError:
        raise Failure(f"malformed JSON body {data[:120]!r}")
    choice = (o.get("choices") or [{}])[0]
    if kind == "chat":
        if o.get("object") != "chat.completion" or not isinstance(choice.get("message", {}).get("content"), str):
            raise Failure(f"not a chat.completion: {data[:200]!r}")
    elif o.get("object") != "text_completion" or not isinstance(choice.get("text"), str):
        raise Failure(f"not a text_completion: {data[:200]!r}")
    if choice.get("finish_reason") not in ("stop", "length"):
        raise Failure(f"finish_reason {choice.get('finish_reason')!r}")
    tokens = (o.get("usage") or {}).get("completion_tokens")
    if not isinstance(tokens, int) or not 1 <= tokens <= max_tokens:
        raise Failure(f"usage.completion_tokens {tokens!r} (max_tokens {max_tokens})")
    return tokens


async def run_stream(conn, kind, path, payload, t0):
    """Sends a streamed request and checks the whole stream; returns (completion tokens, TTFT seconds)."""
    await conn.send("POST", path, json.dumps(payload).encode())
    status, headers = await conn.head()
    if status != 200:
        data = b"".join([p async for p in conn.body_pieces(headers)])
        raise Failure(f"status {status}: {data[:200]!r}")
    if not headers.get("content-type", "").startswith("text/event-stream"):
        raise Failure(f"content-type {headers.get('content-type')!r}")
    sse, ttft, finishes, usage, done, pieces = SSEReader(), None, 0, None, False, 0
    async for chunk in conn.body_pieces(headers):
        for payload_text in sse.feed(chunk):
            if done:
                raise Failure("data after [DONE]")
            if payload_text == "[DONE]":
                done = True
                continue
            try:
                o = json.loads(payload_text)
            except ValueError:
                raise Failure(f"malformed event {payload_text[:120]!r}")
            want = "chat.completion.chunk" if kind == "chat" else "text_completion"
            if o.get("object") != want:
                raise Failure(f"event object {o.get('object')!r}")
            if o.get("usage"):
                usage = o["usage"]
            for c in o.get("choices") or []:
                text = c.get("delta", {}).get("content") if kind == "chat" else c.get("text")
                if text:
                    pieces += 1
                    if ttft is None:
                        ttft = time.monotonic() - t0
                if c.get("finish_reason") is not None:
                    if c["finish_reason"] not in ("stop", "length"):
                        raise Failure(f"finish_reason {c['finish_reason']!r}")
                    finishes += 1
    if sse.buffer.strip():
        raise Failure(f"stream ended inside an event {sse.buffer[:80]!r}")
    if not done:
        raise Failure("stream ended without data: [DONE]")
    if finishes != 1:
        raise Failure(f"{finishes} finish reasons")
    tokens = (usage or {}).get("completion_tokens")
    if not isinstance(tokens, int) or not 1 <= tokens <= payload["max_tokens"] or pieces > tokens:
        raise Failure(f"usage {usage!r} for {pieces} pieces (max_tokens {payload['max_tokens']})")
    return tokens, ttft


async def normal_client(i, port, args, deadline, records):
    rng = random.Random(1000 + i)
    streaming = i % 2 == 0
    conn = Connection(port)
    n = 0
    while time.monotonic() < deadline:
        kind = "chat" if (n + i // 2) % 2 == 0 else "completion"
        n += 1
        max_tokens = rng.randint(*args.max_tokens)
        payload = {"model": "m", "max_tokens": max_tokens, "temperature": rng.choice([0, 0.7]), "seed": rng.randint(0, 9999)}
        if kind == "chat":
            path = "/v1/chat/completions"
            payload["messages"] = [{"role": "user", "content": rng.choice(CHAT_PROMPTS)}]
        else:
            path = "/v1/completions"
            payload["prompt"] = rng.choice(COMPLETION_PROMPTS)
        if streaming:
            payload["stream"] = True
            payload["stream_options"] = {"include_usage": True}
        label = kind + (" stream" if streaming else "")
        rec = {"kind": label, "ok": False}
        records.append(rec)  # counted as sent now, so a request that never ends still shows
        t0 = time.monotonic()
        try:
            if streaming:
                tokens, ttft = await asyncio.wait_for(run_stream(conn, kind, path, payload, t0), args.request_timeout)
                rec["ttft"] = ttft
            else:
                status, headers, data = await asyncio.wait_for(conn.request("POST", path, payload), args.request_timeout)
                tokens = validate_nonstream(kind, status, headers, data, max_tokens)
            rec.update(ok=True, latency=time.monotonic() - t0, tokens=tokens, end=time.monotonic())
        except asyncio.TimeoutError:
            rec["error"] = f"no answer within {args.request_timeout} s"
            conn.close(abort=True)
        except (Failure, OSError, asyncio.IncompleteReadError, ValueError) as e:
            rec["error"] = f"{type(e).__name__}: {e}"
            conn.close(abort=True)
    conn.close()


# MARK: - Adversarial clients


class Checks:
    def __init__(self):
        self.rows = {}

    def add(self, name, ok, detail="", expected=""):
        r = self.rows.setdefault(name, {"attempts": 0, "passed": 0, "expected": expected, "failures": [], "details": []})
        r["attempts"] += 1
        r["passed"] += bool(ok)
        if not ok:
            r["failures"].append(detail)
        elif detail and len(r["details"]) < 3:
            r["details"].append(detail)


def error_object(data):
    try:
        o = json.loads(data)
    except ValueError:
        return None
    e = o.get("error") if isinstance(o, dict) else None
    if isinstance(e, dict) and isinstance(e.get("message"), str) and isinstance(e.get("type"), str) and "param" in e and "code" in e:
        return e
    return None


async def drop_mid_stream(port, payload, path, kind, pieces_before_drop, abort):
    """Opens a stream, reads `pieces_before_drop` text pieces and drops the connection; True if it got them."""
    conn = Connection(port)
    try:
        await conn.send("POST", path, json.dumps(payload).encode())
        status, headers = await conn.head()
        if status != 200:
            return False, f"status {status}"
        sse, pieces = SSEReader(), 0
        async for chunk in conn.body_pieces(headers):
            for p in sse.feed(chunk):
                if p == "[DONE]":
                    return False, "stream finished before the drop"
                o = json.loads(p)
                for c in o.get("choices") or []:
                    if (c.get("delta", {}).get("content") if kind == "chat" else c.get("text")):
                        pieces += 1
            if pieces >= pieces_before_drop:
                return True, ""
        return False, "stream ended early"
    finally:
        conn.close(abort=abort)


async def disconnector(port, deadline, checks, state):
    n = 0
    while time.monotonic() < deadline:
        kind = "completion" if n % 2 == 0 else "chat"
        payload = {"max_tokens": 200, "temperature": 0, "stream": True}
        if kind == "chat":
            payload["messages"] = [{"role": "user", "content": "Tell me a very long story about a dragon."}]
            path = "/v1/chat/completions"
        else:
            payload["prompt"] = LONG_PROMPT
            path = "/v1/completions"
        try:
            ok, why = await asyncio.wait_for(drop_mid_stream(port, payload, path, kind, 2, abort=n % 2 == 1), 120)
        except (asyncio.TimeoutError, OSError, Failure, ValueError) as e:
            ok, why = False, f"{type(e).__name__}: {e}"
        checks.add("disconnect mid-stream", ok, why, "2 pieces read, then dropped; job cancelled")
        state["disconnects"] += ok
        n += 1
        await asyncio.sleep(1.0)


async def read_answer_or_close(conn, limit):
    """(status or None if the server closed the connection without one, seconds it took)."""
    t0 = time.monotonic()
    try:
        status, headers = await asyncio.wait_for(conn.head(), limit)
        return status, time.monotonic() - t0
    except Failure:
        return None, time.monotonic() - t0
    except (ConnectionResetError, BrokenPipeError):
        return None, time.monotonic() - t0


async def slow_body(port, deadline, checks, args, stall):
    name = "slow body, stalled" if stall else "slow body, 1 byte/s"
    limit = args.body_timeout + 5
    while time.monotonic() < deadline:
        conn = Connection(port)
        t0 = time.monotonic()
        body = json.dumps({"messages": [{"role": "user", "content": "x" * 100}], "max_tokens": 4}).encode()
        try:
            await conn.send("POST", "/v1/chat/completions", body[:20], content_length=len(body))

            async def trickle():
                for b in body[20:]:
                    await asyncio.sleep(1.0)
                    conn.writer.write(bytes([b]))
                    await conn.writer.drain()

            trickler = None if stall else asyncio.ensure_future(trickle())
            status, _ = await read_answer_or_close(conn, limit)
            if trickler:
                trickler.cancel()
            elapsed = time.monotonic() - t0
            ok = status in (408, None) and elapsed <= limit
            checks.add(name, ok, f"{status or 'closed'} after {elapsed:.1f} s", f"408 or closed within {args.body_timeout:g} s")
        except asyncio.TimeoutError:
            checks.add(name, False, f"still open after {limit:g} s")
        except (OSError, Failure) as e:
            elapsed = time.monotonic() - t0
            checks.add(name, elapsed <= limit, f"{type(e).__name__} after {elapsed:.1f} s")
        finally:
            conn.close(abort=True)
        await asyncio.sleep(0.5)


async def slow_headers(port, deadline, checks, args):
    limit = args.idle_timeout + 5
    while time.monotonic() < deadline:
        t0 = time.monotonic()
        reader, writer = await asyncio.open_connection(HOST, port)
        writer.write(b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        await writer.drain()
        closed = False
        try:
            for i in range(int(limit) + 1):
                writer.write(b"X-Slow-%d: y\r\n" % i)
                await writer.drain()
                try:
                    data = await asyncio.wait_for(reader.read(1024), 1.0)
                    if data == b"":
                        closed = True
                        break
                except asyncio.TimeoutError:
                    pass
        except (ConnectionResetError, BrokenPipeError):
            closed = True
        elapsed = time.monotonic() - t0
        writer.transport.abort()
        checks.add("slow headers", closed and elapsed <= limit, f"{'closed' if closed else 'open'} after {elapsed:.1f} s",
                   f"closed within {args.idle_timeout:g} s")
        await asyncio.sleep(0.5)


MALFORMED = [
    ("/v1/chat/completions", b"{not json", "body"),
    ("/v1/chat/completions", b"[1, 2]", "body"),
    ("/v1/chat/completions", b"", "body"),
    ("/v1/chat/completions", b'{"messages": [{"role": "user", "content": "\xff\xfe"}]}', None),
    ("/v1/chat/completions", b'{"messages": "hi"}', "messages"),
    ("/v1/chat/completions", b'{"messages": [{"role": "user", "content": "hi"}], "max_tokens": "ten"}', "max_tokens"),
    ("/v1/chat/completions", b'{"messages": [{"role": "user", "content": "hi"}], "temperature": "hot"}', "temperature"),
    ("/v1/chat/completions", b'{"messages": [{"role": "user", "content": "hi"}], "stream": "yes"}', "stream"),
    ("/v1/completions", b'{"prompt": true}', "prompt"),
    ("/v1/completions", b'{"max_tokens": 4}', "prompt"),
    ("/v1/completions", b'{"prompt": "hi", "max_tokens": -1}', "max_tokens"),
]


async def malformed(port, deadline, checks):
    i = 0
    while time.monotonic() < deadline:
        path, raw, param = MALFORMED[i % len(MALFORMED)]
        i += 1
        conn = Connection(port)
        try:
            status, _, data = await asyncio.wait_for(conn.request("POST", path, raw=raw), 30)
            e = error_object(data)
            ok = status == 400 and e is not None and (param is None or e.get("param") == param)
            # The connection is still good for the next request.
            h_status, _, _ = await asyncio.wait_for(conn.request("GET", "/health"), 30)
            ok = ok and h_status == 200
            checks.add("malformed JSON / wrong types", ok, f"{raw[:40]!r}: {status} param={e and e.get('param')!r}, then /health {h_status}",
                       "400 + error object; connection reusable")
        except (asyncio.TimeoutError, OSError, Failure) as e:
            checks.add("malformed JSON / wrong types", False, f"{raw[:40]!r}: {type(e).__name__}: {e}")
        finally:
            conn.close()
        await asyncio.sleep(0.3)


async def oversized(port, deadline, checks, args):
    i = 0
    while time.monotonic() < deadline:
        conn = Connection(port)
        try:
            if i % 2 == 0:
                head, tail = b'{"prompt": "', b'"}'
                body = head + b"a" * (args.max_body + 1 - len(head) - len(tail)) + tail
                assert len(body) == args.max_body + 1
                status, _, data = await asyncio.wait_for(conn.request("POST", "/v1/completions", raw=body), 60)
                what = f"{len(body)} bytes sent"
            else:
                await conn.send("POST", "/v1/completions", b"{", content_length=100 << 20)
                status, headers = await asyncio.wait_for(conn.head(), 30)
                data = b"".join([p async for p in conn.body_pieces(headers)])
                what = "100 MiB declared"
            e = error_object(data)
            checks.add("oversized body", status == 413 and e is not None and e.get("code") == "request_too_large",
                       f"{what}: {status}", f"413 + error object (--max-body {args.max_body})")
        except (asyncio.TimeoutError, OSError, Failure) as e:
            checks.add("oversized body", False, f"{type(e).__name__}: {e}")
        finally:
            conn.close(abort=True)
        i += 1
        await asyncio.sleep(2.0)


# MARK: - Server


class Server:
    def __init__(self, args):
        cmd = [args.shatter, "serve", "--model", args.model, "--host", HOST, "--port", "0", "--max-batch", str(args.max_batch),
               "--max-body", str(args.max_body), "--body-timeout", str(args.body_timeout), "--idle-timeout", str(args.idle_timeout)]
        os.makedirs(os.path.dirname(args.log) or ".", exist_ok=True)
        self.log = open(args.log, "w")
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, cwd=ROOT)
        self.port = None
        self.ready = threading.Event()
        self.statuses = {}
        threading.Thread(target=self._drain, daemon=True).start()

    def _drain(self):
        for line in self.proc.stderr:
            self.log.write(line)
            m = re.search(r"listening on http://[^:]+:(\d+)", line)
            if m:
                self.port = int(m.group(1))
                self.ready.set()
            m = re.match(r"(GET|POST) (\S+) (\d+) ", line)
            if m:
                self.statuses[m.group(3)] = self.statuses.get(m.group(3), 0) + 1
        self.ready.set()

    def status(self, field):
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) / 1024  # kB → MiB
        return float("nan")

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()


async def health(port):
    conn = Connection(port)
    try:
        status, _, data = await asyncio.wait_for(conn.request("GET", "/health"), 10)
        if status != 200:
            raise Failure(f"/health {status}")
        return json.loads(data)
    finally:
        conn.close()


async def wait_idle(port, limit):
    t0 = time.monotonic()
    while True:
        h = await health(port)
        if h.get("running") == 0 and h.get("queued") == 0:
            return h, time.monotonic() - t0
        if time.monotonic() - t0 > limit:
            return h, None
        await asyncio.sleep(0.1)


async def load(server, args):
    port = server.port
    before = await health(port)
    records, checks, state = [], Checks(), {"disconnects": 0}
    rss_peak = [server.status("VmRSS")]

    async def sample_rss():
        while True:
            rss_peak[0] = max(rss_peak[0], server.status("VmRSS"))
            await asyncio.sleep(1.0)

    start = time.monotonic()
    deadline = start + args.duration
    sampler = asyncio.ensure_future(sample_rss())
    tasks = [normal_client(i, port, args, deadline, records) for i in range(args.clients)]
    if not args.no_adversaries:
        tasks += [disconnector(port, deadline, checks, state), slow_body(port, deadline, checks, args, stall=False),
                  slow_body(port, deadline, checks, args, stall=True), slow_headers(port, deadline, checks, args),
                  oversized(port, deadline, checks, args), malformed(port, deadline, checks)]
    await asyncio.gather(*tasks)
    finished = time.monotonic()
    sampler.cancel()

    # The server drains: every row and queued job gone once the clients stop.
    after, drain_s = await wait_idle(port, 30)
    checks.add("drained after load", drain_s is not None,
               f"running {after.get('running')} queued {after.get('queued')} after {drain_s if drain_s is None else round(drain_s, 2)} s",
               "running = queued = 0")
    cancelled = after.get("cancelled", 0) - before.get("cancelled", 0)
    if not args.no_adversaries:
        checks.add("disconnects cancelled", cancelled >= state["disconnects"],
                   f"{cancelled} jobs cancelled for {state['disconnects']} dropped streams", "cancelled ≥ dropped streams")

    # On the idle server: a dropped stream stops costing decode steps at once.
    b = await health(port)
    ok, why = await drop_mid_stream(port, {"prompt": LONG_PROMPT, "max_tokens": 400, "temperature": 0, "stream": True},
                                    "/v1/completions", "completion", 3, abort=True)
    a, idle_s = await wait_idle(port, 10)
    steps = a["decode_steps"] - b["decode_steps"]
    checks.add("dropped stream stops decoding", ok and idle_s is not None and steps < 40 and a["cancelled"] == b["cancelled"] + 1,
               f"{steps} decode steps in all for a 400-token request dropped after 3 pieces; row gone after "
               f"{idle_s if idle_s is None else round(idle_s, 2)} s {why}", "< 40 steps of 400, cancelled +1")
    return records, checks, {"start": start, "finished": finished, "rss_peak_sampled": rss_peak[0], "health_before": before,
                             "health_after": a, "cancelled_during_load": cancelled, "disconnects": state["disconnects"]}


def pct(xs, q):
    if not xs:
        return float("nan")
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(q / 100 * (len(xs) - 1))))]


def summarise(records, span):
    kinds = ["chat", "chat stream", "completion", "completion stream"]
    rows = []
    for kind in kinds + ["all"]:
        rs = [r for r in records if kind == "all" or r["kind"] == kind]
        ok = [r for r in rs if r["ok"]]
        lat = [r["latency"] for r in ok]
        ttft = [r["ttft"] for r in ok if r.get("ttft") is not None]
        tokens = sum(r["tokens"] for r in ok)
        rows.append({"kind": kind, "sent": len(rs), "completed": len(ok), "failed": sum(1 for r in rs if "error" in r),
                     "lost": sum(1 for r in rs if not r["ok"] and "error" not in r),
                     "p50_s": pct(lat, 50), "p99_s": pct(lat, 99), "ttft_p50_s": pct(ttft, 50), "ttft_p99_s": pct(ttft, 99),
                     "completion_tokens": tokens, "tokens_per_s": tokens / span})
    return rows


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--shatter", default=os.path.join(ROOT, ".build/release/shatter"))
    ap.add_argument("--model", default=os.path.join(ROOT, "models/smollm2-135m-instruct"))
    ap.add_argument("--clients", type=int, default=32)
    ap.add_argument("--duration", type=float, default=60)
    ap.add_argument("--max-tokens", type=int, nargs=2, default=[16, 32], metavar=("LO", "HI"))
    ap.add_argument("--max-batch", type=int, default=8)
    ap.add_argument("--max-body", type=int, default=1 << 20)
    ap.add_argument("--body-timeout", type=float, default=15)
    ap.add_argument("--idle-timeout", type=float, default=30)
    ap.add_argument("--request-timeout", type=float, default=120)
    ap.add_argument("--no-adversaries", action="store_true")
    ap.add_argument("--json", default=os.path.join(ROOT, "out/bench/load.json"))
    ap.add_argument("--log", default=os.path.join(ROOT, "out/bench/load-server.log"))
    args = ap.parse_args()
    if not os.path.exists(os.path.join(args.model, "config.json")):
        print(f"load: {args.model} is missing (run `make model`)", file=sys.stderr)
        return 2

    server = Server(args)
    try:
        if not server.ready.wait(300) or server.port is None:
            print(f"load: the server did not start (see {args.log})", file=sys.stderr)
            return 2
        rss_loaded = server.status("VmRSS")
        records, checks, facts = asyncio.run(load(server, args))
        hwm = server.status("VmHWM")
    finally:
        server.stop()

    span = facts["finished"] - facts["start"]
    rows = summarise(records, span)
    ok_all = rows[-1]["failed"] == 0 and rows[-1]["lost"] == 0 and rows[-1]["sent"] > 0
    checks_ok = all(r["passed"] == r["attempts"] for r in checks.rows.values())

    mt = f"{args.max_tokens[0]}–{args.max_tokens[1]}"
    print(f"Server under load: {args.clients} clients for {args.duration:g} s on {HOST} (half streamed), max_tokens {mt}, "
          f"--max-batch {args.max_batch}, {os.path.basename(os.path.normpath(args.model))}, {os.cpu_count()} cores; "
          f"{span:.1f} s until the last answer")
    print(f"{'requests':18} {'sent':>6} {'done':>6} {'failed':>6} {'p50 s':>7} {'p99 s':>7} {'TTFT p50/p99 s':>15} {'tokens/s':>9}")
    for r in rows:
        ttft = f"{r['ttft_p50_s']:.2f} / {r['ttft_p99_s']:.2f}" if r["ttft_p50_s"] == r["ttft_p50_s"] else "–"
        print(f"{r['kind']:18} {r['sent']:6d} {r['completed']:6d} {r['failed'] + r['lost']:6d} {r['p50_s']:7.2f} {r['p99_s']:7.2f} "
              f"{ttft:>15} {r['tokens_per_s']:9.1f}")
    print(f"server peak RSS (VmHWM) {hwm:.0f} MiB; {rss_loaded:.0f} MiB once the model was loaded; largest batch "
          f"{facts['health_after'].get('largest_batch')}, {facts['health_after'].get('cancelled')} jobs cancelled")
    print(f"{'adversarial check':30} {'tries':>6} {'passed':>7}  expected / seen")
    for name, r in checks.rows.items():
        seen = (r["failures"] or r["details"] or [""])[0]
        print(f"{name:30} {r['attempts']:6d} {r['passed']:7d}  {r['expected']}; {seen}")
    failures = [r for r in records if "error" in r]
    for r in failures[:10]:
        print(f"FAILED {r['kind']}: {r['error']}")
    for name, r in checks.rows.items():
        for f in r["failures"][:3]:
            print(f"CHECK FAILED {name}: {f}")
    verdict = "PASS" if ok_all and checks_ok else "FAIL"
    print(f"load test: {verdict} ({rows[-1]['failed'] + rows[-1]['lost']} of {rows[-1]['sent']} requests failed or lost, "
          f"{sum(r['attempts'] - r['passed'] for r in checks.rows.values())} check(s) failed)")

    os.makedirs(os.path.dirname(args.json) or ".", exist_ok=True)
    with open(args.json, "w") as f:
        json.dump({"config": {k: v for k, v in vars(args).items()}, "span_s": span, "rows": rows, "peak_rss_mib": hwm,
                   "rss_after_load_mib": rss_loaded, "rss_peak_sampled_mib": facts["rss_peak_sampled"],
                   "checks": checks.rows, "health_before": facts["health_before"], "health_after": facts["health_after"],
                   "server_log_statuses": server.statuses, "failures": failures[:50], "pass": verdict == "PASS"}, f, indent=1)
    return 0 if verdict == "PASS" else 1


if __name__ == "__main__":
    sys.exit(main())
