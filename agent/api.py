"""The Python API: `Agent` runs tasks in a session; `RunResult` says how a run ended.

agent = Agent(AgentConfig(), sandbox=LocalSandbox(...))
result = agent.run("fix the failing test")          # sync, returns when the run stops
result = agent.send("now also update the README")   # continue the same session
async for event in agent.stream("and the changelog"):  # events as they happen
    ...
agent.cancel()   # from any thread: stops the generation or tool in flight, keeps state
agent = Agent.resume("20260101-120000-ab12cd")      # a journaled session, in a new process
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

from pydantic import BaseModel

import dsml
from agent import events as ev
from agent.approval import ApprovalGate, ApprovalPolicy, Approver
from agent.backends.base import Backend, BackendError, BackendSession, CancelToken
from agent.config import AgentConfig, load_config
from agent.conversation import Conversation
from agent.events import Event, RunStatus, Totals
from agent.loop import AgentLoop
from agent.session_store import SessionJournal, SessionStore, replay
from agent.tool_runner import ToolRunner

INTERRUPTED_CALL = (
    "Not finished: the agent process stopped while this call ran (it may have partly run). "
    "Check the sandbox's state before running it again."
)


class RunResult(BaseModel):
    session_id: str
    status: RunStatus
    summary: str
    """The submit tool's summary, the model's final answer, or why the run stopped."""
    totals: Totals
    """Use of this run (steps, tokens, cost, time)."""
    session_dir: Path | None = None
    """Where the journal lies (None when the session is not journaled)."""

    @property
    def ok(self) -> bool:
        return self.status in (RunStatus.submitted, RunStatus.answered)


class Agent:
    """One agent session: a conversation held by a backend, tools in a sandbox, a journal.

    `backend`, `sandbox` and `tools` default to what `config` names (the embedded model, a
    Docker sandbox over the working directory, `tools.default_tools()`). `approver` answers
    approval requests (a function or coroutine function); without one, `stream` waits for
    `approve()` and `run`/`send` decide by policy alone (headless: what would ask is denied).
    `on_event` sees every event after it is journaled.
    """

    def __init__(
        self,
        config: AgentConfig | None = None,
        *,
        backend: Backend | None = None,
        sandbox: Any | None = None,
        tools: list[Any] | None = None,
        approver: Approver | None = None,
        on_event: Callable[[Event], None] | None = None,
        journal: bool = True,
    ) -> None:
        self.config = config if config is not None else load_config()
        self._own_backend = backend is None
        self.backend = backend if backend is not None else _make_backend(self.config)
        self._own_sandbox = sandbox is None
        self.sandbox = sandbox if sandbox is not None else _make_sandbox()
        self.tools = tools if tools is not None else _default_tools()
        self._runner = ToolRunner(self.tools, self.sandbox)
        self._gate = ApprovalGate(ApprovalPolicy(self.config.approval), approver)
        self._listeners: list[Callable[[Event], None]] = [on_event] if on_event else []
        self._cancel = CancelToken()
        self._run_lock = threading.Lock()
        self._emit_lock = threading.Lock()
        self.conversation = Conversation(self.config.thinking_mode, self.config.reasoning_effort)
        self._session: BackendSession | None = None
        self._sandbox_started = False
        self._step = 0
        self._seq = 0
        self.store = SessionStore(self.config.sessions_dir) if journal else None
        self._journal: SessionJournal | None = None
        self.session_id = ""
        self.session_dir: Path | None = None
        self.last_result: RunResult | None = None
        self._resumed = False

    # ------------------------------------------------------------------ public API

    def run(self, task: str) -> RunResult:
        """Run `task` (the first message of the session, or a further one) until it stops."""
        return self._run(task)

    def send(self, message: str | None = None) -> RunResult:
        """Continue the session with another user message; None continues where the last run
        stopped (e.g. after a cancel or in a resumed session) without a new message."""
        return self._run(message)

    async def stream(self, message: str | None) -> AsyncIterator[Event]:
        """Run `message` and yield every event as it happens (after it is journaled).

        Approval requests without an approver wait for `approve()`. Closing the iterator early
        (`contextlib.aclosing`, or when it is garbage-collected after a `break`) cancels the run;
        its state is kept. Listeners and this iterator see events only once they are on disk."""
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[Event] = asyncio.Queue()

        def forward(event: Event) -> None:
            loop.call_soon_threadsafe(queue.put_nowait, event)

        self._gate.interactive, self._gate.event_loop = True, loop
        worker = loop.run_in_executor(None, self._run, message, forward)
        try:
            while True:
                getter = asyncio.ensure_future(queue.get())
                done, _ = await asyncio.wait({getter, worker}, return_when=asyncio.FIRST_COMPLETED)
                if getter not in done:
                    getter.cancel()
                    while not queue.empty():
                        yield queue.get_nowait()
                    await worker  # raises what the run raised (e.g. a run already going on)
                    return
                event = getter.result()
                yield event
                if isinstance(event, ev.RunFinished):
                    await worker
                    return
        finally:
            if not worker.done():
                self.cancel()
                await asyncio.shield(worker)
            self._gate.interactive, self._gate.event_loop = False, None

    def cancel(self) -> None:
        """Stop the generation or tool in flight; the run ends with status `cancelled`, all
        state is kept, and `send` continues the session."""
        self._cancel.cancel()

    def approve(self, request_id: str, approved: bool, reason: str = "") -> None:
        """Answer an `ApprovalRequested` event (when no approver callback was given)."""
        self._gate.resolve(request_id, approved, reason)

    def subscribe(self, listener: Callable[[Event], None]) -> None:
        """Also send every later event to `listener` (after it is journaled)."""
        self._listeners.append(listener)

    def export_messages(self) -> list[dict[str, Any]]:
        """The conversation as an OpenAI-style message list."""
        return dsml.to_openai_messages(self.conversation.messages)

    def export_markdown(self) -> str:
        if self.store is None or not self.session_id:
            raise RuntimeError("export_markdown reads the journal; this agent has none")
        return self.store.export_markdown(self.session_id)

    def close(self) -> None:
        """Close the journal, and the backend and sandbox if this agent made them."""
        if self._journal is not None:
            self._journal.close()
            self._journal = None
        if self._own_backend:
            self.backend.close()
        if self._own_sandbox and self._sandbox_started:
            self.sandbox.stop()

    def __enter__(self) -> Agent:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @classmethod
    def resume(cls, session_id: str, config: AgentConfig | None = None, **kwargs: Any) -> Agent:
        """A journaled session, ready for `send`: the conversation from its journal, the backend
        session from its saved cache when there is one (no re-prefill), else rebuilt from the
        journal's exact text. Calls a killed run left unanswered get an 'interrupted' result."""
        agent = cls(config, **kwargs)
        if agent.store is None:
            raise ValueError("resume needs the session journal (journal=True)")
        agent.session_dir = agent.store.path(session_id)
        agent.session_id = agent.session_dir.name
        state = replay(agent.store.events(agent.session_id))
        agent.conversation.messages = state.messages
        agent.conversation.raws = state.raws
        agent._step = state.last_step
        agent._journal = SessionJournal(agent.session_dir, agent._deliver)
        agent._resumed = True
        saved = agent.store.load_cache(agent.session_id) if agent.config.save_cache else None
        # A cache is only usable if the journal holds every message it holds (always so unless
        # the journal was edited); otherwise the journal's exact text is read in again.
        if saved is not None and saved[1].get("in_context", 1 << 62) <= len(state.messages):
            try:
                agent._session = agent.backend.load_session(saved[0])
                agent.conversation.in_context = saved[1]["in_context"]
            except (FileNotFoundError, KeyError, ValueError, BackendError):
                agent._session = None
        agent._answer_interrupted_calls(state.answered_calls)
        return agent

    # ------------------------------------------------------------------ one run

    def _run(
        self, message: str | None, listener: Callable[[Event], None] | None = None
    ) -> RunResult:
        if not self._run_lock.acquire(blocking=False):
            raise RuntimeError("a run of this agent is in progress; cancel() it or wait")
        if listener is not None:
            self._listeners.append(listener)
        try:
            self._cancel.reset()
            if not self.session_id:
                self._open_journal(message or "")
            self._emit(
                ev.RunStarted(
                    step=self._step,
                    task=message or "",
                    backend=self.backend.name,
                    model=self.backend.model,
                    resumed=self._resumed,
                    note=self.backend.note,
                )
            )
            if message is not None:
                self._add_user_message(message)
            status, summary, totals = self._loop_or_failure()
            if self.backend.note and status not in (RunStatus.submitted, RunStatus.answered):
                summary += f" (note: {self.backend.note})"  # e.g. the model is untrained
            finished = ev.RunFinished(
                step=self._step, status=status, summary=summary, totals=totals
            )
            self._emit(finished)
            self._resumed = False
            if self._journal is not None:
                self._journal.flush()  # every event is on disk and shown before run() returns
            if self.store is not None:
                self.store.update_meta(self.session_id, status=status.value, steps=self._step)
            self.last_result = RunResult(
                session_id=self.session_id,
                status=status,
                summary=summary,
                totals=totals,
                session_dir=self.session_dir,
            )
            return self.last_result
        finally:
            if listener is not None:
                self._listeners.remove(listener)
            self._run_lock.release()

    def _loop_or_failure(self) -> tuple[RunStatus, str, Totals]:
        try:
            self._ensure_started()
        except (BackendError, OSError, RuntimeError) as exc:
            where = "sandbox" if self._session is not None else "backend"
            self._emit(ev.ErrorEvent(step=self._step, message=str(exc), where=where, fatal=True))
            status = RunStatus.backend_error if where == "backend" else RunStatus.error
            return status, f"{where} failed to start: {exc}", Totals()
        loop = AgentLoop(
            config=self.config,
            backend=self.backend,
            session=self._session,
            conversation=self.conversation,
            tools=self._runner,
            approvals=self._gate,
            emit=self._emit,
            cancel=self._cancel,
            first_step=self._step,
            on_step_end=self._save_cache,
        )
        try:
            return loop.run()
        finally:
            self._step = loop.step_no

    def _ensure_started(self) -> None:
        if self._session is None:
            self._session = self.backend.open_session()
            self.conversation.in_context = 0  # a fresh backend session holds nothing yet
        if not self._sandbox_started:
            self.sandbox.start()
            self._sandbox_started = True

    def _add_user_message(self, message: str) -> None:
        if not self.conversation.messages:
            system = dsml.SystemMessage(
                content=self.config.system_prompt,
                tools=[dsml.ToolSpec.coerce(s) for s in self._runner.specs],
            )
            self._add_message(system)
        self._add_message(dsml.UserMessage(content=message))

    def _add_message(self, message: Any, raw: str | None = None) -> None:
        self.conversation.add(message, raw)
        self._emit(
            ev.MessageAdded(step=self._step, message=message.model_dump(mode="json"), raw=raw)
        )

    def _answer_interrupted_calls(self, answered: set[str]) -> None:
        """A run killed during its tools leaves calls without results; the model needs one for
        each before it can go on."""
        messages = self.conversation.messages
        last = next(
            (i for i in range(len(messages) - 1, -1, -1) if messages[i].role == "assistant"), None
        )
        if last is None:
            return
        for call in messages[last].tool_calls:
            if call.id not in answered:
                self._add_message(dsml.ToolMessage(tool_call_id=call.id, content=INTERRUPTED_CALL))

    # ------------------------------------------------------------------ events and journal

    def _open_journal(self, task: str) -> None:
        if self.store is None:
            self.session_id = f"unjournaled-{id(self):x}"
            return
        self.session_id, self.session_dir = self.store.create(
            {
                "task": task[:500],
                "backend": self.backend.name,
                "model": self.backend.model,
                "workdir": str(getattr(self.sandbox, "workdir", "") or ""),
            }
        )
        self._journal = SessionJournal(self.session_dir, self._deliver)

    def _emit(self, *events: Any) -> None:
        """Journal the events, then show each to every listener, in order: with a journal the
        listeners are called from its writer thread once the events are on disk."""
        with self._emit_lock:
            for event in events:
                event.session_id = self.session_id
            if self._journal is not None:
                self._journal.append(*events)
                return
            for event in events:
                event.seq = self._seq
                self._seq += 1
            self._deliver(list(events))

    def _deliver(self, events: list[Any]) -> None:
        for event in events:
            for listener in list(self._listeners):
                listener(event)

    def _save_cache(self) -> None:
        if self.store is None or not self.config.save_cache or self._session is None:
            return
        # The journal must hold every message the cache holds before the cache is replaced.
        self._journal.flush()
        state = {
            "in_context": self.conversation.in_context,
            "messages": len(self.conversation.messages),
        }
        self.store.save_cache(self.session_id, self._session.save, state)


def _make_backend(config: AgentConfig) -> Backend:
    from agent.backends import make_backend

    return make_backend(config)


def _make_sandbox() -> Any:
    import tools

    # The working directory itself is the sandbox's /work: the agent's changes land in it.
    return tools.DockerSandbox(tools.SandboxConfig(project_dir=Path.cwd(), mount="bind"))


def _default_tools() -> list[Any]:
    import tools

    return tools.default_tools()
