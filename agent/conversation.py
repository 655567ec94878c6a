"""The conversation as typed messages and as text already in the backend's context.

Append-only memory: `messages[:in_context]` are in the backend's context exactly as written
(assistant turns as the model wrote them, `raw`); `next_prompt` renders only what comes after, so
no earlier turn is ever rendered again. An assistant turn the model left open (cut off by the token
limit or a cancel) is closed with `</think>`/EOS at the start of the next prompt.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import dsml
from dsml.tokens import EOS, THINK_END


@dataclass
class Conversation:
    thinking_mode: Literal["thinking", "chat"] = "thinking"
    reasoning_effort: Literal["high", "max"] | None = None
    messages: list[dsml.Message] = field(default_factory=list)
    raws: dict[int, str] = field(default_factory=dict)
    """Exact text of assistant turns (by message index), as it sits in the model's context."""
    in_context: int = 0
    """How many messages the backend's context holds."""

    def add(self, message: dsml.Message, raw: str | None = None) -> None:
        if raw is not None:
            self.raws[len(self.messages)] = raw
        self.messages.append(message)

    @property
    def pending(self) -> list[dsml.Message]:
        """Messages not yet sent to the backend."""
        return self.messages[self.in_context :]

    def next_prompt(self) -> str:
        """The text to append to the backend's context: the pending messages rendered as a
        suffix, ending with the generation transition. Assistant turns among them (after a resume
        from a journal newer than the saved cache) go in as the raw text the model wrote."""
        text = self._closing(self.in_context - 1)
        start = self.in_context
        for index in range(self.in_context, len(self.messages)):
            if index in self.raws:
                text += self._render(start, index) + self.raws[index] + self._closing(index)
                start = index + 1
        return text + self._render(start, len(self.messages))

    def mark_sent(self) -> None:
        self.in_context = len(self.messages)

    def add_completion(self, message: dsml.AssistantMessage, raw: str) -> None:
        """The model wrote `raw` right after the last prompt: it is in the context now."""
        self.add(message, raw)
        self.mark_sent()

    def _render(self, start: int, end: int) -> str:
        """`messages[start:end]` rendered after `messages[:start]`.

        Equal to `dsml.render_suffix(messages[:start], messages[start:end])` (a test pins it),
        but the context given to the encoder is bounded: the system message (whose tools make
        the format keep every turn's reasoning) and the turn being answered, so a step costs
        the same at step 5 and at step 500.
        """
        if start >= end:
            return ""
        kwargs = {"reasoning_effort": self.reasoning_effort}
        if start == 0:
            return dsml.encode_messages(self.messages[:end], self.thinking_mode, **kwargs)
        last_turn = next(
            (i for i in range(start - 1, 0, -1) if self.messages[i].role == "assistant"), 0
        )
        context = (
            self.messages[:start]
            if last_turn <= 1
            else [self.messages[0], *self.messages[last_turn:start]]
        )
        return dsml.encode_messages(
            self.messages[start:end], self.thinking_mode, context=context, **kwargs
        )

    def _closing(self, index: int) -> str:
        """What a turn the model left open needs so that the next message starts cleanly."""
        raw = self.raws.get(index)
        if raw is None or raw.endswith(EOS):
            return ""
        think_open = self.thinking_mode == "thinking" and THINK_END not in raw
        return (THINK_END if think_open else "") + EOS
