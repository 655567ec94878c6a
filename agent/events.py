"""The one set of typed events an agent run produces.

The same events go, in this order, to the session journal (`events.jsonl`, fsync'd), to the API's
async iterator, to the terminal UI and to `dsv4 run --json`. Every event is a pydantic model with a
`type` tag, so a JSON line parses back with `parse_event`. `schema_version` is written on every
line so that a journal can be read on its own; it changes only when a field changes meaning or
goes away (adding event types or optional fields keeps it).
"""

from __future__ import annotations

import time
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

SCHEMA_VERSION = 1


class RunStatus(StrEnum):
    """Why a run stopped."""

    submitted = "submitted"  # the model called the submit tool
    answered = "answered"  # the model answered without a tool call
    step_limit = "step_limit"
    token_limit = "token_limit"  # generated tokens over the whole session
    time_limit = "time_limit"
    cost_limit = "cost_limit"
    context_limit = "context_limit"  # the backend's context window is (nearly) full
    format_error = "format_error"  # N consecutive malformed turns
    cancelled = "cancelled"  # cancel(): state kept, the session can continue
    backend_error = "backend_error"  # the model could not be reached or failed
    error = "error"  # a bug or an unexpected failure inside the agent

    @property
    def is_limit(self) -> bool:
        return self in _LIMITS


_LIMITS = {
    RunStatus.step_limit,
    RunStatus.token_limit,
    RunStatus.time_limit,
    RunStatus.cost_limit,
    RunStatus.context_limit,
}


class Usage(BaseModel):
    """Token and money accounting of one step."""

    prompt_tokens: int = 0
    """Tokens of the prompt this step's generation read (as OpenAI counts them: everything
    before the completion, cached or not)."""
    cached_tokens: int = 0
    """Of those, tokens served from the backend's cache; `prompt_tokens - cached_tokens` were
    processed this step (with append-only memory: only the new suffix)."""
    generated_tokens: int = 0
    context_tokens: int = 0
    """Tokens in the backend's context after this step."""
    cache_bytes: int = 0
    """Bytes the backend's cache holds after this step (0 when unknown, e.g. over HTTP)."""
    cost: float = 0.0
    """Money spent on this step, in the price table's currency (0 when the model has no price)."""


class Totals(BaseModel):
    """What a run (or a whole session, when resumed) used."""

    steps: int = 0
    prompt_tokens: int = 0
    cached_tokens: int = 0
    generated_tokens: int = 0
    context_tokens: int = 0
    cache_bytes: int = 0
    cost: float = 0.0
    duration_s: float = 0.0
    tool_calls: int = 0
    tool_errors: int = 0
    format_errors: int = 0


class _Event(BaseModel):
    model_config = ConfigDict(extra="forbid")

    schema_version: int = SCHEMA_VERSION
    session_id: str = ""
    seq: int = 0
    """Position in the session's journal, from 0; gap-free."""
    time: float = Field(default_factory=time.time)
    step: int = 0
    """The step this event belongs to (1-based; 0 before the first step)."""


class RunStarted(_Event):
    type: Literal["run_started"] = "run_started"
    task: str
    backend: str
    model: str
    resumed: bool = False
    note: str = ""
    """Something the user should know up front (e.g. the model is an untrained stand-in)."""


class StepStarted(_Event):
    type: Literal["step_started"] = "step_started"
    prompt_tokens: int
    """Tokens of new prompt text this step sends (the suffix only)."""
    context_tokens: int
    """Tokens already in the backend's context before this step."""


class MessageAdded(_Event):
    """A message joined the conversation (the task, an assistant turn, a tool result).

    The journal's `message` events, in order, are the conversation; `raw` keeps the exact text an
    assistant turn was written as, which is what the model's cache holds.
    """

    type: Literal["message"] = "message"
    message: dict[str, Any]
    raw: str | None = None


class ReasoningDelta(_Event):
    type: Literal["reasoning_delta"] = "reasoning_delta"
    text: str


class ContentDelta(_Event):
    type: Literal["content_delta"] = "content_delta"
    text: str


class ToolCallStarted(_Event):
    type: Literal["tool_call_started"] = "tool_call_started"
    index: int
    call_id: str
    name: str


class ToolCallArgumentDelta(_Event):
    type: Literal["tool_call_argument_delta"] = "tool_call_argument_delta"
    index: int
    call_id: str
    parameter: str
    text: str


class ToolCallFinished(_Event):
    type: Literal["tool_call_finished"] = "tool_call_finished"
    index: int
    call_id: str
    name: str
    arguments: dict[str, Any] | None = None
    error: str | None = None
    """Why the call is malformed (the model is told and may correct it); None when valid."""


class ApprovalRequested(_Event):
    type: Literal["approval_requested"] = "approval_requested"
    request_id: str
    call_id: str
    tool: str
    arguments: dict[str, Any]
    reason: str
    """Which policy or rule asks for approval."""


class ApprovalResolved(_Event):
    type: Literal["approval_resolved"] = "approval_resolved"
    request_id: str
    call_id: str
    approved: bool
    by: Literal["policy", "rule", "user"]
    reason: str = ""


class ToolOutput(_Event):
    type: Literal["tool_output"] = "tool_output"
    call_id: str
    tool: str
    text: str
    """What the model reads."""
    data: dict[str, Any] = Field(default_factory=dict)
    """Structured result for UIs (exit code, diff, …)."""
    is_error: bool = False
    duration_s: float = 0.0


class StepFinished(_Event):
    type: Literal["step_finished"] = "step_finished"
    usage: Usage
    finish_reason: str
    """The backend's reason: stop, length or cancelled."""


class ErrorEvent(_Event):
    type: Literal["error"] = "error"
    message: str
    where: str = ""
    fatal: bool = False
    """True when the run stops because of it."""


class RunFinished(_Event):
    type: Literal["run_finished"] = "run_finished"
    status: RunStatus
    summary: str
    totals: Totals


Event = Annotated[
    RunStarted
    | StepStarted
    | MessageAdded
    | ReasoningDelta
    | ContentDelta
    | ToolCallStarted
    | ToolCallArgumentDelta
    | ToolCallFinished
    | ApprovalRequested
    | ApprovalResolved
    | ToolOutput
    | StepFinished
    | ErrorEvent
    | RunFinished,
    Field(discriminator="type"),
]

_ADAPTER: TypeAdapter[Event] = TypeAdapter(Event)


def parse_event(data: str | bytes | dict[str, Any]) -> Event:
    """One event from a JSON line or a dict (as written by `event.model_dump_json()`)."""
    if isinstance(data, dict):
        return _ADAPTER.validate_python(data)
    return _ADAPTER.validate_json(data)


__all__ = [
    "SCHEMA_VERSION",
    "ApprovalRequested",
    "ApprovalResolved",
    "ContentDelta",
    "ErrorEvent",
    "Event",
    "MessageAdded",
    "ReasoningDelta",
    "RunFinished",
    "RunStarted",
    "RunStatus",
    "StepFinished",
    "StepStarted",
    "ToolCallArgumentDelta",
    "ToolCallFinished",
    "ToolCallStarted",
    "ToolOutput",
    "Totals",
    "Usage",
    "parse_event",
]
