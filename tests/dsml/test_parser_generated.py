"""Hypothesis: completions rendered from known turns parse back to exactly those turns,
streamed in any chunking, strict and tolerant alike."""

from __future__ import annotations

import json

from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from dsml import StreamParser, encode_messages, parse_completion

TEXT_FRAGMENTS = [
    "a",
    "Z",
    " ",
    "\n",
    "\n\n",
    "<",
    ">",
    "&",
    "&amp;",
    "é",
    "中",
    "🙂",
    "<b>",
    "</b>",
    "<｜",
    "｜",
    "DSML",
    "</",
    "<t",
    '"',
    "'",
    "\t",
]
# Values may hold anything but their own closing tag.
VALUE_FRAGMENTS = [
    *TEXT_FRAGMENTS,
    "<think>",
    "</think>",
    "<｜DSML｜invoke>",
    "</｜DSML｜invoke>",
    "</｜DSML｜tool_calls>",
    "</｜DSML｜parameter",
    "<｜end▁of▁sentence｜>",
]
FORBIDDEN_IN_TEXT = (
    "<｜DSML｜",
    "</｜DSML｜",
    "<｜｜DSML｜｜",
    "</｜｜DSML｜｜",
    "<tool_calls>",
    "<function_calls>",
    "<invoke name=",
    "<｜end▁of▁sentence｜>",
    "</think>",
    "<think>",
    "<｜begin▁of▁sentence｜>",
)
pieces = st.lists(st.sampled_from(TEXT_FRAGMENTS), max_size=12).map("".join)
value_pieces = st.lists(st.sampled_from(VALUE_FRAGMENTS), max_size=12).map("".join)
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(10**25), 10**25)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.sampled_from([2.0, 1e21, -0.0])
    | value_pieces,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(value_pieces, inner, max_size=3),
    max_leaves=6,
)
names = st.text("abcdefgh_", min_size=1, max_size=6)


@st.composite
def turns(draw):
    mode = draw(st.sampled_from(["thinking", "chat"]))
    reasoning = draw(pieces) if mode == "thinking" else None
    content = draw(pieces)
    calls = []
    for i in range(draw(st.integers(0, 4))):
        params = draw(st.dictionaries(names, st.one_of(value_pieces, json_values), max_size=4))
        # The one text a value cannot hold: its own closing tag.
        params = {
            k: v
            for k, v in params.items()
            if "</｜DSML｜parameter>"
            not in (v if isinstance(v, str) else json.dumps(v, ensure_ascii=False))
        }
        calls.append({"id": f"call_{i}", "name": draw(names), "arguments": params})
    for text in (reasoning or "", content):
        assume(not any(t in text for t in FORBIDDEN_IN_TEXT))
    if calls:
        # The block needs its blank line: content ending in newlines would lend them.
        assume(not content.endswith("\n"))
    return mode, reasoning, content, calls


def _render(mode, reasoning, content, calls) -> str:
    msg = {
        "role": "assistant",
        "content": content,
        "reasoning_content": reasoning,
        "tool_calls": [
            {"id": c["id"], "function": {"name": c["name"], "arguments": c["arguments"]}}
            for c in calls
        ],
    }
    return encode_messages([msg], mode, context=[{"role": "user", "content": "q"}])


def _same_json(a, b) -> bool:
    return json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
@given(turn=turns(), cut_seeds=st.lists(st.integers(0, 10**6), max_size=30), strict=st.booleans())
def test_rendered_turns_parse_back_exactly(turn, cut_seeds, strict, assert_stream_matches):
    mode, reasoning, content, calls = turn
    text = _render(mode, reasoning, content, calls)
    parsed = parse_completion(text, mode, strict=strict)
    assert parsed.reasoning_content == reasoning
    assert parsed.content == content
    assert not parsed.errors and not parsed.repairs and not parsed.truncated
    assert [(c.id, c.name) for c in parsed.tool_calls] == [(c["id"], c["name"]) for c in calls]
    for got, want in zip(parsed.tool_calls, calls, strict=True):
        assert _same_json(got.arguments, want["arguments"])  # 2.0 stays 2.0, True not 1
    cuts = sorted(seed % (len(text) + 1) for seed in cut_seeds)
    parser = StreamParser(mode, strict=strict)
    events, last = [], 0
    for cut in [*cuts, len(text)]:
        events += parser.feed(text[last:cut])
        last = cut
    assert_stream_matches(events + parser.close(), parsed)
