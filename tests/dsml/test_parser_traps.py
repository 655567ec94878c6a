"""Faults measured in other stacks' DSML parsers, each pinned here."""

from __future__ import annotations

import json

import pytest

from dsml import StreamParser, parse_completion

D = "｜DSML｜"
EOS = "<｜end▁of▁sentence｜>"


def param(name: str, value: str, string: bool = True) -> str:
    return (
        f'<{D}parameter name="{name}" string="{"true" if string else "false"}">'
        f"{value}</{D}parameter>"
    )


def invoke(name: str, *params: str) -> str:
    return f'<{D}invoke name="{name}">\n' + "\n".join(params) + f"\n</{D}invoke>"


def block(*invokes: str) -> str:
    return f"\n\n<{D}tool_calls>\n" + "\n".join(invokes) + f"\n</{D}tool_calls>" + EOS


def tool(name: str, properties: dict, required: list | None = None, **extra) -> dict:
    return {
        "name": name,
        "description": "",
        "parameters": {
            "type": "object",
            "properties": properties,
            "required": required or [],
            **extra,
        },
    }


def test_think_tags_inside_a_string_value_do_not_reenter_reasoning() -> None:
    value = "a</think>b<think>c</think>"
    text = "plan</think>" + block(invoke("note", param("text", value)))
    for parse in (
        lambda: parse_completion(text, "thinking", strict=True),
        lambda: _streamed(text, "thinking"),
    ):
        turn = parse()
        assert turn.reasoning_content == "plan"
        assert turn.content == ""
        assert turn.tool_calls[0].arguments == {"text": value}


def test_string_values_are_never_coerced_by_the_schema() -> None:
    text = block(invoke("get", param("id", "00123"), param("flag", "true")))
    as_text = [tool("get", {"id": {"type": "string"}, "flag": {"type": "string"}})]
    turn = parse_completion(text, "chat", tools=as_text)
    assert turn.tool_calls[0].arguments == {"id": "00123", "flag": "true"}
    as_numbers = [tool("get", {"id": {"type": "integer"}, "flag": {"type": "boolean"}})]
    turn = parse_completion(text, "chat", tools=as_numbers)
    assert not turn.tool_calls
    (error,) = turn.errors
    assert error.kind == "invalid_arguments" and error.arguments == {"id": "00123", "flag": "true"}
    assert "arguments.id: expected integer, got string '00123'" in error.message


@pytest.mark.parametrize(
    ("raw", "value"),
    [
        ("2.0", 2.0),
        ("1e+21", 1e21),
        ("-0.0", -0.0),
        ("12345678901234567890123", 12345678901234567890123),
        ("true", True),
        ("null", None),
        ('{"a": [1, 2.5, "x"]}', {"a": [1, 2.5, "x"]}),
    ],
)
def test_json_values_keep_their_type(raw, value) -> None:
    turn = parse_completion(block(invoke("f", param("v", raw, string=False))), "chat")
    got = turn.tool_calls[0].arguments["v"]
    assert json.dumps(got) == json.dumps(value) and type(got) is type(value)


def test_a_value_is_opaque_until_its_exact_closing_tag() -> None:
    value = (
        f'x</{D}invoke>\n</{D}tool_calls>{EOS}<{D}parameter name="y" string="true">'
        f'</{D}parameter <{D}invoke name="z">'
    )
    text = block(invoke("f", param("v", value), param("w", "after")))
    for strict in (True, False):
        turn = parse_completion(text, "chat", strict=strict)
        assert turn.tool_calls[0].arguments == {"v": value, "w": "after"}
    assert _streamed(text, "chat").tool_calls[0].arguments == {"v": value, "w": "after"}


def test_string_values_are_byte_exact() -> None:
    value = "  lead\n\ttabs &amp; &lt;b&gt; <b>bold</b> \r\n trail  \n"
    turn = parse_completion(block(invoke("f", param("v", value))), "chat", strict=True)
    assert turn.tool_calls[0].arguments["v"] == value


def test_several_parameters_in_one_delta_are_all_kept() -> None:
    text = block(invoke("f", *(param(f"p{i}", str(i)) for i in range(6))))
    parser = StreamParser("chat")
    events = parser.feed(text[:20]) + parser.feed(text[20:]) + parser.close()
    assert events[-1].turn.tool_calls[0].arguments == {f"p{i}": str(i) for i in range(6)}


def test_cut_off_output_leaves_no_marker_and_no_half_call() -> None:
    good = invoke("first", param("a", "1"))
    cut = invoke("second", param("b", "two words"), param("c", "3", string=False))
    text = "Answer." + block(good, cut)
    first_done = text.index(good) + len(good)  # each call is complete from here on
    second_done = text.index(cut) + len(cut)
    for end in range(len("Answer."), len(text) - len(EOS)):
        for turn in (parse_completion(text[:end], "chat"), _streamed(text[:end], "chat")):
            # Blank lines cut before the tag are just text; nothing of the tag shows.
            assert turn.content in ("Answer.", "Answer.\n", "Answer.\n\n"), end
            names = [c.name for c in turn.tool_calls]
            assert names == ["first", "second"][: (end >= first_done) + (end >= second_done)]
            assert all(e.kind == "truncated" for e in turn.errors)
            if end > text.index("<", len("Answer.")):
                assert turn.truncated
            for e in turn.errors:
                assert e.arguments is None  # no half-built arguments, even for display
                assert e.name in (None, "first", "second")
                assert "cut off" in e.message


