"""Hypothesis on arbitrary, mostly malformed text: streaming in any chunking agrees with the
whole-completion parse (same turn, same events reassembled), in both modes."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dsml import ParseError, StreamParser, parse_completion

D, DD = "｜DSML｜", "｜｜DSML｜｜"
PIECES = [
    "a",
    "text ",
    "中",
    "\n",
    "\n\n",
    " ",
    "<",
    ">",
    "</",
    "<｜",
    "｜",
    '"',
    "=",
    "</think>",
    "<think>",
    "<｜end▁of▁sentence｜>",
    "<｜end▁of",
    "sentence｜>",
    f"<{D}tool_calls>",
    f"</{D}tool_calls>",
    f"<{D}function_calls>",
    f"</{D}function_calls>",
    f'<{D}invoke name="f">',
    f'<{D}invoke name="g">',
    f"</{D}invoke>",
    f"<{D}invoke>",
    f'<{D}parameter name="a" string="true">',
    f'<{D}parameter name="b" string="false">',
    f'<{D}parameter name="a">',
    f"</{D}parameter>",
    f"</{D}parameter",
    f"<{D}",
    f"<{D}bogus>",
    f'<{DD}invoke name="f">',
    f"</{DD}invoke>",
    f'<{DD}parameter name="a" string="true">',
    f"</{DD}parameter>",
    f"</{D}parameter>\n",
    '<parameter name="b" string="false">',
    "<tool_calls>",
    "</tool_calls>",
    '<invoke name="f">',
    "</invoke>",
    '<parameter name="a" string="true">',
    "</parameter>",
    "<invoke name=",
    "[1, 2]",
    "{",
    "3.0",
    "true",
]
TOOLS = [
    {
        "name": "f",
        "parameters": {
            "type": "object",
            "properties": {"a": {"type": "string"}, "b": {"type": "integer"}},
            "required": ["a"],
        },
    }
]


def _outcome(run):
    try:
        return run(), None
    except ParseError as err:
        return None, (err.kind, err.offset)


def _stream(text, cuts, mode, strict, tools):
    parser = StreamParser(mode, strict=strict, tools=tools)
    events, last = [], 0
    for cut in [*cuts, len(text)]:
        events += parser.feed(text[last:cut])
        last = cut
    return events + parser.close()


@settings(max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    pieces=st.lists(st.sampled_from(PIECES), max_size=30),
    cut_seeds=st.lists(st.integers(0, 10**6), max_size=25),
    mode=st.sampled_from(["thinking", "chat"]),
    strict=st.booleans(),
    with_tools=st.booleans(),
)
def test_any_text_streams_like_it_parses(
    pieces, cut_seeds, mode, strict, with_tools, assert_stream_matches
):
    text = "".join(pieces)
    tools = TOOLS if with_tools else None
    cuts = sorted({seed % (len(text) + 1) for seed in cut_seeds})
    whole, whole_error = _outcome(lambda: parse_completion(text, mode, strict=strict, tools=tools))
    events, stream_error = _outcome(lambda: _stream(text, cuts, mode, strict, tools))
    assert whole_error == stream_error
    if whole is not None:
        assert_stream_matches(events, whole)
        for call in whole.tool_calls:  # accepted calls are complete and schema-valid
            assert call.name == "f" or not with_tools
