"""DSML inside vLLM's OpenAI server: prompt rendering, reasoning parser and tool parser.

Registered under one name, ``dsv4_dsml``, through vLLM's own plugin registries:

- tokenizer mode and renderer ``dsv4_dsml``: chat messages (OpenAI shape, request tools attached
  to the system message) are rendered by `dsml.encode_messages`, the byte-exact V4 encoder;
- reasoning parser ``dsv4_dsml``: the text before ``</think>`` is ``reasoning_content``;
- tool parser ``dsv4_dsml``: DSML tool-call blocks in the rest become OpenAI ``tool_calls``
  (`dsml.parse_completion` / `dsml.StreamParser`, validated against the request's tools); when
  streaming, a call's JSON arguments go out in fragments as its parameters arrive.

The thinking mode follows vLLM's DeepSeek convention: ``chat_template_kwargs={"thinking": false}``
(or ``enable_thinking``) selects chat mode, thinking otherwise.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from vllm.entrypoints.generate.base.protocol import (
    DeltaFunctionCall,
    DeltaMessage,
    DeltaToolCall,
    ExtractedToolCallInformation,
    FunctionCall,
    ToolCall,
)
from vllm.reasoning import ReasoningParser, ReasoningParserManager
from vllm.tool_parsers.abstract_tool_parser import ToolParser, ToolParserManager

import dsml
from dsml.events import ContentDelta, ToolCallArgumentDelta, ToolCallFinished, ToolCallStarted
from dsml.tokens import BOS, EOS, THINK_END, THINK_START

NAME = "dsv4_dsml"

__all__ = [
    "NAME",
    "DsmlReasoningParser",
    "DsmlTokenizer",
    "DsmlToolParser",
    "register",
    "thinking_mode_of",
]


def thinking_mode_of(chat_template_kwargs: dict[str, Any] | None) -> str:
    kwargs = chat_template_kwargs or {}
    for key in ("thinking", "enable_thinking"):
        if key in kwargs:
            return "thinking" if kwargs[key] else "chat"
    return "thinking"


def _request_tools(request: Any) -> list[dict[str, Any]]:
    tools = getattr(request, "tools", None) or []
    return [t.model_dump(exclude_none=True) if hasattr(t, "model_dump") else t for t in tools]


# ---- prompt rendering ------------------------------------------------------------------------


def render_chat(
    messages: list[dict[str, Any]],
    tools: list[dict[str, Any]] | None,
    chat_template_kwargs: dict[str, Any],
) -> str:
    """OpenAI chat messages (+ request tools) -> the V4 prompt text, ending in the transition."""
    messages = [dict(m) for m in messages]
    if tools:
        at = next((i for i, m in enumerate(messages) if m.get("role") == "system"), None)
        if at is None:
            messages.insert(0, {"role": "system", "content": ""})
            at = 0
        messages[at]["tools"] = tools
    return dsml.encode_messages(
        messages,
        thinking_mode_of(chat_template_kwargs),
        reasoning_effort=chat_template_kwargs.get("reasoning_effort"),
    )


class DsmlTokenizer:
    """vLLM tokenizer mode ``dsv4_dsml``: the checkpoint's tokenizer.json, chat rendered by DSML."""

    @classmethod
    def from_pretrained(cls, path: str | Path, *args: Any, **kwargs: Any):
        from transformers import TokenizersBackend
        from vllm.tokenizers.hf import get_cached_tokenizer

        kwargs = {k: v for k, v in kwargs.items() if k in ("revision", "truncation_side")}
        base = TokenizersBackend.from_pretrained(
            str(path), bos_token=BOS, eos_token=EOS, pad_token=EOS, **kwargs
        )
        return get_cached_tokenizer(_with_dsml_chat(base))


