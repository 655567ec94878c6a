"""DSML parser throughput: whole completions (MB/s, schema validation on) and streaming
(microseconds per 4-character delta), plus how the per-delta cost grows with one value's size.

    .venv/bin/python bench/dsml_bench.py [--completions 2000] [--repeats 3] [--seed 0]

The corpus is generated: 1-4 calls per completion, string values of 10-2,000 characters with
`<`, `&`, newlines and non-ASCII text, some JSON values, and tools whose schemas every call is
validated against. Times are this process's CPU time (`time.process_time`) unless
`--clock wall`, so that other processes sharing the machine's cores inflate them less than
wall-clock time would; each figure is the best of `--repeats` runs.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import time

from dsml import StreamParser, encode_messages, parse_completion

_clock = time.process_time  # --clock wall switches to time.perf_counter

ALPHABET = "abcdefghij klmnop qrstuv wxyz <>&/\n\"'=;{}[]中文字符é🙂"
FRAGMENTS = ["<b>", "</div>", "&amp;", "a < b && c > d", "if x<3:\n    y &= 1\n", "\n\n"]


def _text(rng: random.Random, n: int) -> str:
    out: list[str] = []
    size = 0
    while size < n:
        piece = (
            rng.choice(FRAGMENTS)
            if rng.random() < 0.15
            else "".join(rng.choices(ALPHABET, k=rng.randint(3, 12)))
        )
        out.append(piece)
        size += len(piece)
    return "".join(out)[:n]


def tools() -> list[dict]:
    return [
        {
            "name": f"tool{i}",
            "description": "bench tool",
            "parameters": {
                "type": "object",
                "properties": {
                    "path": {"type": "string"},
                    "body": {"type": "string"},
                    "count": {"type": "integer"},
                    "mode": {"type": "string", "enum": ["read", "write", "append"]},
                    "tags": {"type": "array", "items": {"type": "string"}},
                },
                "required": ["path", "body"],
                "additionalProperties": False,
            },
        }
        for i in range(4)
    ]


def corpus(n: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        calls = []
        for c in range(rng.randint(1, 4)):
            args: dict = {
                "path": _text(rng, rng.randint(10, 60)),
                "body": _text(rng, rng.randint(10, 2000)),
            }
            if rng.random() < 0.5:
                args["count"] = rng.randint(0, 10**6)
            if rng.random() < 0.5:
                args["mode"] = rng.choice(["read", "write", "append"])
            if rng.random() < 0.3:
                args["tags"] = [_text(rng, 8) for _ in range(rng.randint(0, 3))]
            calls.append(
                {"id": f"c{c}", "function": {"name": f"tool{rng.randint(0, 3)}", "arguments": args}}
            )
        msg = {
            "role": "assistant",
            "reasoning_content": _text(rng, rng.randint(20, 400)),
            "content": _text(rng, rng.randint(0, 200)),
            "tool_calls": calls,
        }
        out.append(encode_messages([msg], "thinking", context=[{"role": "user", "content": "q"}]))
    return out


def whole(texts: list[str], toolset, repeats: int) -> float:
    """MB/s (UTF-8 bytes) of parse_completion with schema validation."""
    size = sum(len(t.encode()) for t in texts)
    best = float("inf")
    for _ in range(repeats):
        start = _clock()
        for t in texts:
            turn = parse_completion(t, "thinking", tools=toolset)
            if turn.errors:
                raise AssertionError(f"bench corpus should parse cleanly: {turn.errors[0]}")
        best = min(best, _clock() - start)
    return size / best / 1e6


def streaming(texts: list[str], toolset, repeats: int, size: int = 4) -> float:
    """Microseconds per `size`-character delta, feeding each completion delta by delta."""
    chunked = [[t[i : i + size] for i in range(0, len(t), size)] for t in texts]
    deltas = sum(map(len, chunked))
    best = float("inf")
    for _ in range(repeats):
        start = _clock()
        for pieces in chunked:
            parser = StreamParser("thinking", tools=toolset)
            feed = parser.feed
            for piece in pieces:
                feed(piece)
            parser.close()
        best = min(best, _clock() - start)
    return best / deltas * 1e6


def value_growth(toolset, repeats: int, sizes=(1024, 2048, 4096, 8192, 16384)) -> list[tuple]:
    """Per-delta cost while streaming ONE string value of each size (the value's deltas only).

    Each size streams about 128K deltas in all (the value repeated in fresh parsers), so the
    figures compare equal amounts of work."""
    rng = random.Random(1)
    rows = []
    for n in sizes:
        body = _text(rng, n)
        msg = {
            "role": "assistant",
            "reasoning_content": "r",
            "tool_calls": [
                {"id": "1", "function": {"name": "tool0", "arguments": {"path": "p", "body": body}}}
            ],
        }
        text = encode_messages([msg], "thinking", context=[{"role": "user", "content": "q"}])
        start_at = text.index(body)
        head, value, tail = text[:start_at], text[start_at : start_at + n], text[start_at + n :]
        pieces = [value[i : i + 4] for i in range(0, n, 4)]
        rounds = max(1, 131072 // len(pieces))
        best = float("inf")
        for _ in range(repeats):
            spent = 0.0
            for _ in range(rounds):
                parser = StreamParser("thinking", tools=toolset)
                parser.feed(head)
                feed = parser.feed
                start = _clock()
                for piece in pieces:
                    feed(piece)
                spent += _clock() - start
                parser.feed(tail)
                parser.close()
                if parser.turn.tool_calls[0].arguments["body"] != body:
                    raise AssertionError("the streamed value differs from the rendered one")
            best = min(best, spent)
        rows.append((n, best / (len(pieces) * rounds) * 1e6))
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--completions", type=int, default=2000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--clock",
        choices=["cpu", "wall"],
        default="cpu",
        help="process CPU time (default) or wall-clock time",
    )
    args = ap.parse_args()
    global _clock
    _clock = time.process_time if args.clock == "cpu" else time.perf_counter

    texts = corpus(args.completions, args.seed)
    toolset = tools()
    parse_completion(texts[0], "thinking", tools=toolset)  # compile the schemas once
    size_mb = sum(len(t.encode()) for t in texts) / 1e6
    calls = sum(t.count("</｜DSML｜invoke>") for t in texts)
    print(
        f"corpus: {len(texts)} completions, {calls} calls, {size_mb:.2f} MB, "
        f"median {statistics.median(len(t) for t in texts)} chars; {args.clock} time"
    )
    mbs = whole(texts, toolset, args.repeats)
    us = streaming(texts, toolset, args.repeats)
    growth = value_growth(toolset, args.repeats)
    base = growth[0][1]

    print()
    print("| measure | result | target |")
    print("| --- | --- | --- |")
    print(f"| whole completion, schema validation on | {mbs:.1f} MB/s | >= 30 MB/s |")
    print(f"| streaming, 4-char deltas (whole corpus) | {us:.2f} us/delta | <= 3 us |")
    for n, cost in growth:
        print(
            f"| streaming one {n // 1024}K-char value, 4-char deltas | {cost:.2f} us/delta "
            f"({cost / base:.2f}x the 1K cost) | <= 1.2x |"
        )
    print()
    print(
        json.dumps(
            {
                "mb_per_s": round(mbs, 2),
                "us_per_delta": round(us, 3),
                "value_growth_us": {n: round(c, 3) for n, c in growth},
            }
        )
    )


if __name__ == "__main__":
    main()
