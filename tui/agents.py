"""Where the app gets its agents: a new session or a journaled one, and how each is closed."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from agent import Agent, AgentConfig, Backend, SessionStore
from agent import events as ev
from agent.session_store import SessionInfo


class AgentFactory:
    """Opens agents over one configuration; each gets a fresh backend and sandbox from the
    given factories (None: what the configuration names, a Docker sandbox over the working
    directory), and `close` frees them."""

    def __init__(
        self,
        config: AgentConfig,
        *,
        make_backend: Callable[[], Backend] | None = None,
        make_sandbox: Callable[[], Any] | None = None,
    ) -> None:
        self.config = config
        self.make_backend = make_backend
        self.make_sandbox = make_sandbox
        self._owned: dict[int, tuple[Backend | None, Any]] = {}

    def open(self, session_id: str | None = None) -> Agent:
        """A new session, or the journaled session `session_id` (an id or a unique prefix)."""
        backend = self.make_backend() if self.make_backend else None
        sandbox = self.make_sandbox() if self.make_sandbox else None
        try:
            if session_id:
                agent = Agent.resume(session_id, self.config, backend=backend, sandbox=sandbox)
            else:
                agent = Agent(self.config, backend=backend, sandbox=sandbox)
        except BaseException:
            if backend is not None:
                backend.close()
            raise
        self._owned[id(agent)] = (backend, sandbox)
        return agent

    def close(self, agent: Agent) -> None:
        agent.close()
        backend, sandbox = self._owned.pop(id(agent), (None, None))
        if sandbox is not None:
            sandbox.stop()
        if backend is not None:
            backend.close()

    def history(self, session_id: str) -> list[ev.Event]:
        """The journaled events of a session (an id or a unique prefix), in order."""
        store = SessionStore(self.config.sessions_dir)
        return list(store.events(store.path(session_id).name))

    def sessions(self) -> list[SessionInfo]:
        return SessionStore(self.config.sessions_dir).list()