def _with_dsml_chat(tokenizer):
    wrapped = copy.copy(tokenizer)
    added_vocab = tokenizer.get_added_vocab()

    class _DsmlChatTokenizer(tokenizer.__class__):  # type: ignore[misc,name-defined]
        def apply_chat_template(self, messages, tools=None, **kwargs):
            kwargs = {**kwargs, **(kwargs.get("chat_template_kwargs") or {})}
            prompt = render_chat(list(messages), tools, kwargs)
            if kwargs.get("tokenize", True):
                return self.encode(prompt, add_special_tokens=False)
            return prompt

        def get_added_vocab(self) -> dict[str, int]:
            return added_vocab.copy()

        def __reduce__(self):
            return _with_dsml_chat, (tokenizer,)

    _DsmlChatTokenizer.__name__ = f"Dsml{tokenizer.__class__.__name__}"
    wrapped.__class__ = _DsmlChatTokenizer
    return wrapped


# ---- reasoning ---------------------------------------------------------------------------------


class DsmlReasoningParser(ReasoningParser):
    """Reasoning is what the model writes before ``</think>`` (thinking mode only)."""

    def __init__(self, tokenizer, *args: Any, **kwargs: Any) -> None:
        super().__init__(tokenizer, *args, **kwargs)
        self.thinking = thinking_mode_of(kwargs.get("chat_template_kwargs")) == "thinking"
        self.end_id = self.vocab.get(THINK_END)
        if self.end_id is None:
            raise ValueError(f"the tokenizer has no single token for {THINK_END!r}")

    @property
    def reasoning_start_str(self) -> str:
        return THINK_START

    @property
    def reasoning_end_str(self) -> str:
        return THINK_END

    def is_reasoning_end(self, input_ids: Sequence[int]) -> bool:
        return not self.thinking or self.end_id in input_ids

    def extract_content_ids(self, input_ids: list[int]) -> list[int]:
        if self.end_id not in input_ids:
            return [] if self.thinking else list(input_ids)
        return input_ids[input_ids.index(self.end_id) + 1 :]

    def extract_reasoning(self, model_output: str, request: Any) -> tuple[str | None, str | None]:
        if not self.thinking:
            return None, model_output
        reasoning, sep, content = model_output.partition(THINK_END)
        return reasoning, (content if sep else None)

    def extract_reasoning_streaming(
        self,
        previous_text: str,
        current_text: str,
        delta_text: str,
        previous_token_ids: Sequence[int],
        current_token_ids: Sequence[int],
        delta_token_ids: Sequence[int],
    ) -> DeltaMessage | None:
        if not self.thinking or THINK_END in previous_text:
            return DeltaMessage(content=delta_text)
        if THINK_END not in current_text:
            return DeltaMessage(reasoning=delta_text)
        before, _, after = current_text.partition(THINK_END)
        reasoning = before[len(previous_text) :]
        return DeltaMessage(reasoning=reasoning or None, content=after or None)


# ---- tool calls --------------------------------------------------------------------------------


def _openai_call(call: dsml.ToolCall) -> ToolCall:
    return ToolCall(
        id=call.id,
        function=FunctionCall(
            name=call.name, arguments=json.dumps(call.arguments, ensure_ascii=False)
        ),
    )


class _ArgumentStream:
    """One call's arguments as JSON text, sent as its DSML parameters arrive.

    The fragments are a prefix of ``json.dumps(arguments)`` of the validated call: string
    values are escaped piece by piece (JSON escapes one character at a time), a non-string
    value is sent re-serialised once complete, and the call's end sends the rest (the last
    value, ``}``). A value that is not JSON stops the stream; its call fails validation.
    """

    def __init__(self) -> None:
        self.sent = ""
        self.param: str | None = None
        self.string = True
        self.raw = ""  # the current non-string value's text
        self.held = False

    def feed(self, parameter: str, text: str, string: bool) -> str:
        if self.held:
            return ""
        piece = ""
        if parameter != self.param:
            if self.param is not None:
                if self.string:
                    piece = '"'
                else:
                    try:
                        piece = json.dumps(json.loads(self.raw), ensure_ascii=False)
                    except ValueError:
                        self.held = True
                        return ""
            opener = "{" if self.param is None else ", "
            key = json.dumps(parameter, ensure_ascii=False)
            piece += f"{opener}{key}: " + ('"' if string else "")
            self.param, self.string, self.raw = parameter, string, ""
        if string:
            piece += json.dumps(text, ensure_ascii=False)[1:-1]
        else:
            self.raw += text
        self.sent += piece
        return piece

    def finish(self, arguments: dict[str, Any]) -> str:
        final = json.dumps(arguments, ensure_ascii=False)
        rest = final[len(self.sent) :] if final.startswith(self.sent) else ""
        self.sent = final
        return rest


