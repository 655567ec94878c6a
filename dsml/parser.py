"""Whole-completion parsing: the streaming state machine, fed the text once."""

from __future__ import annotations

from dsml.dialects import V4, Dialect
from dsml.stream import StreamParser
from dsml.toolset import ToolSet, ToolsLike
from dsml.types import AssistantTurn


def parse_completion(
    text: str,
    thinking_mode: str,
    *,
    tools: ToolsLike | ToolSet | None = None,
    strict: bool = False,
    dialect: Dialect = V4,
    call_id_prefix: str = "call_",
) -> AssistantTurn:
    """Parse what the model wrote after the prompt's `<think>` (thinking) or `</think>` (chat),
    up to and including EOS when present.

    Tolerant (default): accepts the model-side variants of dsml.md and lists each repair in
    `turn.repairs`. Strict: follows the reference rules and raises `ParseError` (with the
    offset and a message the model can act on). In both modes a call whose tool is unknown or
    whose arguments fail the tool's JSON schema is reported in `turn.errors`, beside the valid
    calls in `turn.tool_calls`.
    """
    parser = StreamParser(
        thinking_mode, tools=tools, strict=strict, dialect=dialect, call_id_prefix=call_id_prefix
    )
    parser.feed(text)
    parser.close()
    return parser.turn
