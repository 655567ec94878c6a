"""The expert policy: a `Backend` that writes the ideal completion for a task, step by step.

It runs inside the real agent loop, against the real tools in a real sandbox, so what it records
is exactly what the embedded model will later read and write: the prompt suffixes the loop
rendered (not targets) and the expert's completions (targets). Its completions come from the
task's plan; where a step needs what an earlier call printed (count lines, report an output),
it reads that from the tool result the loop handed back.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from agent.backends.base import BackendError, CancelToken, Completion, StepRequest
from agent.tiny_tasks.families import OUTPUT, Task
from dsml import AssistantMessage, ToolCall, ToolMessage, render_suffix

SUBMIT_THOUGHT = "The task is done. I will submit."
ANSWER_THOUGHT = "The output is the answer. I will submit it."


def tool_output(result_text: str) -> str:
    """The command's own output inside a bash tool result: without the `[exit code N]` line."""
    lines = result_text.rstrip("\n").split("\n")
    if lines and lines[-1].startswith("[exit code"):
        lines = lines[:-1]
    return "\n".join(lines).strip()


@dataclass
class Recording:
    """A conversation as (text, is_target) segments, in order."""

    segments: list[tuple[str, bool]] = field(default_factory=list)

    @property
    def text(self) -> str:
        return "".join(t for t, _ in self.segments)


def expert_turn(task: Task, step: int, last_result: str | None) -> AssistantMessage:
    """The expert's assistant message for `step` (0-based) of `task`."""
    ids = itertools.count()
    if step < len(task.steps):
        plan = task.steps[step]
        output = tool_output(last_result or "")
        args = {k: output if v == OUTPUT else v for k, v in plan.args.items()}
        call = ToolCall(id=f"call_{step}_{next(ids)}", name=plan.tool, arguments=args)
        return AssistantMessage(reasoning_content=plan.thought, tool_calls=[call])
    if step == len(task.steps):
        if task.answer == OUTPUT:
            answer, thought = tool_output(last_result or ""), ANSWER_THOUGHT
        else:
            answer, thought = task.answer, SUBMIT_THOUGHT
        call = ToolCall(id=f"call_{step}_0", name="submit", arguments={SUBMIT_ARG: answer})
        return AssistantMessage(reasoning_content=thought, tool_calls=[call])
    raise BackendError(f"the expert's plan for {task.family!r} has no step {step}")


SUBMIT_ARG = "summary"


class ExpertSession:
    def __init__(self, task: Task, recording: Recording):
        self.task, self.recording = task, recording
        self._tokens = 0

    def extend(
        self, request: StepRequest, on_text: Callable[[str], None], cancel: CancelToken
    ) -> Completion:
        self.recording.segments.append((request.prompt, False))
        history = list(request.messages)
        step = sum(1 for m in history if getattr(m, "role", None) == "assistant")
        results = [m for m in history if isinstance(m, ToolMessage)]
        turn = expert_turn(self.task, step, results[-1].content if results else None)
        text = render_suffix(history, [turn], request.thinking_mode)
        # The loop's prompt already ends with the generation transition; the completion is what
        # the model writes after it.
        self.recording.segments.append((text, True))
        on_text(text)
        self._tokens += 1
        return Completion(text=text, finish_reason="stop", generated_tokens=len(text))

    def fork(self) -> ExpertSession:
        raise BackendError("the expert backend does not fork")

    def save(self, directory: Path) -> None:
        return None

    @property
    def context_tokens(self) -> int:
        return 0

    @property
    def cache_bytes(self) -> int:
        return 0


class ExpertBackend:
    """A Backend whose one session follows the expert plan of `task`, recording everything."""

    name = "expert"
    model = "expert"
    context_limit = 1_000_000
    note = ""

    def __init__(self, task: Task):
        self.task = task
        self.recording = Recording()

    def open_session(self) -> ExpertSession:
        return ExpertSession(self.task, self.recording)

    def load_session(self, directory: Path) -> ExpertSession:
        raise FileNotFoundError(f"the expert backend keeps no sessions ({directory})")

    def count_tokens(self, text: str) -> int:
        return len(text)

    def close(self) -> None:
        return None
