"""The terminal UI (`dsv4 chat`): a Textual app over the agent's public API and events.

Public API: `ChatApp` (the app), `AgentFactory` (how it opens and closes agents), `run_chat`
(open the app; what `dsv4 chat` calls).
"""

from tui.agents import AgentFactory
from tui.app import ChatApp


def run_chat(factory: AgentFactory, *, resume: str | None = None) -> int:
    """Run the app until the user quits; returns the exit status."""
    ChatApp(factory, resume=resume).run()
    return 0


__all__ = ["AgentFactory", "ChatApp", "run_chat"]
