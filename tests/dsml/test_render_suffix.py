"""Append-only rendering: render(old + new) == render(old) + suffix whenever the format allows."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dsml import AppendOnlyError, encode_messages, render_suffix

TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "bash",
            "description": "run",
            "parameters": {
                "type": "object",
                "properties": {"cmd": {"type": "string"}},
                "required": ["cmd"],
            },
        },
    }
]
text = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=12)


@st.composite
def conversations(draw, with_tools: bool) -> list[dict]:
    """System (with or without tools), then rounds of user / assistant / tool results."""
    convo: list[dict] = [{"role": "system", "content": draw(text)}]
    if with_tools:
        convo[0]["tools"] = TOOLS
    if draw(st.booleans()):
        convo.append({"role": "latest_reminder", "content": draw(text)})
    for turn in range(draw(st.integers(1, 4))):
        convo.append(
            {"role": draw(st.sampled_from(["user", "developer"])), "content": draw(text) or "x"}
        )
        for _ in range(draw(st.integers(1, 3))):
            n_calls = draw(st.integers(0, 3)) if with_tools else 0
            ids = [f"t{turn}c{i}" for i in range(n_calls)]
            convo.append(
                {
                    "role": "assistant",
                    "reasoning_content": draw(text),
                    "content": draw(text),
                    "tool_calls": [
                        {
                            "id": i,
                            "type": "function",
                            "function": {"name": "bash", "arguments": {"cmd": draw(text)}},
                        }
                        for i in ids
                    ],
                }
            )
            if not ids:
                break
            for i in draw(st.permutations(ids)):
                convo.append({"role": "tool", "tool_call_id": i, "content": draw(text)})
    return convo


def _turn_boundaries(convo: list[dict]) -> list[int]:
    """Split points where `history` ends a complete turn: after an assistant message, or
    just before one."""
    return [
        k
        for k in range(1, len(convo))
        if convo[k - 1]["role"] == "assistant" or convo[k]["role"] == "assistant"
    ]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    conversations(with_tools=True),
    st.sampled_from(["thinking", "chat"]),
    st.sampled_from([None, "max"]),
)
def test_with_tools_every_turn_boundary_is_append_only(convo, mode, effort) -> None:
    full = encode_messages(convo, mode, reasoning_effort=effort)
    for k in _turn_boundaries(convo):
        old = encode_messages(convo[:k], mode, reasoning_effort=effort)
        assert old + render_suffix(convo[:k], convo[k:], mode, reasoning_effort=effort) == full


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.booleans().flatmap(lambda t: conversations(with_tools=t)),
    st.sampled_from(["thinking", "chat"]),
)
def test_any_split_gives_a_correct_suffix_or_a_clear_error(convo, mode) -> None:
    full = encode_messages(convo, mode)
    for k in range(len(convo) + 1):
        old = encode_messages(convo[:k], mode)
        try:
            suffix = render_suffix(convo[:k], convo[k:], mode)
        except AppendOnlyError as err:
            assert not full.startswith(old)
            assert full[: err.position] == old[: err.position]
            assert old[err.position : err.position + 1] != full[err.position : err.position + 1]
        else:
            assert old + suffix == full


def test_agent_round_suffix_is_the_tool_results_and_the_opening() -> None:
    history = [
        {"role": "system", "content": "S", "tools": TOOLS},
        {"role": "user", "content": "go"},
        {
            "role": "assistant",
            "reasoning_content": "r",
            "tool_calls": [
                {"id": "1", "function": {"name": "bash", "arguments": {"cmd": "ls"}}},
                {"id": "2", "function": {"name": "bash", "arguments": {"cmd": "pwd"}}},
            ],
        },
    ]
    new = [
        {"role": "tool", "tool_call_id": "2", "content": "/w"},
        {"role": "tool", "tool_call_id": "1", "content": "a b"},
    ]
    assert render_suffix(history, new, "thinking") == (
        "<｜User｜><tool_result>a b</tool_result>\n\n<tool_result>/w</tool_result>"
        "<｜Assistant｜><think>"
    )


def test_dropped_reasoning_is_reported_with_its_position() -> None:
    history = [
        {"role": "user", "content": "a"},
        {"role": "assistant", "content": "b", "reasoning_content": "why"},
    ]
    with pytest.raises(AppendOnlyError, match="drop_thinking") as info:
        render_suffix(history, [{"role": "user", "content": "c"}], "thinking")
    old = encode_messages(history, "thinking")
    assert old[info.value.position - 1 :].startswith("<think>why")  # "<t" vs "</"
    suffix = render_suffix(
        history, [{"role": "user", "content": "c"}], "thinking", drop_thinking=False
    )
    assert suffix == "<｜User｜>c<｜Assistant｜><think>"


def test_a_tool_result_joining_the_previous_results_is_not_append_only() -> None:
    history = [
        {"role": "system", "content": "", "tools": TOOLS},
        {
            "role": "assistant",
            "tool_calls": [
                {"id": "1", "function": {"name": "bash", "arguments": {}}},
                {"id": "2", "function": {"name": "bash", "arguments": {}}},
            ],
        },
        {"role": "tool", "tool_call_id": "1", "content": "one"},
    ]
    with pytest.raises(AppendOnlyError):
        render_suffix(
            history, [{"role": "tool", "tool_call_id": "2", "content": "two"}], "thinking"
        )
