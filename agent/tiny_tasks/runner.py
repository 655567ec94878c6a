"""Run one task through the real agent loop in a sandbox, then judge it by the task's check."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from agent.api import Agent
from agent.config import AgentConfig, ApprovalConfig, LimitsConfig
from agent.events import Event, MessageAdded
from agent.tiny_tasks.families import Task


class SandboxProbe:
    """The task check's view of the sandbox: read a file, run a command."""

    def __init__(self, sandbox: Any):
        self.sandbox = sandbox

    def read(self, path: str) -> str | None:
        from tools import SandboxError

        try:
            return self.sandbox.read_file(path)
        except SandboxError:  # missing (or not a file): the check decides what that means
            return None

    def run(self, command: str) -> tuple[int, str]:
        result = self.sandbox.exec(command, timeout=30)
        return (-1 if result.exit_code is None else result.exit_code), result.output


@dataclass
class TaskOutcome:
    family: str
    instruction: str
    solved: bool
    status: str
    answer: str
    seconds: float
    completions: list[str] = field(default_factory=list)
    """The model's raw completions (DSML text), in order."""
    error: str | None = None


def tiny_agent_config(**overrides: Any) -> AgentConfig:
    """The configuration tasks run under: everything allowed inside the sandbox, few steps, and
    short turns (the expert's longest turn is under 100 tokens; a model that never writes EOS
    stops at 256)."""
    config = AgentConfig(
        approval=ApprovalConfig(mode="auto"),
        limits=LimitsConfig(max_steps=6, max_format_failures=2),
        save_cache=False,
        **overrides,
    )
    config.backend.max_tokens_per_step = 256
    return config


def run_task(
    task: Task,
    *,
    backend: Any,
    sandbox: Any,
    tools: list,
    config: AgentConfig | None = None,
    on_event: Callable[[Event], None] | None = None,
) -> TaskOutcome:
    """Put the task's files in `sandbox` (already started), run the agent, check the result."""
    for path, text in task.files.items():
        sandbox.write_file(path, text)
    completions: list[str] = []

    def collect(event: Event) -> None:
        if isinstance(event, MessageAdded) and event.message.get("role") == "assistant":
            if event.raw is not None:
                completions.append(event.raw)
        if on_event is not None:
            on_event(event)

    start = time.perf_counter()
    agent = Agent(
        config or tiny_agent_config(),
        backend=backend,
        sandbox=sandbox,
        tools=tools,
        on_event=collect,
        journal=False,
    )
    result = agent.run(task.instruction)
    seconds = time.perf_counter() - start
    solved = bool(task.check(SandboxProbe(sandbox), result.summary))
    return TaskOutcome(
        family=task.family,
        instruction=task.instruction,
        solved=solved,
        status=str(result.status),
        answer=result.summary,
        seconds=seconds,
        completions=completions,
    )
