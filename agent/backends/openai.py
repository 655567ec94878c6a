"""The `openai` backend: any OpenAI-compatible endpoint (the DeepSeek API, a vLLM server).

Two modes:
- `chat`: POST /chat/completions with the messages and tools; the answer's `reasoning_content`
  is kept on the assistant message and sent back with every later request, as DeepSeek requires
  for turns that call tools. The streamed answer is written back as DSML text (reasoning,
  `</think>`, content, the tool-call block) so that the loop parses it like any other backend.
- `completions`: POST /completions with our own DSML-rendered prompt. The session keeps the
  prompt text and only ever appends to it (the server's prefix cache reuses the rest).

Requests stream (SSE). 429 and 5xx answers, and connections that fail before any text came, are
retried with exponential backoff (Retry-After wins); other 4xx answers raise a `BackendError`
saying what the server said and what to check.
"""

from __future__ import annotations

import copy
import json
import math
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx

import dsml
from agent.backends.base import BackendError, CancelToken, Completion, StepRequest

if TYPE_CHECKING:
    from agent.config import AgentConfig
from dsml.tokens import EOS, THINK_END

STATE_FILE = "openai.json"
DEFAULT_CONTEXT_LIMIT = 131_072
_HINTS = {
    400: "the server rejected the request; check backend.model and backend.api_mode",
    401: "check the API key (DEEPSEEK_API_KEY or backend.api_key)",
    402: "the account has no balance left",
    403: "the key may not use this model or endpoint",
    404: "check backend.base_url (it usually ends in /v1) and backend.model",
    422: "the server could not read the request's parameters",
}


class OpenAIBackend:
    name = "openai"
    note = ""

    def __init__(
        self,
        *,
        base_url: str,
        model: str,
        api_key: str | None = None,
        api_mode: str = "chat",
        context_limit: int | None = None,
        max_retries: int = 4,
        retry_backoff_s: float = 1.0,
        request_timeout_s: float = 600.0,
        extra_body: dict[str, Any] | None = None,
    ) -> None:
        if api_mode not in ("chat", "completions"):
            raise ValueError(f"api_mode must be 'chat' or 'completions', got {api_mode!r}")
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.api_mode = api_mode
        self.context_limit = context_limit or DEFAULT_CONTEXT_LIMIT
        self.max_retries = max_retries
        self.retry_backoff_s = retry_backoff_s
        self.extra_body = extra_body or {}
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.client = httpx.Client(
            headers=headers, timeout=httpx.Timeout(request_timeout_s, connect=30.0)
        )

    def open_session(self) -> OpenAISession:
        return OpenAISession(self)

    def load_session(self, directory: Path) -> OpenAISession:
        state = json.loads((directory / STATE_FILE).read_text(encoding="utf-8"))
        return OpenAISession(self, prompt=state["prompt"], context_tokens=state["context_tokens"])

    def count_tokens(self, text: str) -> int:
        # The tokenizer is the server's; about 3 characters a token is what V4's gives for code.
        return math.ceil(len(text) / 3)

    def close(self) -> None:
        self.client.close()

    # ------------------------------------------------------------------ HTTP

    def stream_events(
        self, path: str, body: dict[str, Any], cancel: CancelToken
    ) -> Iterator[dict[str, Any]]:
        """POST `body` and yield the decoded SSE chunks, retrying what may be retried."""
        url = f"{self.base_url}{path}"
        attempt = 0
        while True:
            started = False
            try:
                with self.client.stream("POST", url, json=body) as response:
                    if response.status_code != 200:
                        response.read()
                        delay = self._retry_delay(response, attempt)
                        if delay is None:
                            raise BackendError(_describe(response, url))
                    else:
                        for chunk in _sse(response.iter_lines()):
                            started = True
                            yield chunk
                            if cancel.cancelled:
                                return
                        return
            except httpx.TransportError as exc:
                if started or attempt >= self.max_retries:
                    raise BackendError(
                        f"{url}: connection failed ({exc!r}) after "
                        f"{attempt + 1} attempt(s); is the server up?"
                    ) from exc
                delay = self.retry_backoff_s * 2**attempt
            attempt += 1
            if cancel.wait(delay):
                return

    def _retry_delay(self, response: httpx.Response, attempt: int) -> float | None:
        code = response.status_code
        if not (code == 429 or code >= 500) or attempt >= self.max_retries:
            return None
        after = response.headers.get("retry-after")
        try:
            return float(after) if after is not None else self.retry_backoff_s * 2**attempt
        except ValueError:
            return self.retry_backoff_s * 2**attempt


