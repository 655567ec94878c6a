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


def session_events(steps: int, *, session_id: str = "20260101-000000-abc123") -> list:
    """A journal as the agent writes it, with fixed times (for snapshots and the long-session
    tests): a task, then per step reasoning and an answer streamed in pieces, a bash command or
    a file edit with its diff, and at the end a tool error, an error event and the run's end."""
    from agent import events as ev

    out: list = []

    def add(event):
        event.session_id, event.seq, event.time = session_id, len(out), 1_767_225_600.0 + len(out)
        out.append(event)

    task = "Fix the parser: a trailing separator must keep its empty last field."
    add(ev.RunStarted(task=task, backend="scripted", model="scripted-snap"))
    add(
        ev.MessageAdded(
            message=dsml.SystemMessage(content="You are a coding agent.").model_dump(mode="json")
        )
    )
    add(ev.MessageAdded(message=dsml.UserMessage(content=task).model_dump(mode="json")))
    for step in range(1, steps + 1):
        context = 1200 * step
        add(ev.StepStarted(step=step, prompt_tokens=60, context_tokens=context))
        reasoning = f"Step {step}: the split drops the trailing empty string; check the fixtures. "
        content = f"Step **{step}**: looking at `parse_line` in *src/parse.py*."
        for piece in range(0, len(reasoning), 12):
            add(ev.ReasoningDelta(step=step, text=reasoning[piece : piece + 12]))
        for piece in range(0, len(content), 12):
            add(ev.ContentDelta(step=step, text=content[piece : piece + 12]))
        call_id = f"call-{step}"
        if step % 2:
            args = {"command": f"python -m pytest -q tests/test_parse.py -k case_{step}"}
            data = {
                "exit_code": 1,
                "output": f"F.\nFAILED case_{step}\n1 failed, 1 passed\n",
                "duration_s": 0.42,
            }
            text, error = data["output"] + "[exit code 1]", True
        else:
            args = {
                "path": "src/parse.py",
                "old_str": "line.split(sep)[:-1]",
                "new_str": "line.split(sep)",
            }
            diff = (
                "--- a/src/parse.py\n+++ b/src/parse.py\n@@ -3,3 +3,3 @@\n"
                " def parse_line(line, sep):\n-    return line.split(sep)[:-1]\n"
                "+    return line.split(sep)\n"
            )
            data, text, error = {"path": "src/parse.py", "diff": diff}, "edited src/parse.py", False
        add(
            ev.ToolCallStarted(
                step=step, index=0, call_id=call_id, name="bash" if step % 2 else "edit_file"
            )
        )
        for name, value in args.items():
            add(
                ev.ToolCallArgumentDelta(
                    step=step, index=0, call_id=call_id, parameter=name, text=value
                )
            )
        add(
            ev.ToolCallFinished(
                step=step,
                index=0,
                call_id=call_id,
                name="bash" if step % 2 else "edit_file",
                arguments=args,
            )
        )
        add(
            ev.ToolOutput(
                step=step,
                call_id=call_id,
                tool="bash" if step % 2 else "edit_file",
                text=text,
                data=data,
                is_error=error,
                duration_s=0.42,
            )
        )
        call = dsml.ToolCall(id=call_id, name="bash" if step % 2 else "edit_file", arguments=args)
        assistant = dsml.AssistantMessage(
            reasoning_content=reasoning, content=content, tool_calls=[call]
        )
        add(ev.MessageAdded(step=step, message=assistant.model_dump(mode="json")))
        add(
            ev.MessageAdded(
                step=step,
                message=dsml.ToolMessage(tool_call_id=call_id, content=text).model_dump(
                    mode="json"
                ),
            )
        )
        usage = ev.Usage(
            prompt_tokens=context,
            cached_tokens=context - 60,
            generated_tokens=80,
            context_tokens=context + 140,
            cache_bytes=context * 4096,
            cost=0.0001,
        )
        add(ev.StepFinished(step=step, usage=usage, finish_reason="stop"))
    add(
        ev.ErrorEvent(
            step=steps, message="the sandbox restarted: its container was removed", where="sandbox"
        )
    )
    totals = ev.Totals(steps=steps, generated_tokens=80 * steps, tool_calls=steps, duration_s=12.5)
    add(
        ev.RunFinished(
            step=steps,
            status=ev.RunStatus.step_limit,
            summary="the step limit (max_steps) was reached",
            totals=totals,
        )
    )
    return out


def write_session(
    sessions_dir: Path, steps: int, session_id: str = "20260101-000000-abc123"
) -> str:
    """`session_events` as a journal on disk, ready for `--resume`."""
    import json

    directory = sessions_dir / session_id
    directory.mkdir(parents=True)
    events = session_events(steps, session_id=session_id)
    (directory / "events.jsonl").write_text("".join(e.model_dump_json() + "\n" for e in events))
    meta = {
        "id": session_id,
        "created": 1_767_225_600.0,
        "updated": 1_767_225_600.0,
        "task": "fix the parser",
    }
    (directory / "meta.json").write_text(json.dumps(meta))
    return session_id


Kit.session_events = staticmethod(session_events)
Kit.write_session = staticmethod(write_session)