class DsmlToolParser(ToolParser):
    """DSML tool-call blocks in the content -> OpenAI tool calls."""

    # DSML calls are not JSON: vLLM's JSON-schema forcing for "required"/named tools does not apply.
    supports_required_and_named = False

    def __init__(self, tokenizer, tools=None) -> None:
        super().__init__(tokenizer, tools)
        self._stream: dsml.StreamParser | None = None
        self._arguments: dict[int, _ArgumentStream] = {}

    def adjust_request(self, request):
        # DSML markers and EOS are special tokens; the parser must see them in the text.
        request.skip_special_tokens = False
        return request

    def extract_tool_calls(self, model_output: str, request: Any) -> ExtractedToolCallInformation:
        turn = dsml.parse_completion(model_output, "chat", tools=_request_tools(request) or None)
        calls = [_openai_call(c) for c in turn.tool_calls]
        return ExtractedToolCallInformation(
            tools_called=bool(calls), tool_calls=calls, content=turn.content or None
        )

    def extract_tool_calls_streaming(
        self,
        previous_text: str,
        current_text: str,
        delta_text: str,
        previous_token_ids: Sequence[int],
        current_token_ids: Sequence[int],
        delta_token_ids: Sequence[int],
        request: Any,
    ) -> DeltaMessage | None:
        if self._stream is None:
            self._stream = dsml.StreamParser("chat", tools=_request_tools(request) or None)
        content: list[str] = []
        calls: list[DeltaToolCall] = []

        def add_arguments(index: int, text: str) -> None:
            if not text:
                return
            last = calls[-1] if calls else None
            if last is not None and last.index == index:  # one delta per call and chunk
                last.function.arguments = (last.function.arguments or "") + text
            else:
                calls.append(DeltaToolCall(index=index, function=DeltaFunctionCall(arguments=text)))

        for event in self._stream.feed(delta_text):
            if isinstance(event, ContentDelta):
                content.append(event.text)
            elif isinstance(event, ToolCallStarted):
                self._arguments[event.index] = _ArgumentStream()
                calls.append(
                    DeltaToolCall(
                        index=event.index,
                        id=event.id,
                        type="function",
                        function=DeltaFunctionCall(name=event.name),
                    )
                )
            elif isinstance(event, ToolCallArgumentDelta):
                stream = self._arguments[event.index]
                add_arguments(event.index, stream.feed(event.parameter, event.text, event.string))
            elif isinstance(event, ToolCallFinished) and event.call is not None:
                add_arguments(
                    event.index, self._arguments[event.index].finish(event.call.arguments)
                )
        if not content and not calls:
            return None
        return DeltaMessage(content="".join(content) or None, tool_calls=calls)


# ---- registration ------------------------------------------------------------------------------

_registered = False


def register() -> None:
    """Registers the tokenizer mode, renderer, reasoning and tool parsers; idempotent."""
    global _registered
    if _registered:
        return
    from vllm.renderers.registry import RENDERER_REGISTRY
    from vllm.tokenizers.registry import TokenizerRegistry

    TokenizerRegistry.tokenizers[NAME] = (__name__, "DsmlTokenizer")
    # vLLM's DeepSeek-V4 renderer only calls the tokenizer's apply_chat_template: ours.
    RENDERER_REGISTRY.renderers[NAME] = ("vllm.renderers.deepseek_v4", "DeepseekV4Renderer")
    ReasoningParserManager.register_module(NAME, module=DsmlReasoningParser)
    ToolParserManager.register_module(NAME, module=DsmlToolParser)
    _registered = True