class OpenAISession:
    def __init__(self, backend: OpenAIBackend, prompt: str = "", context_tokens: int = 0) -> None:
        self.backend = backend
        self.prompt = prompt
        """completions mode: everything sent and received so far, exactly."""
        self._context_tokens = context_tokens

    def extend(
        self, request: StepRequest, on_text: Callable[[str], None], cancel: CancelToken
    ) -> Completion:
        if self.backend.api_mode == "chat":
            return self._chat(request, on_text, cancel)
        return self._complete(request, on_text, cancel)

    def fork(self) -> OpenAISession:
        return copy.copy(self)

    def save(self, directory: Path) -> None:
        (directory / STATE_FILE).write_text(
            json.dumps({"prompt": self.prompt, "context_tokens": self._context_tokens}),
            encoding="utf-8",
        )

    @property
    def context_tokens(self) -> int:
        return self._context_tokens

    @property
    def cache_bytes(self) -> int:
        return 0

    # ------------------------------------------------------------------ completions mode

    def _complete(
        self, request: StepRequest, on_text: Callable[[str], None], cancel: CancelToken
    ) -> Completion:
        body = {
            **_sampling(request),
            "model": self.backend.model,
            "prompt": self.prompt + request.prompt,
            # Keep DSML's special tokens in the text (vLLM strips them by default).
            "skip_special_tokens": False,
            **self.backend.extra_body,
        }
        text, finish, usage = "", None, {}
        for chunk in self.backend.stream_events("/completions", body, cancel):
            usage = chunk.get("usage") or usage
            for choice in chunk.get("choices") or []:
                if choice.get("text"):
                    text += choice["text"]
                    on_text(choice["text"])
                finish = choice.get("finish_reason") or finish
        finish = _finish(finish, cancel)
        if finish == "stop" and not text.endswith(EOS):
            text += EOS  # servers drop the EOS text; the prompt must still hold it
            on_text(EOS)
        self.prompt += request.prompt + text
        return self._completion(text, finish, usage, request)

    # ------------------------------------------------------------------ chat mode

    def _chat(
        self, request: StepRequest, on_text: Callable[[str], None], cancel: CancelToken
    ) -> Completion:
        messages = dsml.to_openai_messages(request.messages)
        for message in messages:
            message.pop("tools", None)  # sent once, as the request's `tools`
        body = {
            **_sampling(request),
            "model": self.backend.model,
            "messages": messages,
            **self.backend.extra_body,
        }
        if request.tools:
            body["tools"] = [{"type": "function", "function": spec} for spec in request.tools]
        thinking = request.thinking_mode == "thinking"
        writer = _DsmlWriter(on_text, thinking)
        calls: dict[int, dict[str, str]] = {}
        finish, usage = None, {}
        for chunk in self.backend.stream_events("/chat/completions", body, cancel):
            usage = chunk.get("usage") or usage
            for choice in chunk.get("choices") or []:
                delta = choice.get("delta") or {}
                if delta.get("reasoning_content"):
                    writer.reasoning(delta["reasoning_content"])
                if delta.get("content"):
                    writer.content(delta["content"])
                for tc in delta.get("tool_calls") or []:
                    call = calls.setdefault(
                        tc.get("index", len(calls)), {"id": "", "name": "", "arguments": ""}
                    )
                    fn = tc.get("function") or {}
                    call["id"] = tc.get("id") or call["id"]
                    call["name"] += fn.get("name") or ""
                    call["arguments"] += fn.get("arguments") or ""
                finish = choice.get("finish_reason") or finish
        finish = _finish(finish, cancel)
        if finish == "stop":
            writer.end([calls[i] for i in sorted(calls)])
        return self._completion(writer.text, finish, usage, request)

    def _completion(
        self, text: str, finish: str, usage: dict[str, Any], request: StepRequest
    ) -> Completion:
        prompt_tokens = usage.get("prompt_tokens")
        if prompt_tokens is None:  # cancelled before the usage chunk: estimate
            prompt_tokens = self._context_tokens + self.backend.count_tokens(request.prompt)
        generated = usage.get("completion_tokens", self.backend.count_tokens(text))
        cached = usage.get("prompt_cache_hit_tokens")  # DeepSeek's name
        if cached is None:
            cached = (usage.get("prompt_tokens_details") or {}).get("cached_tokens") or 0
        self._context_tokens = prompt_tokens + generated
        return Completion(
            text=text,
            finish_reason=finish,
            prompt_tokens=prompt_tokens,
            cached_tokens=cached,
            generated_tokens=generated,
        )


