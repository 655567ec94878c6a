"""The conversation as typed values: messages, tool specs, tool calls, parsed assistant turns."""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

Task = Literal["action", "query", "authority", "domain", "title", "read_url"]


class ToolSpec(BaseModel):
    """A tool as the model sees it: the OpenAI `function` object (JSON-schema parameters)."""

    # Extra keys (e.g. "strict") are kept: the prompt shows the object exactly as given.
    model_config = ConfigDict(extra="allow")

    name: str
    description: str = ""
    parameters: dict[str, Any] = Field(default_factory=lambda: {"type": "object", "properties": {}})

    @classmethod
    def coerce(cls, value: ToolSpec | dict[str, Any]) -> ToolSpec:
        """Accept a ToolSpec, a function object, or an OpenAI tool `{"type": "function", ...}`."""
        if isinstance(value, ToolSpec):
            return value
        if "function" in value and "name" not in value:
            value = value["function"]
        return cls.model_validate(value)

    def function_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


class ToolCall(BaseModel):
    """One call the assistant made: `arguments` are the decoded values (strings stay strings)."""

    id: str = ""
    name: str
    arguments: dict[str, Any] = Field(default_factory=dict)

    def to_openai(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "type": "function",
            "function": {
                "name": self.name,
                "arguments": json.dumps(self.arguments, ensure_ascii=False),
            },
        }


class SystemMessage(BaseModel):
    role: Literal["system"] = "system"
    content: str = ""
    tools: list[ToolSpec] | None = None
    response_format: dict[str, Any] | None = None


class UserMessage(BaseModel):
    role: Literal["user"] = "user"
    content: str = ""
    task: Task | None = None
    """A quick-instruction task marker (V4): the reply is a classification, not a turn."""


class DeveloperMessage(BaseModel):
    role: Literal["developer"] = "developer"
    content: str
    tools: list[ToolSpec] | None = None
    response_format: dict[str, Any] | None = None


class LatestReminderMessage(BaseModel):
    """Date, place, client... rendered with the `<｜latest_reminder｜>` marker."""

    role: Literal["latest_reminder"] = "latest_reminder"
    content: str


class AssistantMessage(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str = ""
    reasoning_content: str | None = None
    tool_calls: list[ToolCall] = Field(default_factory=list)
    wo_eos: bool = False
    """Render without the closing EOS (a turn the model is still writing)."""


class ToolMessage(BaseModel):
    role: Literal["tool"] = "tool"
    tool_call_id: str = ""
    content: str = ""


Message = Annotated[
    SystemMessage
    | UserMessage
    | DeveloperMessage
    | LatestReminderMessage
    | AssistantMessage
    | ToolMessage,
    Field(discriminator="role"),
]
_MESSAGES = TypeAdapter(list[Message])


class CallError(BaseModel):
    """A tool call that could not be accepted; `message` is written for the model to act on."""

    index: int
    id: str
    name: str | None
    kind: Literal[
        "unknown_tool",
        "invalid_arguments",
        "bad_json",
        "duplicate_parameter",
        "malformed",
        "truncated",
    ]
    message: str
    offset: int
    arguments: dict[str, Any] | None = None
    """What could be decoded, for display (never to be executed)."""


class Repair(BaseModel):
    """A deviation from the reference format that tolerant parsing accepted."""

    kind: str
    offset: int
    detail: str


class AssistantTurn(BaseModel):
    """What the model wrote in one turn, parsed."""

    reasoning_content: str | None = None
    content: str = ""
    tool_calls: list[ToolCall] = Field(default_factory=list)
    errors: list[CallError] = Field(default_factory=list)
    repairs: list[Repair] = Field(default_factory=list)
    truncated: bool = False
    """The text ended before the turn did (no EOS, or a block cut off by the token limit)."""

    def to_message(self) -> AssistantMessage:
        return AssistantMessage(
            content=self.content,
            reasoning_content=self.reasoning_content,
            tool_calls=self.tool_calls,
        )


def from_openai_messages(messages: list[dict[str, Any]]) -> list[Message]:
    """OpenAI chat-completions message dicts (plus V4's roles and fields) to typed messages."""
    out: list[dict[str, Any]] = []
    for msg in messages:
        msg = dict(msg)
        if msg.get("content") is None:
            msg["content"] = ""
        elif isinstance(msg["content"], list):
            msg["content"] = _text_of_parts(msg["content"])
        if msg.get("tools"):
            msg["tools"] = [ToolSpec.coerce(t) for t in msg["tools"]]
        if msg.get("tool_calls"):
            msg["tool_calls"] = [_call_from_openai(tc) for tc in msg["tool_calls"]]
        elif "tool_calls" in msg:
            msg["tool_calls"] = []
        out.append(msg)
    return _MESSAGES.validate_python(out)


def to_openai_messages(messages: list[Message]) -> list[dict[str, Any]]:
    """Typed messages to OpenAI chat-completions dicts (reasoning in `reasoning_content`)."""
    return [message_to_openai(m) for m in messages]


def message_to_openai(msg: BaseModel) -> dict[str, Any]:
    out = msg.model_dump(mode="json", exclude_none=True, exclude={"tools", "tool_calls"})
    if isinstance(msg, AssistantMessage):
        if msg.tool_calls:
            out["tool_calls"] = [tc.to_openai() for tc in msg.tool_calls]
        if not msg.wo_eos:
            out.pop("wo_eos")
    elif getattr(msg, "tools", None):
        out["tools"] = [{"type": "function", "function": t.function_dict()} for t in msg.tools]
    return out


def _call_from_openai(tc: dict[str, Any] | ToolCall) -> ToolCall:
    if isinstance(tc, ToolCall):
        return tc
    fn = tc.get("function", tc)
    args = fn.get("arguments", {})
    return ToolCall(id=tc.get("id") or "", name=fn["name"], arguments=decode_arguments(args))


def decode_arguments(args: str | dict[str, Any]) -> dict[str, Any]:
    """OpenAI `arguments` (a JSON string or a dict) as a dict.

    Text that is not a JSON object becomes `{"arguments": text}`, which is how the V4 reference
    encoder renders it (one string parameter named `arguments`).
    """
    if isinstance(args, dict):
        return args
    try:
        value = json.loads(args)
    except (TypeError, ValueError):
        return {"arguments": args}
    return value if isinstance(value, dict) else {"arguments": args}


def _text_of_parts(parts: list[dict[str, Any]]) -> str:
    return "\n\n".join(
        p.get("text", "") if p.get("type") == "text" else f"[Unsupported {p.get('type')}]"
        for p in parts
    )
