"""Format features beyond the official vectors, each against text written from dsml.md."""

from __future__ import annotations

import json

import pytest

from dsml import (
    V32,
    AssistantMessage,
    EncodeError,
    SystemMessage,
    ToolCall,
    ToolMessage,
    ToolSpec,
    UserMessage,
    encode_messages,
    from_openai_messages,
    to_openai_messages,
)

BOS, EOS = "<｜begin▁of▁sentence｜>", "<｜end▁of▁sentence｜>"
U, A = "<｜User｜>", "<｜Assistant｜>"
D = "｜DSML｜"
TOOL = {"name": "f", "description": "d", "parameters": {"type": "object", "properties": {}}}


def _tools_block(v4_cases) -> str:
    """The tools block of official case 1 (system text 'You are a helpful assistant.')."""
    messages, _, expected = v4_cases[0]
    return expected[len(BOS + "You are a helpful assistant.") : expected.index(U)]


def test_parallel_calls_and_results_given_out_of_order(v4_cases) -> None:
    messages, _, _ = v4_cases[0]
    system = messages[0]
    convo = [
        system,
        {"role": "user", "content": "Q"},
        {
            "role": "assistant",
            "reasoning_content": "R",
            "tool_calls": [
                {
                    "id": "a",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": {"location": "Oslo", "n": 1}},
                },
                {
                    "id": "b",
                    "type": "function",
                    "function": {
                        "name": "search",
                        "arguments": '{"query": "x y", "num_results": 2.0}',
                    },
                },
            ],
        },
        {"role": "tool", "tool_call_id": "b", "content": "RB"},
        {"role": "tool", "tool_call_id": "a", "content": "RA"},
        {"role": "user", "content": "and?"},
    ]
    expected = (
        BOS
        + "You are a helpful assistant."
        + _tools_block(v4_cases)
        + U
        + "Q"
        + A
        + "<think>R</think>"
        + f"\n\n<{D}tool_calls>\n"
        + f'<{D}invoke name="get_weather">\n'
        + f'<{D}parameter name="location" string="true">Oslo</{D}parameter>\n'
        + f'<{D}parameter name="n" string="false">1</{D}parameter>\n'
        + f"</{D}invoke>\n"
        + f'<{D}invoke name="search">\n'
        + f'<{D}parameter name="query" string="true">x y</{D}parameter>\n'
        + f'<{D}parameter name="num_results" string="false">2.0</{D}parameter>\n'
        + f"</{D}invoke>\n</{D}tool_calls>"
        + EOS
        + U
        + "<tool_result>RA</tool_result>\n\n<tool_result>RB</tool_result>\n\nand?"
        + A
        + "<think>"
    )
    assert encode_messages(convo, "thinking") == expected


def test_reasoning_effort_max_writes_its_paragraph_after_bos() -> None:
    convo = [{"role": "system", "content": "S"}, {"role": "user", "content": "Q"}]
    plain = encode_messages(convo, "thinking")
    maxed = encode_messages(convo, "thinking", reasoning_effort="max")
    paragraph = maxed[len(BOS) : maxed.index("S" + U)]
    assert paragraph.startswith("Reasoning Effort: Absolute maximum with no shortcuts permitted.\n")
    assert paragraph.endswith("unchecked.\n\n") and paragraph.count("\n") == 4
    assert maxed == BOS + paragraph + plain[len(BOS) :]
    assert encode_messages(convo, "thinking", reasoning_effort="high") == plain
    assert encode_messages(convo, "chat", reasoning_effort="max") == encode_messages(convo, "chat")


def test_wo_eos_leaves_the_assistant_turn_open() -> None:
    convo = [
        {"role": "user", "content": "Q"},
        {"role": "assistant", "content": "part", "reasoning_content": "r", "wo_eos": True},
    ]
    assert encode_messages(convo, "thinking") == BOS + U + "Q" + A + "<think>r</think>part"
    typed = [UserMessage(content="Q"), AssistantMessage(content="part", wo_eos=True)]
    assert encode_messages(typed, "chat") == BOS + U + "Q" + A + "</think>part"


def test_non_action_task_marker_follows_the_user_text() -> None:
    convo = [
        {"role": "user", "content": "hello there", "task": "title"},
        {"role": "assistant", "content": "Greeting", "reasoning_content": "ignored"},
    ]
    assert encode_messages(convo, "thinking") == BOS + U + "hello there<｜title｜>Greeting" + EOS


def test_action_task_in_thinking_mode() -> None:
    convo = [{"role": "user", "content": "find it", "task": "action"}]
    assert encode_messages(convo, "thinking") == BOS + U + "find it" + A + "<think><｜action｜>"


def test_without_tools_earlier_reasoning_is_dropped_unless_asked() -> None:
    convo = [
        {"role": "user", "content": "a"},
        {"role": "assistant", "content": "b", "reasoning_content": "r1"},
        {"role": "user", "content": "c"},
    ]
    dropped = BOS + U + "a" + A + "</think>b" + EOS + U + "c" + A + "<think>"
    kept = BOS + U + "a" + A + "<think>r1</think>b" + EOS + U + "c" + A + "<think>"
    assert encode_messages(convo, "thinking") == dropped
    assert encode_messages(convo, "thinking", drop_thinking=False) == kept