def test_a_malformed_invoke_keeps_its_valid_siblings() -> None:
    broken = f'<{D}invoke name="mid">\nnot a tag\n{param("x", "1")}\n</{D}invoke>'
    text = block(invoke("a", param("x", "1")), broken, invoke("b", param("y", "2")))
    turn = parse_completion(text, "chat")
    assert [(c.id, c.name) for c in turn.tool_calls] == [("call_0", "a"), ("call_2", "b")]
    (error,) = turn.errors
    assert (error.index, error.id, error.name, error.kind) == (1, "call_1", "mid", "malformed")
    assert "not a tag" in error.message


@pytest.mark.parametrize(
    ("bad", "kind", "says"),
    [
        (invoke("nope", param("x", "1")), "unknown_tool", "available tools are: a"),
        (invoke("a", param("x", "{oops", string=False)), "bad_json", 'string="true"'),
        (invoke("a", param("x", "1"), param("x", "2")), "duplicate_parameter", "given twice"),
        (invoke("a"), "invalid_arguments", "missing required property 'x'"),
        (
            invoke("a", param("x", "1"), param("extra", "e")),
            "invalid_arguments",
            "unexpected property 'extra'",
        ),
        (invoke("a", param("x", "NaN", string=False)), "bad_json", "not JSON"),
    ],
)
def test_a_bad_call_is_an_error_on_that_call_only(bad, kind, says) -> None:
    tools = [tool("a", {"x": {"type": "string"}}, ["x"], additionalProperties=False)]
    text = block(invoke("a", param("x", "ok")), bad, invoke("a", param("x", "ok2")))
    turn = parse_completion(text, "chat", tools=tools)
    assert [c.arguments["x"] for c in turn.tool_calls] == ["ok", "ok2"]
    (error,) = turn.errors
    assert error.index == 1 and error.kind == kind and says in error.message


def test_schema_validation_covers_enums_nested_objects_and_arrays() -> None:
    schema = {
        "mode": {"type": "string", "enum": ["r", "w"]},
        "items": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "id": {"anyOf": [{"type": "integer"}, {"type": "string"}]},
                    "n": {"type": "number"},
                },
                "required": ["id"],
                "additionalProperties": False,
            },
        },
    }
    tools = [tool("t", schema, ["mode"])]

    def check(mode: str, items: str) -> str | None:
        text = block(invoke("t", param("mode", mode), param("items", items, string=False)))
        turn = parse_completion(text, "chat", tools=tools)
        return turn.errors[0].message if turn.errors else None

    assert check("r", '[{"id": 1, "n": 2.5}, {"id": "x"}]') is None
    assert "not one of ['r', 'w']" in check("x", "[]")
    assert "arguments.items[1]: missing required property 'id'" in check("w", '[{"id":1},{}]')
    assert "arguments.items[0].id: matches none" in check("w", '[{"id": 1.5}]')
    assert "arguments.items[0]: unexpected property 'k'" in check("w", '[{"id": 1, "k": 0}]')
    assert "arguments.items: expected array, got object" in check("w", '{"id": 1}')
    assert "arguments.items[0].n: expected number, got string" in check("w", '[{"id":1,"n":"2"}]')


def test_official_tool_schemas_accept_a_well_formed_call(v4_cases) -> None:
    messages, _, _ = v4_cases[2]
    tools = messages[2]["tools"]
    text = block(
        invoke("open", param("open_list", '[{"id": "abc", "loc": 3}, {"id": 7}]', string=False)),
        invoke("find", param("find_list", '[{"pattern": "x", "cursor": 1}]', string=False)),
    )
    turn = parse_completion(text, "chat", tools=tools, strict=True)
    assert not turn.errors and len(turn.tool_calls) == 2
    turn = parse_completion(text.replace('"cursor"', '"curser"'), "chat", tools=tools)
    assert "unexpected property 'curser'" in turn.errors[0].message


@pytest.mark.timeout(120)
def test_a_10_mb_completion_parses_in_linear_time() -> None:
    # Quadratic rescanning of a 10 MB text would not finish within the timeout.
    value = ("line with <tags> & </｜DSML｜parameter stuff 中文\n" * 220_000)[:10_000_000]
    content = "<b>x</b> " * 1000
    text = "r</think>" + content + block(invoke("f", param("v", value)))
    turn = parse_completion(text, "thinking")
    assert len(turn.tool_calls[0].arguments["v"]) == len(value)
    many = block(*[invoke("f", param("v", "x" * 40), param("n", "1", string=False))] * 20_000)
    assert len(parse_completion(many, "chat").tool_calls) == 20_000


def _streamed(text: str, mode: str, size: int = 3):
    parser = StreamParser(mode)
    for i in range(0, len(text), size):
        parser.feed(text[i : i + size])
    parser.close()
    return parser.turn
