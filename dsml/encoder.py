"""Conversation -> prompt text, byte-identical to DeepSeek's reference `encode_messages`.

Messages are first normalised to the reference's dict shape ("wire" dicts), then each message is
rendered knowing its neighbours, as the format requires: a user turn is followed by the
`<｜Assistant｜>` transition only where the model speaks next, and earlier reasoning may be
dropped depending on what comes later. `render_suffix` builds on that to give agents the text
to append to a prompt already in the model's cache.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Any

from pydantic import BaseModel

from dsml.dialects import RESPONSE_FORMAT, V4, Dialect
from dsml.errors import AppendOnlyError, EncodeError
from dsml.tokens import ASSISTANT, BOS, DSML, EOS, LATEST_REMINDER, THINK_END, THINK_START, USER
from dsml.types import ToolCall, ToolSpec, decode_arguments, message_to_openai

Wire = dict[str, Any]
MessageLike = BaseModel | dict[str, Any]
_THINKING_MODES = ("thinking", "chat")
_ROLES = ("system", "user", "developer", "latest_reminder", "assistant", "tool")


def encode_messages(
    messages: Sequence[MessageLike],
    thinking_mode: str,
    *,
    context: Sequence[MessageLike] | None = None,
    drop_thinking: bool = True,
    add_default_bos_token: bool = True,
    reasoning_effort: str | None = None,
    dialect: Dialect = V4,
) -> str:
    """Render `messages` as the prompt text the model reads.

    Named and called as in DeepSeek's reference encoder. `messages` are OpenAI-style dicts
    (tools on the system or developer message, `reasoning_content`, `tool` messages with
    `tool_call_id`, call arguments as a JSON string or a dict) or `dsml` message models.
    `context` is an earlier part of the conversation that is NOT rendered, but is taken into
    account (tool-result order, dropped reasoning, transitions).
    """
    if thinking_mode not in _THINKING_MODES:
        raise EncodeError(f"thinking_mode must be 'thinking' or 'chat', got {thinking_mode!r}")
    if reasoning_effort not in dialect.efforts:
        raise EncodeError(
            f"reasoning_effort {reasoning_effort!r} is not defined by {dialect.name}; "
            f"use one of {list(dialect.efforts)}"
        )
    ctx = _merge_tool_results([to_wire(m) for m in context or ()], dialect)
    new = _merge_tool_results([to_wire(m) for m in messages], dialect)
    if dialect.tool_results == "user_blocks":
        _order_tool_results(ctx + new)
    full = ctx + new
    prompt = BOS if add_default_bos_token and not ctx else ""

    drop = drop_thinking
    if dialect.tools_keep_reasoning and any(m.get("tools") for m in full):
        drop = False  # a conversation with tools keeps all reasoning (append-only prompts)
    thinking = thinking_mode == "thinking"
    if thinking and drop:
        full = _drop_thinking(full)
        start = len(_drop_thinking(ctx))
    else:
        start = len(ctx)

    renderer = _Renderer(full, thinking, drop, reasoning_effort, dialect)
    return prompt + "".join(renderer.render(i) for i in range(start, len(full)))


def render_suffix(
    history: Sequence[MessageLike],
    new: Sequence[MessageLike],
    thinking_mode: str,
    **encoder_kwargs: Any,
) -> str:
    """The text to append to `encode_messages(history)` to obtain `encode_messages(history+new)`.

    Raises `AppendOnlyError` when the format rewrites earlier text instead (an earlier turn's
    reasoning dropped, a transition removed, a user turn that the new messages join). With
    tools present and `history` ending at a complete turn (an assistant message, or a
    user/tool turn followed by the assistant's reply in `new`), the format is append-only and
    this never raises.
    """
    if history and _append_only_by_construction(history, new, thinking_mode, encoder_kwargs):
        # Render only the new messages, in the context of the history: linear in `new`
        # for the rendering, however long the task has grown.
        return encode_messages(new, thinking_mode, context=history, **encoder_kwargs)
    old = encode_messages(history, thinking_mode, **encoder_kwargs)
    full = encode_messages([*history, *new], thinking_mode, **encoder_kwargs)
    if full.startswith(old):
        return full[len(old) :]
    pos = next((i for i, (a, b) in enumerate(zip(old, full, strict=False)) if a != b), len(full))
    raise AppendOnlyError(
        f"the new messages change the already rendered prompt at character {pos}: "
        f"{old[pos : pos + 60]!r} would become {full[pos : pos + 60]!r}. Usual causes: without "
        "tools, a new user turn drops earlier reasoning (give the conversation its tools or "
        "pass drop_thinking=False); a user or tool message right after a user/tool turn joins "
        "that turn (send them in one batch, before the model answers).",
        position=pos,
    )


def _append_only_by_construction(
    history: Sequence[MessageLike], new: Sequence[MessageLike], mode: str, kw: dict[str, Any]
) -> bool:
    """Whether the format guarantees that `history` renders the same with `new` after it.

    True when no earlier reasoning can be dropped (chat mode, drop_thinking=False, or tools
    present in a dialect that then keeps reasoning), the dialect writes a turn's transition
    only where the model speaks next, and `history` ends at a turn boundary: its last message
    is an assistant turn, or `new` opens with one (or a latest_reminder), so no user turn is
    joined or loses its transition."""
    dialect = kw.get("dialect", V4)
    if "context" in kw or dialect.transition != "where_model_speaks":
        return False
    keeps_reasoning = (
        mode == "chat"
        or not kw.get("drop_thinking", True)
        or (dialect.tools_keep_reasoning and any(_field(m, "tools") for m in (*history, *new)))
    )
    return keeps_reasoning and (
        _field(history[-1], "role") == "assistant"
        or (bool(new) and _field(new[0], "role") in ("assistant", "latest_reminder"))
    )


def _field(msg: MessageLike, name: str) -> Any:
    return msg.get(name) if isinstance(msg, dict) else getattr(msg, name, None)


# --------------------------------------------------------------------------- normalisation


def to_wire(msg: MessageLike) -> Wire:
    """A message as the reference encoder's dict: function-dict tools, name/arguments calls."""
    if isinstance(msg, BaseModel):
        msg = message_to_openai(msg)
    elif not isinstance(msg, dict):
        raise EncodeError(f"a message must be a dict or a dsml message model, got {msg!r}")
    wire = dict(msg)
    if "role" not in wire:
        raise EncodeError(f"message without a role: {msg!r}")
    if wire.get("tools"):
        wire["tools"] = [_function_dict(t) for t in wire["tools"]]
    if wire.get("tool_calls"):
        wire["tool_calls"] = [_call_dict(tc) for tc in wire["tool_calls"]]
    return wire


def _function_dict(tool: ToolSpec | dict[str, Any]) -> dict[str, Any]:
    if isinstance(tool, ToolSpec):
        return tool.function_dict()
    return tool["function"] if "function" in tool and "name" not in tool else tool


def _call_dict(tc: ToolCall | dict[str, Any]) -> dict[str, Any]:
    if isinstance(tc, ToolCall):
        return {"id": tc.id, "name": tc.name, "arguments": tc.arguments}
    fn = tc.get("function", tc)
    return {
        "id": tc.get("id") or fn.get("id") or "",
        "name": fn["name"],
        "arguments": fn.get("arguments", {}),
    }


def _merge_tool_results(messages: list[Wire], dialect: Dialect) -> list[Wire]:
    """V4 has no tool role: consecutive tool results (and a user text after them) become ONE
    user turn of blocks. Consecutive plain user messages join the same way."""
    if dialect.tool_results != "user_blocks":
        return messages
    merged: list[Wire] = []
    for msg in messages:
        role = msg["role"]
        prev = merged[-1] if merged else None
        joinable = prev is not None and prev["role"] == "user" and "blocks" in prev
        if role == "tool":
            block = ("tool_result", msg.get("tool_call_id") or "", _text(msg.get("content")))
            if joinable:
                prev["blocks"].append(block)
            else:
                merged.append({"role": "user", "blocks": [block]})
        elif role == "user":
            block = ("text", "", _text(msg.get("content")))
            if joinable and prev.get("task") is None:
                prev["blocks"].append(block)
            else:
                merged.append({**msg, "blocks": [block]})
        else:
            merged.append(msg)
    return merged


def _order_tool_results(messages: list[Wire]) -> None:
    """Sort each user turn's tool results into the order of the calls that they answer."""
    order: dict[str, int] = {}
    for msg in messages:
        if msg["role"] == "assistant" and msg.get("tool_calls"):
            order = {tc["id"]: i for i, tc in enumerate(msg["tool_calls"]) if tc["id"]}
        elif msg["role"] == "user" and "blocks" in msg and order:
            results = [b for b in msg["blocks"] if b[0] == "tool_result"]
            if len(results) > 1:
                ranked = iter(sorted(results, key=lambda b: order.get(b[1], 0)))
                msg["blocks"] = [
                    next(ranked) if b[0] == "tool_result" else b for b in msg["blocks"]
                ]


def _drop_thinking(messages: list[Wire]) -> list[Wire]:
    """Before the last user turn: assistant turns lose their reasoning, developer turns go."""
    last = _last_user_index(messages)
    out = []
    for i, msg in enumerate(messages):
        if i >= last or msg["role"] in ("user", "system", "tool", "latest_reminder"):
            out.append(msg)
        elif msg["role"] == "assistant":
            out.append({k: v for k, v in msg.items() if k != "reasoning_content"})
    return out


def _last_user_index(messages: list[Wire]) -> int:
    for i in range(len(messages) - 1, -1, -1):
        if messages[i]["role"] in ("user", "developer"):
            return i
    return -1


def _text(content: Any) -> str:
    if content is None:
        return ""
    if isinstance(content, list):  # content parts: text kept, anything else named
        return "\n\n".join(
            p.get("text", "") if p.get("type") == "text" else f"[Unsupported {p.get('type')}]"
            for p in content
        )
    return content


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


# --------------------------------------------------------------------------- rendering


class _Renderer:
    """Renders message `i` of a normalised conversation, looking at its neighbours."""

    def __init__(
        self, messages: list[Wire], thinking: bool, drop: bool, effort: str | None, d: Dialect
    ) -> None:
        self.messages = messages
        self.thinking = thinking
        self.drop = drop
        self.effort = effort
        self.d = d
        self.last_user = _last_user_index(messages)

    def render(self, i: int) -> str:
        msg = self.messages[i]
        role = msg["role"]
        out = ""
        if i == 0 and self.thinking and self.effort in self.d.effort_texts:
            out += self.d.effort_texts[self.effort]
        method = getattr(self, f"_{role}", None) if role in _ROLES else None
        if method is None:
            raise EncodeError(f"message {i} has role {role!r}, which {self.d.name} cannot render")
        out += method(i, msg)
        if self.d.transition == "where_model_speaks":
            out += self._transition(i, msg)
        return out

    # Each role's own text.

    def _system(self, i: int, msg: Wire) -> str:
        return (msg.get("content") or "") + self._extras(msg)

    def _developer(self, i: int, msg: Wire) -> str:
        if not msg.get("content"):
            raise EncodeError(f"developer message {i} has no content; a developer turn needs text")
        if self.d.developer_layout == "content_then_tools":
            return USER + msg["content"] + self._extras(msg)
        body = self._extras(msg) + f"\n\n# The user's message is: {msg['content']}"
        return USER + body + self._assistant_opening(i)

    def _user(self, i: int, msg: Wire) -> str:
        if "blocks" in msg:
            return USER + "\n\n".join(
                f"<tool_result>{text}</tool_result>" if kind == "tool_result" else text
                for kind, _, text in msg["blocks"]
            )
        text = USER + _text(msg.get("content"))
        if self.d.transition == "after_every_user":
            text += self._assistant_opening(i)
        return text

    def _latest_reminder(self, i: int, msg: Wire) -> str:
        if not self.d.has_latest_reminder:
            raise EncodeError(f"{self.d.name} has no latest_reminder role (message {i})")
        return LATEST_REMINDER + (msg.get("content") or "")

    def _tool(self, i: int, msg: Wire) -> str:
        # Only dialects with `function_results` get here; the others merged tool messages.
        first = i
        while first > 0 and self.messages[first - 1]["role"] == "tool":
            first -= 1
        caller = self.messages[first - 1] if first > 0 else None
        calls = (caller or {}).get("tool_calls") or []
        if caller is None or caller["role"] != "assistant" or len(calls) < i - first + 1:
            raise EncodeError(
                f"tool message {i} answers no call: the assistant turn before it made "
                f"{len(calls)} call(s); give one tool message per call, right after that turn"
            )
        out = "\n\n<function_results>" if i == first else ""
        out += f"\n<result>{_text(msg.get('content'))}</result>"
        if i - first + 1 == len(calls):
            out += "\n</function_results>\n\n"
            out += THINK_START if self.thinking and i >= self.last_user else THINK_END
        return out

    def _assistant(self, i: int, msg: Wire) -> str:
        reasoning = ""
        prev_task = i > 0 and self.messages[i - 1].get("task") is not None
        if self.thinking and not prev_task:
            keep = (
                i > self.last_user
                if self.d.transition == "after_every_user"
                else (not self.drop or i > self.last_user)
            )
            if keep:
                reasoning = (msg.get("reasoning_content") or "") + THINK_END
        calls = self._tool_calls(i, msg.get("tool_calls") or [])
        eos = "" if msg.get("wo_eos") else EOS
        return reasoning + (msg.get("content") or "") + calls + eos

    # Parts.

    def _extras(self, msg: Wire) -> str:
        out = ""
        if msg.get("tools"):
            schemas = "\n".join(_json(t) for t in msg["tools"])
            out += "\n\n" + self.d.tools_template.replace("{tool_schemas}", schemas)
        if msg.get("response_format"):
            out += "\n\n" + RESPONSE_FORMAT.format(schema=_json(msg["response_format"]))
        return out

    def _tool_calls(self, i: int, calls: Iterable[Wire]) -> str:
        invokes = []
        for call in calls:
            args = call["arguments"]
            decoded = decode_arguments(args)
            fell_back = not isinstance(args, dict) and decoded == {"arguments": args}
            if fell_back and not self.d.non_json_arguments_fallback:
                raise EncodeError(
                    f"assistant message {i}: arguments of call {call['name']!r} are not a JSON "
                    f"object ({args!r}); {self.d.name} requires JSON arguments"
                )
            params = "\n".join(
                f'<{DSML}parameter name="{k}" string="true">{v}</{DSML}parameter>'
                if isinstance(v, str)
                else f'<{DSML}parameter name="{k}" string="false">{_json(v)}</{DSML}parameter>'
                for k, v in decoded.items()
            )
            invokes.append(f'<{DSML}invoke name="{call["name"]}">\n{params}\n</{DSML}invoke>')
        if not invokes:
            return ""
        block = self.d.block_name
        return f"\n\n<{DSML}{block}>\n" + "\n".join(invokes) + f"\n</{DSML}{block}>"

    def _assistant_opening(self, i: int) -> str:
        think = self.thinking and i == self.last_user
        return ASSISTANT + (THINK_START if think else THINK_END)

    def _transition(self, i: int, msg: Wire) -> str:
        """V4: after a turn the model answers next, open the assistant turn (or a task)."""
        nxt = self.messages[i + 1]["role"] if i + 1 < len(self.messages) else None
        if nxt is not None and nxt not in ("assistant", "latest_reminder"):
            return ""
        task = msg.get("task")
        if task is not None:
            token = self.d.task_tokens.get(task)
            if token is None:
                raise EncodeError(
                    f"message {i} has task {task!r}; valid tasks: {sorted(self.d.task_tokens)}"
                )
            if task != "action":
                return token
            return ASSISTANT + (THINK_START if self.thinking else THINK_END) + token
        if msg["role"] not in ("user", "developer"):
            return ""
        think = self.thinking and (not self.drop or i >= self.last_user)
        return ASSISTANT + (THINK_START if think else THINK_END)