def test_developer_turns_before_the_last_user_turn_are_dropped_without_tools() -> None:
    convo = [
        {"role": "developer", "content": "dev"},
        {"role": "assistant", "content": "x"},
        {"role": "user", "content": "u"},
    ]
    assert encode_messages(convo, "thinking") == BOS + "x" + EOS + U + "u" + A + "<think>"


def test_context_is_taken_into_account_but_not_rendered() -> None:
    ctx = [{"role": "user", "content": "a"}]
    new = [{"role": "assistant", "content": "b", "reasoning_content": "r"}]
    assert encode_messages(new, "thinking", context=ctx) == "r</think>b" + EOS
    assert encode_messages(ctx, "chat", add_default_bos_token=False) == U + "a" + A + "</think>"


def test_arguments_that_are_not_json_fall_back_to_one_string_parameter() -> None:
    convo = [
        {
            "role": "assistant",
            "tool_calls": [{"id": "1", "function": {"name": "f", "arguments": "not json"}}],
        }
    ]
    assert encode_messages(convo, "chat", add_default_bos_token=False) == (
        f'\n\n<{D}tool_calls>\n<{D}invoke name="f">\n'
        f'<{D}parameter name="arguments" string="true">not json</{D}parameter>\n'
        f"</{D}invoke>\n</{D}tool_calls>" + EOS
    )
    with pytest.raises(EncodeError, match="JSON"):
        encode_messages(convo, "chat", dialect=V32)


def test_v32_dialect_writes_function_results_after_the_turn() -> None:
    convo = [
        SystemMessage(content="S", tools=[ToolSpec(**TOOL)]),
        UserMessage(content="U"),
        AssistantMessage(
            reasoning_content="R", tool_calls=[ToolCall(id="1", name="f", arguments={"x": 1})]
        ),
        ToolMessage(tool_call_id="1", content="r"),
    ]
    out = encode_messages(convo, "thinking", dialect=V32)
    schema = json.dumps(TOOL, ensure_ascii=False)
    head = BOS + "S\n\n## Tools\n\nYou have access to a set of tools you can use"
    assert out.startswith(head)
    assert f"<functions>\n{schema}\n</functions>\n" + U + "U" + A + "<think>R</think>" in out
    assert out.endswith(
        f'\n\n<{D}function_calls>\n<{D}invoke name="f">\n'
        f'<{D}parameter name="x" string="false">1</{D}parameter>\n'
        f"</{D}invoke>\n</{D}function_calls>"
        + EOS
        + "\n\n<function_results>\n<result>r</result>\n</function_results>\n\n<think>"
    )


def test_v32_developer_puts_tools_before_the_user_message() -> None:
    convo = [{"role": "developer", "content": "hi", "tools": [TOOL]}]
    out = encode_messages(convo, "chat", dialect=V32)
    assert out.startswith(BOS + U + "\n\n## Tools\n")
    assert out.endswith("</functions>\n\n\n# The user's message is: hi" + A + "</think>")


@pytest.mark.parametrize(
    ("convo", "kwargs", "match"),
    [
        ([{"role": "user", "content": "x"}], {"reasoning_effort": "low"}, "reasoning_effort"),
        ([{"role": "developer", "content": ""}], {}, "developer message 0 has no content"),
        ([{"role": "user", "content": "x", "task": "dance"}], {}, "valid tasks"),
        ([{"role": "robot", "content": "x"}], {}, "role 'robot'"),
        ([{"role": "extras", "content": "x"}], {}, "role 'extras'"),
        ([{"content": "x"}], {}, "without a role"),
        ([{"role": "latest_reminder", "content": "x"}], {"dialect": V32}, "latest_reminder"),
        ([{"role": "tool", "content": "x"}], {"dialect": V32}, "answers no call"),
    ],
)
def test_conversations_the_format_cannot_express_raise(convo, kwargs, match) -> None:
    with pytest.raises(EncodeError, match=match):
        encode_messages(convo, "chat", **kwargs)


def test_thinking_mode_must_be_named() -> None:
    with pytest.raises(EncodeError, match="thinking_mode"):
        encode_messages([], "deep")


def test_openai_conversion_round_trips(v4_case) -> None:
    messages, _, _ = v4_case
    typed = from_openai_messages(messages)
    assert from_openai_messages(to_openai_messages(typed)) == typed
    wire = to_openai_messages(typed)
    assistant = next(m for m in wire if m["role"] == "assistant")
    assert "reasoning_content" in assistant or "content" in assistant
    for m in wire:
        for tc in m.get("tool_calls", []):
            assert isinstance(json.loads(tc["function"]["arguments"]), dict)
            assert tc["type"] == "function"
