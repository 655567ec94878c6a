"""The Python API: `Agent` runs tasks in a session; `RunResult` says how a run ended.

    agent = Agent(AgentConfig(), sandbox=LocalSandbox(...))
    result = agent.run("fix the failing test")          # sync, returns when the run stops
    result = agent.send("now also update the README")   # continue the same session
    async for event in agent.stream("and the changelog"):  # events as they happen
        ...
    agent.cancel()   # from any thread: stops the generation or tool in flight, keeps state
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import BaseModel

from agent.approval import Approver
from agent.config import AgentConfig
from agent.events import Event, RunStatus, Totals

if TYPE_CHECKING:
    from agent.backends.base import Backend


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
    """One agent session: a conversation held by a backend, tools in a sandbox, a journal."""

    def __init__(
        self,
        config: AgentConfig | None = None,
        *,
        backend: Backend | None = None,
        sandbox: object | None = None,
        tools: list | None = None,
        approver: Approver | None = None,
        on_event: Callable[[Event], None] | None = None,
        journal: bool = True,
        headless: bool = False,
    ) -> None:
        raise NotImplementedError("the agent loop lands in the next commit")

    def run(self, task: str) -> RunResult:
        """Run `task` (the first message of the session, or a further one) until it stops."""
        raise NotImplementedError

    def send(self, message: str) -> RunResult:
        """Continue the session with another user message."""
        raise NotImplementedError

    async def stream(self, message: str) -> AsyncIterator[Event]:
        """Run `message` and yield every event as it happens (after it is journaled)."""
        raise NotImplementedError
        yield  # pragma: no cover

    def cancel(self) -> None:
        """Stop the generation or tool in flight; the run ends with status `cancelled`, all
        state is kept, and `send` continues the session."""
        raise NotImplementedError

    def approve(self, request_id: str, approved: bool, reason: str = "") -> None:
        """Answer an `ApprovalRequested` event (when no approver callback was given)."""
        raise NotImplementedError
