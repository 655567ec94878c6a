"""Runs one tool call: look the tool up, validate the arguments, ask the approval gate, run it in
the sandbox (stoppable by cancel), and report the output as an event.

Nothing a tool does ends the run: unknown tools, bad arguments, refusals, exceptions and
timeouts all come back as error text for the model to act on.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

import dsml
from agent import events as ev
from agent.approval import ApprovalGate
from agent.backends.base import CancelToken


@dataclass
class CallOutcome:
    text: str
    """What the model reads as the call's result."""
    is_error: bool = False
    submitted: bool = False
    malformed: bool = False
    """The call named no tool or had invalid arguments (counts as a format failure)."""
    data: dict[str, Any] = field(default_factory=dict)
    duration_s: float = 0.0


class ToolRunner:
    def __init__(self, tools: list[Any], sandbox: Any) -> None:
        self.by_name = {tool.name: tool for tool in tools}
        self.specs: list[dict[str, Any]] = [tool.spec() for tool in tools]
        self.sandbox = sandbox

    def run(
        self,
        call: dsml.ToolCall,
        approvals: ApprovalGate,
        emit: Callable[[ev._Event], None],
        cancel: CancelToken,
    ) -> CallOutcome:
        outcome = self._run(call, approvals, emit, cancel)
        emit(
            ev.ToolOutput(
                call_id=call.id,
                tool=call.name,
                text=outcome.text,
                data=outcome.data,
                is_error=outcome.is_error,
                duration_s=outcome.duration_s,
            )
        )
        return outcome

    def _run(
        self,
        call: dsml.ToolCall,
        approvals: ApprovalGate,
        emit: Callable[[ev._Event], None],
        cancel: CancelToken,
    ) -> CallOutcome:
        tool = self.by_name.get(call.name)
        if tool is None:
            return CallOutcome(
                f"Error: there is no tool named {call.name!r}. Available tools: "
                f"{', '.join(sorted(self.by_name))}.",
                is_error=True,
                malformed=True,
            )
        try:
            args = tool.Args.model_validate(call.arguments)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in e['loc']) or 'arguments'}: {e['msg']}"
                for e in exc.errors()
            )
            return CallOutcome(
                f"Error: invalid arguments for {call.name}: {problems}. Call it "
                "again with arguments that follow its schema.",
                is_error=True,
                malformed=True,
            )
        decision = approvals.check(call.id, call.name, call.arguments, emit, cancel)
        if not decision.approved:
            return CallOutcome(
                f"Not run: the call was not approved ({decision.reason}).", is_error=True
            )
        return self._execute(tool, args, cancel)

    def _execute(self, tool: Any, args: Any, cancel: CancelToken) -> CallOutcome:
        """Run the tool in a worker thread so that a cancel does not wait for it to finish."""
        box: list[Any] = []
        started = time.monotonic()

        def work() -> None:
            try:
                box.append(tool.run(self.sandbox, args))
            except Exception as exc:  # a tool's failure is the model's information, not ours
                box.append(exc)

        worker = threading.Thread(target=work, name=f"tool-{tool.name}", daemon=True)
        worker.start()
        while worker.is_alive():
            worker.join(0.05)
            if cancel.cancelled and worker.is_alive():
                return self._interrupted(worker, box, started)
        result = box[0]
        if isinstance(result, Exception):
            return CallOutcome(
                f"Error: {tool.name} failed: {result}",
                is_error=True,
                duration_s=time.monotonic() - started,
            )
        return CallOutcome(
            result.text,
            is_error=result.is_error,
            submitted=bool(getattr(result, "submitted", False)),
            data=dict(result.data or {}),
            duration_s=time.monotonic() - started,
        )

    def _interrupted(self, worker: threading.Thread, box: list[Any], started: float) -> CallOutcome:
        """Kill what the tool runs in the sandbox and report what it did up to then."""
        self.sandbox.interrupt()
        worker.join(5.0)  # an interrupted command answers at once, with its output so far
        text = (
            "Interrupted while running (the run was cancelled or hit its time limit); "
            "it may have partly run."
        )
        data: dict[str, Any] = {"interrupted": True}
        if box and not isinstance(box[0], Exception):
            text += "\n" + box[0].text
            data = {**(box[0].data or {}), **data}
        return CallOutcome(text, is_error=True, data=data, duration_s=time.monotonic() - started)
