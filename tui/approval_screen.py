"""The approval modal: the exact command (or the change a file tool would make), and four answers:
allow once, allow always for a pattern, deny, deny with a message to the model."""

from __future__ import annotations

import difflib
import json
import shlex
from dataclasses import dataclass
from typing import Literal

from rich.console import RenderableType
from rich.syntax import Syntax
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, Static

from agent import events as ev
from tui.blocks import diff_text

Choice = Literal["allow", "allow_always", "deny", "deny_message"]


@dataclass
class ApprovalAnswer:
    """What the user decided about one request."""

    choice: Choice
    pattern: str = ""
    """For `allow_always`: the glob on the command or path that runs without asking from now."""
    message: str = ""
    """For `deny_message`: what the model is told."""

    @property
    def approved(self) -> bool:
        return self.choice in ("allow", "allow_always")


def suggested_pattern(tool: str, arguments: dict) -> str:
    """A glob that covers this call and its near relatives: `git *` for `git status`, the path
    itself for a file tool."""
    if "command" in arguments:
        command = str(arguments["command"]).strip()
        try:
            first = shlex.split(command)[0]
        except (ValueError, IndexError):
            first = command.split(" ")[0] if command else ""
        return f"{first} *" if first and first != command else command
    if "path" in arguments:
        return str(arguments["path"])
    return "*"


def _diff_lines(text: str) -> list[str]:
    """Lines for difflib, the last one ended too: a fragment without a final newline (an edit's
    `hotle_frost` -> `hotel_frost`) would otherwise print as one line `-hotle_frost+hotel_frost`."""
    lines = text.splitlines(keepends=True)
    if lines and not lines[-1].endswith("\n"):
        lines[-1] += "\n"
    return lines


def call_preview(tool: str, arguments: dict) -> RenderableType:
    """The exact command, or the change a file tool would make, as the user should see it."""
    if "command" in arguments:
        return Syntax(str(arguments["command"]), "bash", word_wrap=True, theme="ansi_dark")
    path = str(arguments.get("path", ""))
    if "new_str" in arguments:
        old = _diff_lines(str(arguments.get("old_str") or ""))
        new = _diff_lines(str(arguments["new_str"]))
        where = (
            f" (insert after line {arguments['insert_line']})" if "insert_line" in arguments else ""
        )
        diff = "".join(difflib.unified_diff(old, new, f"a/{path}", f"b/{path}{where}"))
        return diff_text(diff)
    if "content" in arguments:
        lines = _diff_lines(str(arguments["content"]))
        diff = "".join(difflib.unified_diff([], lines, f"a/{path}", f"b/{path} (whole file)"))
        return diff_text(diff)
    return Text(json.dumps(arguments, ensure_ascii=False, indent=2))


class ApprovalScreen(ModalScreen[ApprovalAnswer]):
    """Asks about one `ApprovalRequested`; dismisses with an `ApprovalAnswer`."""

    BINDINGS = [
        Binding("y", "answer('allow')", "Allow once"),
        Binding("a", "answer('allow_always')", "Allow always"),
        Binding("n", "answer('deny')", "Deny"),
        Binding("m", "message", "Deny with message"),
        Binding("escape", "answer('deny')", "Deny", show=False),
    ]

    def __init__(self, request: ev.ApprovalRequested) -> None:
        super().__init__()
        self.request = request

    def compose(self) -> ComposeResult:
        r = self.request
        with Vertical(id="approval-dialog"):
            yield Label(f"Allow [b]{r.tool}[/b]?", id="approval-title")
            yield Static(Text(r.reason, style="dim"), id="approval-reason")
            with VerticalScroll(id="approval-preview"):
                yield Static(call_preview(r.tool, r.arguments), id="approval-call")
            with Horizontal(id="approval-pattern-row"):
                yield Label("always-allow pattern:")
                yield Input(suggested_pattern(r.tool, r.arguments), id="approval-pattern")
            yield Input(
                placeholder="message to the model (for deny with message)", id="approval-message"
            )
            with Horizontal(id="approval-buttons"):
                yield Button("Allow once (y)", id="allow", variant="success")
                yield Button("Allow always (a)", id="allow_always", variant="primary")
                yield Button("Deny (n)", id="deny", variant="error")
                yield Button("Deny + message (m)", id="deny_message", variant="warning")

    def on_mount(self) -> None:
        self.query_one("#allow", Button).focus()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        self.action_answer(event.button.id or "deny")

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        choice = "deny_message" if event.input.id == "approval-message" else "allow_always"
        self.action_answer(choice)

    def action_message(self) -> None:
        self.query_one("#approval-message", Input).focus()

    def action_answer(self, choice: str) -> None:
        pattern = self.query_one("#approval-pattern", Input).value.strip()
        message = self.query_one("#approval-message", Input).value.strip()
        if choice == "deny_message" and not message:
            self.action_message()
            self.notify("Type the message for the model, then Enter.")
            return
        self.dismiss(ApprovalAnswer(choice=choice, pattern=pattern, message=message))  # type: ignore[arg-type]