class _DsmlWriter:
    """Writes a structured chat answer as the DSML text the model would have written."""

    def __init__(self, on_text: Callable[[str], None], thinking: bool) -> None:
        self.on_text = on_text
        self.in_reasoning = thinking
        self.text = ""

    def _write(self, text: str) -> None:
        self.text += text
        self.on_text(text)

    def reasoning(self, text: str) -> None:
        if self.in_reasoning:
            self._write(text)

    def content(self, text: str) -> None:
        self._close_reasoning()
        self._write(text)

    def end(self, calls: list[dict[str, str]]) -> None:
        self._close_reasoning()
        tool_calls = [
            dsml.ToolCall(
                id=c["id"],
                name=c["name"],
                arguments=dsml.types.decode_arguments(c["arguments"] or "{}"),
            )
            for c in calls
        ]
        turn = dsml.render_suffix(
            [dsml.UserMessage(content="")], [dsml.AssistantMessage(tool_calls=tool_calls)], "chat"
        )
        self._write(turn)  # the tool-call block (if any) and EOS

    def _close_reasoning(self) -> None:
        if self.in_reasoning:
            self.in_reasoning = False
            self._write(THINK_END)


def _sampling(request: StepRequest) -> dict[str, Any]:
    body: dict[str, Any] = {
        "stream": True,
        "stream_options": {"include_usage": True},
        "max_tokens": request.max_tokens,
        "temperature": request.sampling.temperature,
        "top_p": request.sampling.top_p,
    }
    if request.sampling.seed is not None:
        body["seed"] = request.sampling.seed
    return body


def _finish(reason: str | None, cancel: CancelToken) -> str:
    """Our finish reason from the server's (stop, length, tool_calls, ...)."""
    if cancel.cancelled:
        return "cancelled"
    if reason is None:
        raise BackendError(
            "the server's stream ended before the answer did (no finish_reason); "
            "the step can be retried with `send()`"
        )
    return "length" if reason == "length" else "stop"


def _sse(lines: Iterator[str]) -> Iterator[dict[str, Any]]:
    for line in lines:
        if not line.startswith("data:"):
            continue
        data = line[5:].strip()
        if data == "[DONE]":
            return
        try:
            yield json.loads(data)
        except json.JSONDecodeError as exc:
            raise BackendError(f"the server sent a chunk that is not JSON: {data[:200]!r}") from exc


def _describe(response: httpx.Response, url: str) -> str:
    try:
        detail = response.json().get("error", response.text)
        if isinstance(detail, dict):
            detail = detail.get("message", detail)
    except (ValueError, AttributeError):
        detail = response.text
    hint = _HINTS.get(response.status_code, "the server refused the request")
    return f"HTTP {response.status_code} from {url}: {str(detail)[:500]} ({hint})"


def from_config(config: AgentConfig) -> OpenAIBackend:
    b = config.backend
    return OpenAIBackend(
        base_url=b.base_url,
        model=b.model or "deepseek-chat",
        api_key=b.api_key.get_secret_value() if b.api_key is not None else None,
        api_mode=b.api_mode,
        context_limit=b.context_limit,
        max_retries=b.max_retries,
        retry_backoff_s=b.retry_backoff_s,
        request_timeout_s=b.request_timeout_s,
        extra_body=b.extra_body,
    )
