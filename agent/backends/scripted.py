"""The `scripted` backend: replays recorded completions, one per step, streamed in small pieces.

For tests of the loop and for the example tasks' reference trajectories. A script is a directory
of `NN.dsml` files (each the exact text the model writes after the prompt, sorted by name), a
JSON file `{"completions": [...]}`, or a list given in code. Token counts are estimates (4
characters a token); they only drive limits and usage figures.
"""

from __future__ import annotations

import copy
import json
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from agent.backends.base import BackendError, CancelToken, Completion, StepRequest

if TYPE_CHECKING:
    from agent.config import AgentConfig

STATE_FILE = "scripted.json"


def load_script(path: Path) -> list[str]:
    """The completions of a script directory (`*.dsml`) or JSON file."""
    if path.is_dir():
        files = sorted(path.glob("*.dsml"))
        if not files:
            raise FileNotFoundError(f"{path}: a script directory needs NN.dsml files, none found")
        return [f.read_text(encoding="utf-8") for f in files]
    data = json.loads(path.read_text(encoding="utf-8"))
    completions = data["completions"] if isinstance(data, dict) else data
    if not all(isinstance(c, str) for c in completions):
        raise ValueError(f"{path}: `completions` must be a list of strings")
    return completions


def count_tokens(text: str) -> int:
    return math.ceil(len(text) / 4)


class ScriptedBackend:
    name = "scripted"
    note = ""

    def __init__(
        self,
        completions: list[str],
        *,
        model: str = "scripted",
        context_limit: int = 1_000_000,
        chunk_chars: int = 12,
        delay_s: float = 0.0,
    ) -> None:
        self.completions = completions
        self.model = model
        self.context_limit = context_limit
        self.chunk_chars = chunk_chars
        """Characters per streamed piece (small, so that tags split across pieces)."""
        self.delay_s = delay_s
        """Pause before each piece (to test cancel and kill mid-step)."""

    @classmethod
    def from_path(cls, path: Path, **kwargs: object) -> ScriptedBackend:
        return cls(load_script(path), **kwargs)  # type: ignore[arg-type]

    def open_session(self) -> ScriptedSession:
        return ScriptedSession(self)

    def load_session(self, directory: Path) -> ScriptedSession:
        state = json.loads((directory / STATE_FILE).read_text())
        return ScriptedSession(
            self, position=state["position"], context_tokens=state["context_tokens"]
        )

    def count_tokens(self, text: str) -> int:
        return count_tokens(text)

    def close(self) -> None:
        pass


class ScriptedSession:
    def __init__(
        self, backend: ScriptedBackend, position: int = 0, context_tokens: int = 0
    ) -> None:
        self.backend = backend
        self.position = position
        """Index of the next completion to replay."""
        self.prompts: list[str] = []
        """The prompt suffixes this session was sent, in order (for checks)."""
        self._context_tokens = context_tokens

    def extend(
        self, request: StepRequest, on_text: Callable[[str], None], cancel: CancelToken
    ) -> Completion:
        self.prompts.append(request.prompt)
        script = self.backend.completions
        # A completion given back as prompt text (a resume re-reading turns newer than the saved
        # session) was written already: replay the one after it.
        while self.position < len(script) and script[self.position] in request.prompt:
            self.position += 1
        if self.position >= len(script):
            raise BackendError(
                f"scripted backend: the script has {len(script)} completions and step "
                f"{self.position + 1} asks for another; record a longer script"
            )
        cached = self._context_tokens
        prompt_tokens = cached + count_tokens(request.prompt)
        text = script[self.position]
        self.position += 1
        finish = "stop"
        if count_tokens(text) > request.max_tokens:
            text, finish = text[: request.max_tokens * 4], "length"
        written = ""
        step = self.backend.chunk_chars
        for start in range(0, len(text), step):
            if self.backend.delay_s:
                time.sleep(self.backend.delay_s)
            if cancel.cancelled:
                finish = "cancelled"
                break
            written += text[start : start + step]
            on_text(text[start : start + step])
        generated = count_tokens(written)
        self._context_tokens = prompt_tokens + generated
        return Completion(
            text=written,
            finish_reason=finish,
            prompt_tokens=prompt_tokens,
            cached_tokens=cached,
            generated_tokens=generated,
        )

    def fork(self) -> ScriptedSession:
        twin = copy.copy(self)
        twin.prompts = list(self.prompts)
        return twin

    def save(self, directory: Path) -> None:
        (directory / STATE_FILE).write_text(
            json.dumps({"position": self.position, "context_tokens": self._context_tokens})
        )

    @property
    def context_tokens(self) -> int:
        return self._context_tokens

    @property
    def cache_bytes(self) -> int:
        return 0


def from_config(config: AgentConfig) -> ScriptedBackend:
    b = config.backend
    if b.script is None:
        raise BackendError(
            "backend.kind = scripted needs backend.script: a directory of NN.dsml files or a "
            'JSON file {"completions": [...]}'
        )
    return ScriptedBackend.from_path(
        b.script.expanduser(),
        model=b.model or "scripted",
        context_limit=b.context_limit or 1_000_000,
    )
