"""The `Backend` protocol: what the agent loop needs from something that continues a prompt.

A backend opens a `BackendSession`, which holds the conversation exactly as the model has read it
(token ids in the model's cache for the embedded engine, the prompt text for a raw-completions
endpoint). Each step the loop sends only the new prompt text (`StepRequest.prompt`, the DSML
suffix: tool results, a user message, and the generation transition); the session appends it,
continues, streams the completion text to `on_text`, and appends the completion too. Nothing
earlier is ever re-rendered.

Backends that cannot take raw prompt text (OpenAI-style chat completions) read
`StepRequest.messages` instead, and stream the structured answer back written as DSML text, so
that the loop's one streaming parser makes the same events (and call ids) for every backend.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol, runtime_checkable

if TYPE_CHECKING:
    from collections.abc import Callable

    from dsml import Message

FinishReason = Literal["stop", "length", "cancelled"]


class BackendError(RuntimeError):
    """The backend failed (unreachable, refused the request, crashed); the run stops with
    status `backend_error` and the session keeps everything written before."""


class CancelToken:
    """Set from any thread to stop the generation in flight; the backend checks it between tokens
    (or between streamed chunks) and returns what it has with finish_reason "cancelled"."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def cancel(self) -> None:
        self._event.set()

    def reset(self) -> None:
        self._event.clear()

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()

    def wait(self, timeout: float) -> bool:
        return self._event.wait(timeout)


@dataclass
class Sampling:
    temperature: float = 0.0
    top_p: float = 1.0
    seed: int | None = None


@dataclass
class StepRequest:
    """One step: continue the conversation by `prompt`, writing at most `max_tokens` tokens."""

    prompt: str
    """New DSML text to append to what the session already holds; ends with the generation
    transition (`<｜Assistant｜><think>` or `…</think>`)."""
    messages: list[Message]
    """The whole conversation including the new messages (for backends that send messages)."""
    tools: list[dict[str, Any]]
    """OpenAI function dicts of the tools the model may call."""
    thinking_mode: Literal["thinking", "chat"] = "thinking"
    max_tokens: int = 4096
    sampling: Sampling = field(default_factory=Sampling)


@dataclass
class Completion:
    """What one step wrote."""

    text: str
    """The completion exactly as it now sits in the session's context (DSML: reasoning,
    `</think>`, content, tool-call block, EOS when the model ended its turn)."""
    finish_reason: FinishReason
    prompt_tokens: int = 0
    """Tokens of the whole prompt before the completion (cached or not)."""
    cached_tokens: int = 0
    """Of those, tokens reused from the cache (not processed again)."""
    generated_tokens: int = 0


@runtime_checkable
class BackendSession(Protocol):
    """One conversation held by a backend."""

    def extend(
        self,
        request: StepRequest,
        on_text: Callable[[str], None],
        cancel: CancelToken,
    ) -> Completion:
        """Append `request.prompt`, generate until EOS, `max_tokens` or cancel, calling `on_text`
        with each new piece of text as it comes; raises `BackendError` on failure."""
        ...

    def fork(self) -> BackendSession:
        """An independent copy sharing everything so far (the cache is copied, not recomputed)."""
        ...

    def save(self, directory: Path) -> None:
        """Persist the session (for the embedded engine: its cache) so that `Backend.load_session`
        continues it without processing the prompt again."""
        ...

    @property
    def context_tokens(self) -> int:
        """Tokens in the context now (exact for local engines, last reported for HTTP ones)."""
        ...

    @property
    def cache_bytes(self) -> int:
        """Bytes of cache the session holds (0 when not known)."""
        ...


@runtime_checkable
class Backend(Protocol):
    """Something that holds conversations and continues them."""

    name: str
    """The backend kind, e.g. "embedded", "openai", "scripted", "vllm"."""
    model: str
    """The model's name, as looked up in the price table."""
    context_limit: int
    """The most tokens a session's context may hold."""
    note: str
    """Something the user should know (shown in RunStarted), "" when nothing."""

    def open_session(self) -> BackendSession:
        """A new, empty conversation."""
        ...

    def load_session(self, directory: Path) -> BackendSession:
        """A conversation saved by `BackendSession.save`; raises `FileNotFoundError` when there is
        none there."""
        ...

    def count_tokens(self, text: str) -> int:
        """How many tokens `text` takes (an estimate where the tokenizer is remote)."""
        ...

    def close(self) -> None:
        """Free what the backend holds (threads, HTTP clients, the model)."""
        ...
