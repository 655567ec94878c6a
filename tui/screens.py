"""Help and session-list screens."""

from __future__ import annotations

import time

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Label, Markdown, OptionList
from textual.widgets.option_list import Option

from agent.session_store import SessionInfo
from tui.commands import HELP_MARKDOWN


class HelpScreen(ModalScreen[None]):
    BINDINGS = [Binding("escape,q,f1", "dismiss", "Close")]

    def compose(self) -> ComposeResult:
        with Vertical(id="help-dialog"):
            yield Markdown(HELP_MARKDOWN)
            yield Label("[dim]Esc closes[/dim]")


class SessionsScreen(ModalScreen[str | None]):
    """Journaled sessions, newest first; Enter resumes the highlighted one."""

    BINDINGS = [Binding("escape", "dismiss(None)", "Close")]

    def __init__(self, sessions: list[SessionInfo], current: str = "") -> None:
        super().__init__()
        self.sessions = sessions
        self.current = current

    def compose(self) -> ComposeResult:
        with Vertical(id="sessions-dialog"):
            yield Label(f"[b]Sessions[/b] ({len(self.sessions)}) — Enter resumes, Esc closes")
            options = [Option(self._line(s), id=s.id) for s in self.sessions]
            yield OptionList(*options, id="sessions-list")

    def _line(self, s: SessionInfo) -> str:
        when = time.strftime("%Y-%m-%d %H:%M", time.localtime(s.updated))
        task = " ".join(s.task.split())[:60]
        mark = "▶ " if s.id == self.current else "  "
        return f"{mark}{s.id}  {when}  {s.status or 'unfinished':<12} {s.steps:>4} steps  {task}"

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        self.dismiss(event.option.id)
