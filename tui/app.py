"""`ChatApp`: a live agent session in the terminal.

The transcript, the editor and the status bar are widgets that each own their state; the app
opens the agent (off the UI thread), streams each run's events to the widgets, asks the user
about approvals in a modal, and runs slash commands.
"""

from __future__ import annotations

import asyncio
import gc
import threading
from pathlib import Path

from textual import work
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.message import Message
from textual.reactive import reactive

from agent import Agent
from agent import events as ev
from agent.config import ApprovalRule
from tui.agents import AgentFactory
from tui.approval_screen import ApprovalAnswer, ApprovalScreen
from tui.commands import SlashCommand, UnknownCommand, model_text, parse_command
from tui.composer import Composer
from tui.screens import HelpScreen, SessionsScreen
from tui.status_bar import StatusBar
from tui.transcript import Transcript

APPROVAL_MODES = ("ask", "auto-edit", "auto")


class ChatApp(App[None]):
    """The `dsv4 chat` app."""

    CSS_PATH = "chat.tcss"
    TITLE = "dsv4"
    BINDINGS = [
        Binding("ctrl+q", "quit", "Quit", priority=True),
        Binding("escape", "interrupt", "Interrupt", priority=True),
        Binding("f1", "help", "Help"),
        Binding("ctrl+o", "toggle_last", "Expand/collapse"),
    ]

    running: reactive[bool] = reactive(False)
    """Whether a run of the agent is going on."""

    class HistoryLoaded(Message):
        """The journal of the session being opened was read."""

        def __init__(self, history: list[ev.Event], shown: threading.Event) -> None:
            super().__init__()
            self.history = history
            self.shown = shown
            """Set once the transcript is drawn."""

    class AgentReady(Message):
        def __init__(self, agent: Agent) -> None:
            super().__init__()
            self.agent = agent

    def __init__(self, factory: AgentFactory, *, resume: str | None = None) -> None:
        super().__init__()
        self.factory = factory
        self.agent: Agent | None = None
        self._resume = resume
        self._approval: ApprovalScreen | None = None

    def compose(self) -> ComposeResult:
        yield Transcript(id="transcript")
        yield Composer(id="composer")
        yield StatusBar(id="status")

    def on_mount(self) -> None:
        composer = self.query_one(Composer)
        composer.border_title = "Enter send · Ctrl+J new line · Esc interrupt · F1 help"
        composer.focus()
        self._open_agent(self._resume)

    # ------------------------------------------------------------------ the agent

    @work(thread=True, exclusive=True, group="open")
    def _open_agent(self, session_id: str | None) -> None:
        """Open (or resume) the agent off the UI thread: a backend may take a while to load.
        A resumed session's transcript is shown first, while the agent replays the journal."""
        self.call_from_thread(self._status().set, activity="opening session")
        try:
            history = self.factory.history(session_id) if session_id else []
            shown = threading.Event()
            self.post_message(self.HistoryLoaded(history, shown))
            # The agent's own replay of the journal would compete for the interpreter with the
            # first frame: let the transcript be drawn first.
            shown.wait(timeout=2)
            agent = self.factory.open(session_id)
        except Exception as exc:  # shown in the transcript; the app stays usable for /resume
            self.call_from_thread(self._show_error, f"could not open the session: {exc}", "tui")
            self.call_from_thread(self._status().set, activity="no session")
            return
        self.post_message(self.AgentReady(agent))

    def on_chat_app_history_loaded(self, message: HistoryLoaded) -> None:
        transcript = self.query_one(Transcript)
        transcript.reset()
        transcript.apply_events(message.history)
        status = self._status()
        status.reset()
        status.apply_events(message.history)
        self.call_after_refresh(message.shown.set)

    def on_chat_app_agent_ready(self, message: AgentReady) -> None:
        self.agent = message.agent
        backend = self.agent.backend
        self._status().set(
            backend=backend.name,
            model=backend.model,
            context_limit=backend.context_limit,
            approval_mode=self.agent.config.approval.mode,
            sandbox_kind=type(self.agent.sandbox).__name__.removesuffix("Sandbox").lower(),
            sandbox="off",  # this process starts its own on the first run
            activity="idle",
        )
        self.sub_title = self.agent.session_id or "new session"
        self.call_after_refresh(self._settle)

    def _settle(self) -> None:
        """Once a session is open and drawn: load what the first Markdown and code block would
        load (tens of milliseconds, once), then freeze the heap. Both now rather than in the
        middle of a later scroll."""
        self.query_one(Transcript).warm_up()
        _freeze_heap()

    def on_unmount(self) -> None:
        gc.unfreeze()

    @work(exclusive=True, group="run")
    async def _run(self, message: str | None) -> None:
        agent = self.agent
        assert agent is not None
        self.running = True
        try:
            async for event in agent.stream(message):
                self._show([event])
                if isinstance(event, ev.ApprovalRequested):
                    self._ask(event)
                elif isinstance(event, ev.ApprovalResolved):
                    self._close_approval(event.request_id)
        except Exception as exc:
            self._show_error(f"the run failed: {exc}", "agent")
        finally:
            self.running = False
            self.sub_title = agent.session_id

    def _show(self, events: list[ev.Event]) -> None:
        self.query_one(Transcript).apply_events(events)
        self._status().apply_events(events)

    def _show_error(self, text: str, where: str) -> None:
        self._show([ev.ErrorEvent(message=text, where=where)])

    def _status(self) -> StatusBar:
        return self.query_one(StatusBar)

    def on_status_bar_changed(self, message: StatusBar.Changed) -> None:
        activity = message.status.activity
        self.query_one(Composer).border_subtitle = activity
        self.query_one(Composer).set_class(not activity.startswith("idle"), "-busy")

    # ------------------------------------------------------------------ approval

    def _ask(self, request: ev.ApprovalRequested) -> None:
        screen = ApprovalScreen(request)
        self._approval = screen

        def answered(answer: ApprovalAnswer | None) -> None:
            self._approval = None
            if answer is not None:
                self._answer(request, answer)

        self.push_screen(screen, answered)

    def _answer(self, request: ev.ApprovalRequested, answer: ApprovalAnswer) -> None:
        agent = self.agent
        if agent is None:
            return
        if answer.choice == "allow_always" and answer.pattern:
            # The policy reads the live configuration: the rule holds for the rest of the session.
            rule = ApprovalRule(tool=request.tool, pattern=answer.pattern, action="allow")
            agent.config.approval.rules.append(rule)
        reason = {
            "allow": "allowed once by the user",
            "allow_always": f"allowed by the user (always for {answer.pattern!r})",
            "deny": "denied by the user",
            "deny_message": f"denied by the user: {answer.message}",
        }[answer.choice]
        try:
            agent.approve(request.request_id, answer.approved, reason)
        except KeyError:
            pass  # answered already (the run was interrupted while the modal was open)

    def _close_approval(self, request_id: str) -> None:
        screen = self._approval
        if screen is not None and screen.request.request_id == request_id and screen.is_current:
            self._approval = None
            screen.dismiss(None)

    # ------------------------------------------------------------------ input

    def on_composer_submitted(self, message: Composer.Submitted) -> None:
        text = message.text
        try:
            command = parse_command(text)
        except UnknownCommand as exc:
            self.notify(str(exc), severity="error")
            return
        if command is not None:
            self._command(command)
            return
        self._send(text[1:] if text.startswith("//") else text)

    def on_composer_paged(self, message: Composer.Paged) -> None:
        transcript = self.query_one(Transcript)
        if message.direction < 0:
            transcript.scroll_page_up(animate=False)
        else:
            transcript.scroll_page_down(animate=False)

    def _send(self, message: str | None) -> None:
        if self.agent is None:
            self.notify("The session is not open yet.", severity="warning")
            return
        if self.running:
            self.notify("A run is going on: Esc interrupts it.", severity="warning")
            return
        self._run(message)

    def _command(self, command: SlashCommand) -> None:
        handler = getattr(self, f"_cmd_{command.name}")
        handler(command.argument)

    def _cmd_help(self, _: str) -> None:
        self.action_help()

    def _cmd_quit(self, _: str) -> None:
        self.call_later(self.action_quit)

    def _cmd_continue(self, _: str) -> None:
        self._send(None)

    def _cmd_approval(self, mode: str) -> None:
        if self.agent is None:
            return
        if mode not in APPROVAL_MODES:
            current = self.agent.config.approval.mode
            self.notify(f"approval mode is {current}; /approval {'|'.join(APPROVAL_MODES)}")
            return
        self.agent.config.approval.mode = mode  # type: ignore[assignment]
        self._status().set(approval_mode=mode)
        self.notify(f"approval mode: {mode}")

    def _cmd_model(self, wanted: str) -> None:
        if self.agent is None:
            self.notify("The session is still opening: /model when it is.", severity="warning")
            return
        backend = self.agent.backend
        text = model_text(
            backend=backend.name,
            model=backend.model,
            context_limit=backend.context_limit,
            context_tokens=self._status().status.context_tokens,
            note=backend.note,
            session_id=self.agent.session_id or "",
            wanted=wanted,
        )
        self.notify(
            text, title="/model", severity="warning" if wanted else "information", timeout=15
        )

    def _cmd_export(self, path: str) -> None:
        if self.agent is None or not self.agent.session_id:
            self.notify("Nothing to export yet: send a message first.", severity="warning")
            return
        target = Path(path or f"{self.agent.session_id}.md").expanduser()
        try:
            target.write_text(self.agent.export_markdown() + "\n", encoding="utf-8")
        except OSError as exc:
            self.notify(f"/export: cannot write {target}: {exc}", severity="error")
            return
        self.notify(f"exported to {target}")

    def _cmd_sessions(self, _: str) -> None:
        current = self.agent.session_id if self.agent else ""

        def chosen(session_id: str | None) -> None:
            if session_id and session_id != current:
                self._cmd_resume(session_id)

        self.push_screen(SessionsScreen(self.factory.sessions(), current), chosen)

    def _cmd_resume(self, session_id: str) -> None:
        if not session_id:
            self._cmd_sessions("")
            return
        if self.running:
            self.notify("A run is going on: Esc interrupts it first.", severity="warning")
            return
        old, self.agent = self.agent, None
        if old is not None:
            self.factory.close(old)
        self._open_agent(session_id)

    # ------------------------------------------------------------------ actions

    def action_interrupt(self) -> None:
        if isinstance(self.screen, ApprovalScreen):
            self.screen.action_answer("deny")
            return
        if len(self.screen_stack) > 1:
            self.screen.dismiss(None)
            return
        if self.running and self.agent is not None:
            self.agent.cancel()
            self._status().set(activity="interrupting")

    def action_help(self) -> None:
        if not isinstance(self.screen, HelpScreen):
            self.push_screen(HelpScreen())

    def action_toggle_last(self) -> None:
        self.query_one(Transcript).toggle_last()

    async def action_quit(self) -> None:
        agent, self.agent = self.agent, None
        if agent is not None:
            if self.running:
                agent.cancel()
                for worker in [w for w in self.workers if w.group == "run"]:
                    await worker.wait()
            await asyncio.to_thread(self.factory.close, agent)
        self.exit()


def _freeze_heap() -> None:
    """Collect once, then take everything alive out of the collector's sight (`gc.freeze`).

    A session just opened is tens of thousands of objects that live as long as it does (the
    journal's events, the agent, the transcript's blocks). Left to the collector, each full
    collection walks them all: 100-200 ms, in the middle of whatever key the user pressed. Frozen,
    later collections walk only what is new. Called when a session is opened (thawing the one
    before, so that what the previous session left is collected)."""
    gc.unfreeze()
    gc.collect()
    gc.freeze()
