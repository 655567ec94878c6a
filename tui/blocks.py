"""Transcript blocks: one per thing the reader sees (a user message, the model's reasoning, its
answer, a tool call with its result, an error, a run's start or end).

A block holds its own state (text so far, expanded or not) and turns it into a rich renderable
only when the transcript shows it; `estimate` guesses its height without rendering, so that a long
session opens without rendering every block.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from rich.console import Group, RenderableType
from rich.markdown import Markdown
from rich.panel import Panel
from rich.text import Text

OUTPUT_LINES_COLLAPSED = 12
"""Lines of a tool's output shown before the panel is expanded (click or Ctrl+O)."""


def _wrapped_lines(text: str, width: int) -> int:
    width = max(width, 1)
    return sum(max(1, -(-len(line) // width)) for line in text.split("\n"))


@dataclass(eq=False)
class Block:
    """Something the transcript shows; `version` changes whenever its look changes."""

    step: int = 0
    version: int = 0
    expanded: bool = False

    toggleable = False
    """Whether a click (or Ctrl+O on the last one) expands and collapses it."""

    def changed(self) -> None:
        self.version += 1

    def toggle(self) -> None:
        self.expanded = not self.expanded
        self.changed()

    def renderable(self) -> RenderableType:
        raise NotImplementedError

    def estimate(self, width: int) -> int:
        """Rows this block will take at `width`, guessed without rendering."""
        raise NotImplementedError


@dataclass(eq=False)
class UserBlock(Block):
    text: str = ""

    def renderable(self) -> RenderableType:
        body = Text(self.text)
        return Panel(body, title="you", title_align="left", border_style="bold cyan")

    def estimate(self, width: int) -> int:
        return _wrapped_lines(self.text, width - 4) + 2


@dataclass(eq=False)
class ReasoningBlock(Block):
    """The model's thinking: one summary line until expanded."""

    text: str = ""
    toggleable = True

    def renderable(self) -> RenderableType:
        words = len(self.text.split())
        if not self.expanded:
            first = " ".join(self.text.split())[:80]
            return Text.assemble(
                ("▸ reasoning ", "bold magenta"),
                (f"({words} words) ", "magenta"),
                (first, "dim italic"),
                no_wrap=True,
                overflow="ellipsis",
            )
        return Group(
            Text(f"▾ reasoning ({words} words)", style="bold magenta"),
            Text(self.text.strip(), style="italic grey62"),
        )

    def estimate(self, width: int) -> int:
        return 1 + (_wrapped_lines(self.text.strip(), width) if self.expanded else 0)


@dataclass(eq=False)
class ContentBlock(Block):
    """The model's answer, as Markdown."""

    text: str = ""

    def renderable(self) -> RenderableType:
        return Markdown(self.text.strip() or " ")

    def estimate(self, width: int) -> int:
        return _wrapped_lines(self.text.strip(), width)


@dataclass(eq=False)
class ToolBlock(Block):
    """One tool call: its arguments as they stream, its approval, its result."""

    call_id: str = ""
    name: str = ""
    streamed_args: dict[str, str] = field(default_factory=dict)
    arguments: dict[str, Any] | None = None
    call_error: str | None = None
    approval: str = ""
    """"" (none asked), "waiting", "approved", "denied: reason"."""
    output: str | None = None
    data: dict[str, Any] = field(default_factory=dict)
    is_error: bool = False
    duration_s: float = 0.0
    toggleable = True

    @property
    def args(self) -> dict[str, Any]:
        return self.arguments if self.arguments is not None else dict(self.streamed_args)

    def _status(self) -> tuple[str, str]:
        """(subtitle, border style)."""
        if self.call_error:
            return "malformed call", "red"
        if self.approval == "waiting":
            return "waiting for approval", "yellow"
        if self.approval.startswith("denied"):
            return self.approval, "red"
        if self.output is None:
            return "running…" if self.arguments is not None else "writing…", "blue"
        parts = []
        exit_code = self.data.get("exit_code", ...)
        if exit_code is not ...:
            parts.append(f"exit {exit_code}")
        for flag in ("timed_out", "interrupted", "oom_killed"):
            if self.data.get(flag):
                parts.append(flag.replace("_", " "))
        parts.append(f"{self.data.get('duration_s') or self.duration_s:.2f} s")
        if self.is_error:
            parts.insert(0, "error")
        return " · ".join(parts), "red" if self.is_error else "green"

    def _arguments(self) -> list[RenderableType]:
        args = self.args
        if self.name == "bash" and "command" in args:
            return [Text.assemble(("$ ", "bold green"), (str(args["command"]), "bold"))]
        shown = {k: v for k, v in args.items() if k not in ("content", "old_str", "new_str")}
        out: list[RenderableType] = []
        if shown:
            out.append(Text(_short_json(shown), style="cyan"))
        if self.output is None:
            for key in ("content", "old_str", "new_str"):
                if key in args:
                    out.append(Text(f"{key}: {_clip(str(args[key]), 8)}", style="grey62"))
        return out

    def _result(self) -> list[RenderableType]:
        if self.call_error:
            return [Text(self.call_error, style="bold red")]
        if self.output is None:
            return []
        diff = self.data.get("diff")
        if diff:
            text = diff if self.expanded else _clip(diff, OUTPUT_LINES_COLLAPSED * 2)
            return [diff_text(text)]
        text = self.data.get("output", self.output) if "exit_code" in self.data else self.output
        text = text.rstrip("\n")
        if not text:
            return [Text("(no output)", style="dim")]
        if not self.expanded:
            text = _clip(text, OUTPUT_LINES_COLLAPSED)
        return [Text(text, style="red" if self.is_error else "")]

    def renderable(self) -> RenderableType:
        subtitle, border = self._status()
        return Panel(
            Group(*self._arguments(), *self._result()),
            title=self.name or "…",
            title_align="left",
            subtitle=subtitle,
            subtitle_align="right",
            border_style=border,
        )

    def estimate(self, width: int) -> int:
        args = self.args
        rows = _wrapped_lines(_short_json(args), width - 4) if args else 0
        body = self.data.get("diff") or self.output or self.call_error or ""
        lines = _wrapped_lines(body, width - 4) if body else 0
        limit = OUTPUT_LINES_COLLAPSED * (2 if self.data.get("diff") else 1) + 1
        return 2 + rows + (lines if self.expanded else min(lines, limit))


@dataclass(eq=False)
class ErrorBlock(Block):
    message: str = ""
    where: str = ""

    def renderable(self) -> RenderableType:
        title = f"error in {self.where}" if self.where else "error"
        return Panel(Text(self.message.strip()), title=title, border_style="bold red")

    def estimate(self, width: int) -> int:
        return _wrapped_lines(self.message.strip(), width - 4) + 2


@dataclass(eq=False)
class NoteBlock(Block):
    """A line about the run itself (started, finished, interrupted)."""

    text: str = ""
    style: str = "dim"

    def renderable(self) -> RenderableType:
        return Text(self.text, style=self.style)

    def estimate(self, width: int) -> int:
        return _wrapped_lines(self.text, width)


_DIFF_STYLES = (("+++", "bold"), ("---", "bold"), ("@@", "cyan"), ("+", "green"), ("-", "red"))


def diff_text(diff: str) -> Text:
    """A unified diff coloured line by line (cheaper than a lexer, and all a diff needs)."""
    text = Text()
    for line in diff.rstrip("\n").split("\n"):
        style = next((s for prefix, s in _DIFF_STYLES if line.startswith(prefix)), "")
        text.append(line + "\n", style=style)
    text.rstrip()
    return text


def _short_json(value: dict[str, Any]) -> str:
    return json.dumps(value, ensure_ascii=False, default=str)


def _clip(text: str, lines: int) -> str:
    """At most `lines` lines: the head and the tail, with how much was left out between."""
    rows = text.split("\n")
    if len(rows) <= lines:
        return text
    head, tail = rows[: lines // 2], rows[-(lines - lines // 2) :]
    return "\n".join([*head, f"… {len(rows) - lines} more lines (click to expand) …", *tail])
