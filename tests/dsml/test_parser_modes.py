"""Tolerant mode accepts the model-side variants of dsml.md and records each repair; strict
mode follows the reference and raises typed errors with an offset and an actionable message."""

from __future__ import annotations

import pytest

from dsml import V32, ParseError, StreamParser, parse_completion

D = "｜DSML｜"
EOS = "<｜end▁of▁sentence｜>"
CALL = (
    f'<{D}invoke name="f">\n<{D}parameter name="a" string="true">x y</{D}parameter>\n'
    f'<{D}parameter name="n" string="false">2</{D}parameter>\n</{D}invoke>'
)
BLOCK = f"\n\n<{D}tool_calls>\n{CALL}\n</{D}tool_calls>{EOS}"
WANT = {"a": "x y", "n": 2}


def _both(text: str, mode: str = "chat", **kw):
    """Whole parse, checked equal to a 5-character stream of the same text."""
    turn = parse_completion(text, mode, **kw)
    parser = StreamParser(mode, **kw)
    for i in range(0, len(text), 5):
        parser.feed(text[i : i + 5])
    parser.close()
    assert parser.turn == turn
    return turn


@pytest.mark.parametrize(
    ("text", "repair", "content"),
    [
        ("Sure." + BLOCK.replace("tool_calls", "function_calls"), "wrapper", "Sure."),
        ("Sure.\n\n" + CALL + EOS, "missing_wrapper", "Sure."),
        ("Sure." + BLOCK.replace(D, "｜｜DSML｜｜"), "prefix", "Sure."),
        ("Sure." + BLOCK.replace(D, ""), "prefix", "Sure."),
        ("Sure.\n\n" + CALL.replace(D, "") + EOS, "prefix", "Sure."),
        ("Sure." + BLOCK.replace("\n\n", "", 1), "block_start", "Sure."),
        ("Sure." + BLOCK.replace(EOS, "\nDone." + EOS), "text_after_block", "Sure.Done."),
        ("Sure." + BLOCK.replace(' string="true"', ""), "string_attribute", "Sure."),
    ],
)
def test_tolerant_mode_accepts_model_side_variants(text, repair, content) -> None:
    tools = [
        {
            "name": "f",
            "parameters": {
                "type": "object",
                "properties": {"a": {"type": "string"}, "n": {"type": "integer"}},
            },
        }
    ]
    turn = _both(text, tools=tools)
    assert turn.content == content
    assert [c.arguments for c in turn.tool_calls] == [WANT]
    assert repair in [r.kind for r in turn.repairs]
    try:
        strict = parse_completion(text, "chat", tools=tools, strict=True)
    except ParseError:
        return
    # The reference knows no unprefixed tags: to it they are plain text.
    assert D not in text and not strict.tool_calls and strict.content == text[: -len(EOS)]


def test_a_block_inside_the_reasoning_is_read_in_tolerant_mode() -> None:
    text = "Let me check." + BLOCK.replace(EOS, "") + "\nok</think>Done." + EOS
    turn = _both(text, "thinking")
    assert turn.reasoning_content == "Let me check.ok"
    assert turn.content == "Done."
    assert [c.arguments for c in turn.tool_calls] == [WANT]
    assert [r.kind for r in turn.repairs] == ["calls_in_reasoning"]
    with pytest.raises(ParseError, match="after </think>") as info:
        parse_completion(text, "thinking", strict=True)
    assert info.value.offset == len("Let me check.") + 2


def test_a_block_cut_off_by_the_token_limit_is_reported_truncated() -> None:
    text = "Sure." + BLOCK[: BLOCK.index("x y") + 2]
    turn = _both(text)
    assert turn.truncated and turn.content == "Sure." and not turn.tool_calls
    (error,) = turn.errors
    assert error.kind == "truncated" and error.name == "f" and error.id == "call_0"
    with pytest.raises(ParseError, match="inside a tool-call block") as info:
        parse_completion(text, "chat", strict=True)
    assert info.value.kind == "truncated" and info.value.offset == len(text)


def test_the_v32_dialect_expects_function_calls() -> None:
    v32 = "Sure." + BLOCK.replace("tool_calls", "function_calls")
    turn = parse_completion(v32, "chat", strict=True, dialect=V32)
    assert [c.arguments for c in turn.tool_calls] == [WANT] and not turn.repairs
    assert "wrapper" in [
        r.kind for r in parse_completion("Sure." + BLOCK, "chat", dialect=V32).repairs
    ]


def test_text_without_eos_ends_the_turn_at_the_end_of_the_text() -> None:
    turn = _both("Hello there", "chat", strict=True)
    assert turn.content == "Hello there" and not turn.truncated
    cut = _both("thinking still", "thinking")
    assert cut.truncated and cut.reasoning_content == "thinking still"


def test_missing_think_end_before_eos_is_repaired() -> None:
    turn = _both("all reasoning" + EOS, "thinking")
    assert turn.reasoning_content == "all reasoning" and turn.content == ""
    assert [r.kind for r in turn.repairs] == ["missing_think_end"]


