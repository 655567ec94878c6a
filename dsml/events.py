"""What the streaming parser emits, in order, as the model writes a turn.

Plain slotted dataclasses rather than pydantic models: thousands are created per second on the
streaming hot path, where a pydantic instance costs several times more. Treat them as values.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from dsml.types import AssistantTurn, ToolCall


@dataclass(slots=True)
class ReasoningDelta:
    text: str


@dataclass(slots=True)
class ContentDelta:
    text: str


@dataclass(slots=True)
class ToolCallStarted:
    index: int
    id: str
    name: str


@dataclass(slots=True)
class ToolCallArgumentDelta:
    """Raw text of parameter `parameter` as it arrives: a string value itself when `string`,
    else JSON text (decoded once the parameter is complete)."""

    index: int
    parameter: str
    text: str
    string: bool


@dataclass(slots=True)
class ToolCallFinished:
    """`call` holds the validated arguments; `error` (for the model) when the call failed."""

    index: int
    id: str
    name: str | None
    call: ToolCall | None
    error: str | None


@dataclass(slots=True)
class TurnEnded:
    """The turn is complete: at EOS, or when the stream closed (`reason`)."""

    turn: AssistantTurn
    reason: Literal["eos", "end_of_text"]


Event = (
    ReasoningDelta
    | ContentDelta
    | ToolCallStarted
    | ToolCallArgumentDelta
    | ToolCallFinished
    | TurnEnded
)
