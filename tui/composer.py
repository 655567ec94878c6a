"""The message editor: multi-line, Enter sends, Ctrl+J (or Alt+Enter, or Shift+Enter where the
terminal reports it) inserts a newline, Up/Down on the first/last line walk the history,
PageUp/PageDown scroll the transcript (a message to the app: the editor keeps the focus)."""

from __future__ import annotations

from textual import events
from textual.binding import Binding
from textual.message import Message
from textual.widgets import TextArea

NEWLINE_KEYS = frozenset({"ctrl+j", "alt+enter", "shift+enter"})


class Composer(TextArea):
    """Multi-line input with a history of what was sent."""

    BINDINGS = [
        Binding("pageup", "page(-1)", "Scroll up", show=False),
        Binding("pagedown", "page(1)", "Scroll down", show=False),
    ]

    class Paged(Message):
        """PageUp/PageDown while typing: the transcript should scroll by a page."""

        def __init__(self, direction: int) -> None:
            super().__init__()
            self.direction = direction

    class Submitted(Message):
        """The user sent `text` (a message or a slash command)."""

        def __init__(self, text: str) -> None:
            super().__init__()
            self.text = text

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id, soft_wrap=True, show_line_numbers=False, tab_behavior="focus")
        self.sent: list[str] = []
        self._browse: int | None = None  # index into history while browsing it
        self._draft = ""

    async def _on_key(self, event: events.Key) -> None:
        if event.key == "enter":
            event.stop()
            event.prevent_default()
            self._submit()
            return
        if event.key in NEWLINE_KEYS:
            event.stop()
            event.prevent_default()
            self.insert("\n")
            return
        row = self.cursor_location[0]
        if event.key == "up" and row == 0 and self.sent:
            event.stop()
            event.prevent_default()
            self._walk(-1)
            return
        if event.key == "down" and row == self.document.line_count - 1 and self._browse is not None:
            event.stop()
            event.prevent_default()
            self._walk(+1)
            return
        await super()._on_key(event)

    def action_page(self, direction: int) -> None:
        self.post_message(self.Paged(direction))

    def _submit(self) -> None:
        text = self.text.strip("\n")
        if not text.strip():
            return
        if not self.sent or self.sent[-1] != text:
            self.sent.append(text)
        self._browse = None
        self.clear()
        self.post_message(self.Submitted(text))

    def _walk(self, step: int) -> None:
        if self._browse is None:
            self._draft = self.text
            self._browse = len(self.sent)
        self._browse = max(0, self._browse + step)
        if self._browse >= len(self.sent):
            self._browse = None
            self.text = self._draft
        else:
            self.text = self.sent[self._browse]
        last = self.document.line_count - 1
        self.move_cursor((last, len(self.document.get_line(last))))