@pytest.mark.parametrize(
    ("text", "mode", "kind", "offset", "says"),
    [
        ("no end" + EOS, "thinking", "missing_think_end", 6, "write </think>"),
        ("r</think>a</think>" + EOS, "thinking", "special_token", 10, "</think>"),
        ("a<think>b" + EOS, "chat", "special_token", 1, "<think>"),
        (
            "a" + BLOCK.replace(EOS, " " + EOS),
            "chat",
            "after_block",
            1 + len(BLOCK) - len(EOS),
            "only EOS may follow",
        ),
        (
            "a" + BLOCK.replace(f"</{D}parameter>\n<", f"</{D}parameter>\n\n<"),
            "chat",
            "separator",
            BLOCK.index(f"</{D}parameter>\n<") + len(f"</{D}parameter>\n\n") + 1,
            "exactly one newline",
        ),
        (
            "a" + BLOCK.replace('name="n"', 'name="a"'),
            "chat",
            "duplicate_parameter",
            BLOCK.index('name="n"') - len(f"<{D}parameter ") + 1,
            "given twice",
        ),
        (
            "a" + BLOCK.replace(' string="false"', ' string="no"'),
            "chat",
            "attributes",
            BLOCK.index(' string="false"') - len(f'<{D}parameter name="n"') + 1,
            'string="true|false"',
        ),
        ("a" + BLOCK + "more", "chat", "after_eos", len("a" + BLOCK), "ends at EOS"),
    ],
)
def test_strict_mode_raises_typed_errors_at_the_offset(text, mode, kind, offset, says) -> None:
    with pytest.raises(ParseError) as info:
        parse_completion(text, mode, strict=True)
    assert (info.value.kind, info.value.offset) == (kind, offset)
    assert says in str(info.value)
    parser = StreamParser(mode, strict=True)
    with pytest.raises(ParseError) as streamed:
        for ch in text:
            parser.feed(ch)
        parser.close()
    assert (streamed.value.kind, streamed.value.offset) == (kind, offset)


def test_special_tokens_arriving_whole_as_token_pieces() -> None:
    # What a tokenizer's decode gives piece by piece: special tokens whole, text in pieces.
    pieces = [
        "I",
        " will",
        " check",
        ".",
        "</think>",
        "\n\n",
        f"<{D}tool_calls>",
        "\n",
        f"<{D}invoke",
        ' name="',
        "f",
        '">',
        "\n",
        f"<{D}parameter",
        ' name="',
        "a",
        '" string="',
        "true",
        '">',
        "x",
        " y",
        f"</{D}parameter>",
        "\n",
        f"<{D}parameter",
        ' name="n" string="false">',
        "2",
        f"</{D}parameter>",
        "\n",
        f"</{D}invoke>",
        "\n",
        f"</{D}tool_calls>",
        EOS,
    ]
    parser = StreamParser("thinking", strict=True)
    events = [e for p in pieces for e in parser.feed(p)] + parser.close()
    turn = parser.turn
    assert turn == parse_completion("".join(pieces), "thinking", strict=True)
    assert turn.reasoning_content == "I will check." and [c.arguments for c in turn.tool_calls] == [
        WANT
    ]
    assert type(events[-1]).__name__ == "TurnEnded" and events[-1].reason == "eos"


def test_eos_inside_an_open_invoke_fails_that_call_only() -> None:
    first = CALL
    open_call = f'<{D}invoke name="f">\n<{D}parameter name="a" string="true">z</{D}parameter>\n'
    text = "Sure.\n\n" + first + "\n" + open_call + EOS
    turn = _both(text)
    assert [c.arguments for c in turn.tool_calls] == [WANT]
    (error,) = turn.errors
    assert error.index == 1 and "ended before </invoke>" in error.message
    assert "unclosed_invoke" in [r.kind for r in turn.repairs] and not turn.truncated


def test_a_misspelled_parameter_tag_may_close_with_the_right_one() -> None:
    text = (
        f'Sure.\n\n<{D}tool_calls>\n<{D}invoke name="f">\n<｜｜DSML｜｜parameter name="a" '
        f'string="true">x y</{D}parameter>\n<parameter name="n" string="false">2'
        f"</{D}parameter>\n</{D}invoke>\n</{D}tool_calls>{EOS}"
    )
    turn = _both(text)
    assert [c.arguments for c in turn.tool_calls] == [WANT]
    # A correctly opened value ends only at its own exact closing tag.
    odd = "a</｜｜DSML｜｜parameter>b</parameter>c"
    turn = _both(
        f'\n\n<{D}tool_calls>\n<{D}invoke name="f">\n<{D}parameter name="a" '
        f'string="true">{odd}</{D}parameter>\n</{D}invoke>\n</{D}tool_calls>{EOS}'
    )
    assert turn.tool_calls[0].arguments == {"a": odd}
