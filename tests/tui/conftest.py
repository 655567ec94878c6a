"""Shared pieces of the TUI tests: scripted turns, an agent factory over a real sandbox, and a
way to wait for the app without sleeping blindly."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path

import pytest

import dsml
from agent.backends.scripted import ScriptedBackend
from agent.config import AgentConfig
from agent.task_runner import make_sandbox
from tui import AgentFactory


def turn(reasoning: str = "", *calls: tuple[str, dict], content: str = "") -> str:
    """The text the model writes for one turn (thinking mode), calls as (name, arguments)."""
    message = dsml.AssistantMessage(
        reasoning_content=reasoning,
        content=content,
        tool_calls=[dsml.ToolCall(name=n, arguments=a) for n, a in calls],
    )
    return dsml.render_suffix([dsml.UserMessage(content="")], [message], "thinking")


def submit(summary: str) -> str:
    return turn("Done.", ("submit", {"summary": summary}))


@pytest.fixture
def project(tmp_path: Path) -> Path:
    root = tmp_path / "project"
    root.mkdir()
    (root / "notes.txt").write_text("alpha\n")
    return root


@pytest.fixture
def make_factory(tmp_path: Path, project: Path) -> Callable[..., AgentFactory]:
    """factory(script, sandbox="local", approval="auto", delay_s=0.0) -> AgentFactory."""

    def build(
        script: list[str], *, sandbox: str = "local", approval: str = "auto", delay_s: float = 0.0
    ) -> AgentFactory:
        config = AgentConfig(sessions_dir=tmp_path / "sessions", approval={"mode": approval})
        sandboxes = make_sandbox(sandbox, mount="bind")
        return AgentFactory(
            config,
            make_backend=lambda: ScriptedBackend(script, model="scripted-test", delay_s=delay_s),
            make_sandbox=lambda: sandboxes(project),
        )

    return build


async def wait_for(pilot, condition: Callable[[], object], timeout: float = 20.0) -> None:
    """Let the app run until `condition()` holds (fails after `timeout` seconds)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {condition.__doc__ or condition}")
        await pilot.pause(0.02)
    await asyncio.sleep(0)


class Kit:
    """The helpers above, as a fixture (test modules cannot import conftest under importlib)."""

    turn = staticmethod(turn)
    submit = staticmethod(submit)
    wait_for = staticmethod(wait_for)


@pytest.fixture
def kit() -> type[Kit]:
    return Kit


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"  # Textual runs on asyncio; the tests are async through anyio's plugin
