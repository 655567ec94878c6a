"""DSML: the DeepSeek-V4 prompt format, its encoder and its (streaming) tool-call parser.

Pure Python (no torch). The encoder is byte-identical to DeepSeek's reference
`encode_messages`; the parsers read what the model writes after the prompt.
"""

from dsml.dialects import DIALECTS, V4, V32, Dialect
from dsml.encoder import encode_messages, render_suffix
from dsml.errors import AppendOnlyError, DsmlError, EncodeError, ParseError
from dsml.events import (
    ContentDelta,
    Event,
    ReasoningDelta,
    ToolCallArgumentDelta,
    ToolCallFinished,
    ToolCallStarted,
    TurnEnded,
)
from dsml.parser import parse_completion
from dsml.schema import compile_schema
from dsml.stream import StreamParser
from dsml.toolset import ToolSet
from dsml.types import (
    AssistantMessage,
    AssistantTurn,
    CallError,
    DeveloperMessage,
    LatestReminderMessage,
    Message,
    Repair,
    SystemMessage,
    ToolCall,
    ToolMessage,
    ToolSpec,
    UserMessage,
    from_openai_messages,
    to_openai_messages,
)

__all__ = [
    "DIALECTS",
    "V4",
    "V32",
    "Dialect",
    "encode_messages",
    "render_suffix",
    "parse_completion",
    "StreamParser",
    "ToolSet",
    "compile_schema",
    "AppendOnlyError",
    "DsmlError",
    "EncodeError",
    "ParseError",
    "Event",
    "ReasoningDelta",
    "ContentDelta",
    "ToolCallStarted",
    "ToolCallArgumentDelta",
    "ToolCallFinished",
    "TurnEnded",
    "AssistantMessage",
    "AssistantTurn",
    "CallError",
    "DeveloperMessage",
    "LatestReminderMessage",
    "Message",
    "Repair",
    "SystemMessage",
    "ToolCall",
    "ToolMessage",
    "ToolSpec",
    "UserMessage",
    "from_openai_messages",
    "to_openai_messages",
]
