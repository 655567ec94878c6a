"""The status bar: backend and model, context used against the limit, cache memory, tokens/s,
cost so far, step, sandbox state and approval mode. What the agent is doing now (`activity`) is
kept here too and shown on the editor's border, where the eye is."""

from __future__ import annotations

from dataclasses import dataclass

from rich.text import Text
from textual.message import Message
from textual.widgets import Static

from agent import events as ev


@dataclass
class SessionStatus:
    """What the status bar shows, kept up to date from the events."""

    backend: str = "-"
    model: str = ""
    context_tokens: int = 0
    context_limit: int = 0
    cache_bytes: int = 0
    tokens_per_s: float = 0.0
    cost: float = 0.0
    step: int = 0
    sandbox_kind: str = ""
    sandbox: str = "off"
    activity: str = "idle"
    approval_mode: str = ""
    _step_started: float = 0.0

    def apply(self, e: ev.Event) -> None:
        self.step = max(self.step, e.step)
        if isinstance(e, ev.RunStarted):
            self.backend, self.model = e.backend, e.model
            self.activity = "starting"
        elif isinstance(e, ev.StepStarted):
            self._step_started = e.time
            self.context_tokens = e.context_tokens
            self.activity = "thinking"
            if self.sandbox == "off":
                self.sandbox = "ready"  # the agent starts its sandbox before the first step
        elif isinstance(e, ev.ContentDelta):
            self.activity = "writing"
        elif isinstance(e, ev.ToolCallStarted):
            self.activity = f"calling {e.name}"
        elif isinstance(e, ev.ApprovalRequested):
            self.activity = "waiting for approval"
        elif isinstance(e, ev.ToolOutput):
            notice = e.data.get("notice")
            if notice:
                self.sandbox = f"ready ({notice})"
        elif isinstance(e, ev.StepFinished):
            u = e.usage
            self.context_tokens, self.cache_bytes = u.context_tokens, u.cache_bytes
            self.cost += u.cost
            elapsed = e.time - self._step_started
            if u.generated_tokens and elapsed > 0:
                self.tokens_per_s = u.generated_tokens / elapsed
        elif isinstance(e, ev.ErrorEvent) and e.where == "sandbox":
            self.sandbox = "failed"
        elif isinstance(e, ev.RunFinished):
            self.activity = f"idle ({e.status.value})"

    def render(self) -> Text:
        share = f" {self.context_tokens / self.context_limit:.0%}" if self.context_limit else ""
        limit = _count(self.context_limit) if self.context_limit else "?"
        sandbox = " ".join(p for p in (self.sandbox_kind, self.sandbox) if p)
        parts = [
            (self.backend, "bold"),
            (f" {self.model}" if self.model and self.model != self.backend else "", ""),
            (f" · ctx {_count(self.context_tokens)}/{limit}{share}", ""),
            (f" · cache {_bytes(self.cache_bytes)}", ""),
            (f" · {self.tokens_per_s:.1f} tok/s", ""),
            (f" · ${self.cost:.4f}", ""),
            (f" · step {self.step}", ""),
            (f" · sandbox {sandbox}", "bold red" if self.sandbox == "failed" else ""),
            (f" · {self.approval_mode}" if self.approval_mode else "", ""),
        ]
        return Text.assemble(*parts, no_wrap=True, overflow="ellipsis")


def _count(n: int) -> str:
    """Token counts as people read them: 950, 12.3k, 1.0M."""
    if n < 1000:
        return str(n)
    if n < 1_000_000:
        return f"{n / 1000:.1f}k"
    return f"{n / 1_000_000:.1f}M"


def _bytes(n: int) -> str:
    if n <= 0:
        return "-"
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"


class StatusBar(Static):
    """One line at the bottom, redrawn from its `SessionStatus`."""

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.status = SessionStatus()

    def on_mount(self) -> None:
        self.update(self.status.render())

    class Changed(Message):
        """The status changed (the app shows `activity` on the editor's border)."""

        def __init__(self, status: SessionStatus) -> None:
            super().__init__()
            self.status = status

    def apply_events(self, events_: list[ev.Event]) -> None:
        for e in events_:
            self.status.apply(e)
        self._show()

    def reset(self) -> None:
        self.status = SessionStatus()
        self._show()

    def set(self, **fields: object) -> None:
        for name, value in fields.items():
            setattr(self.status, name, value)
        self._show()

    def _show(self) -> None:
        self.update(self.status.render())
        self.post_message(self.Changed(self.status))
