"""Approval policy: which tool calls run at once, which wait for a person, which are refused.

Rules come first (deny, then ask, then allow; each matches a tool name glob and a glob on the
call's subject: the command of `bash`, the path of file tools), then the mode:
`ask` asks for every call, `auto-edit` runs file tools and asks for shell commands, `auto` runs
everything (inside the sandbox). `submit` changes nothing in the sandbox and is never asked about.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import threading
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import Any, Literal

from pydantic import BaseModel

from agent import events as ev
from agent.backends.base import CancelToken
from agent.config import ApprovalConfig

SHELL_TOOLS = frozenset({"bash"})
"""Tools that run arbitrary commands (asked about in `auto-edit` mode)."""
NEVER_ASK = frozenset({"submit"})

Action = Literal["allow", "deny", "ask"]


class ApprovalRequest(BaseModel):
    """A tool call waiting for a decision."""

    request_id: str
    call_id: str
    tool: str
    arguments: dict[str, Any]
    subject: str
    """The command or path the rules matched against."""
    reason: str


class ApprovalDecision(BaseModel):
    approved: bool
    reason: str = ""


Approver = Callable[[ApprovalRequest], bool | ApprovalDecision | Awaitable[bool | ApprovalDecision]]
"""Decides an `ApprovalRequest`: a plain function or a coroutine function."""


@dataclass(frozen=True)
class Verdict:
    action: Action
    by: Literal["rule", "policy"]
    reason: str


class ApprovalPolicy:
    """Decides what happens to a tool call before anyone is asked."""

    def __init__(self, config: ApprovalConfig) -> None:
        self.config = config

    def decide(self, tool: str, arguments: dict[str, Any]) -> Verdict:
        subject = call_subject(tool, arguments)
        for action in ("deny", "ask", "allow"):
            for rule in self.config.rules:
                if (
                    rule.action == action
                    and _matches(rule.tool, tool)
                    and _matches(rule.pattern, subject)
                ):
                    why = f"rule {action} tool={rule.tool!r} pattern={rule.pattern!r}"
                    return Verdict(action, "rule", why)
        mode = self.config.mode
        if tool in NEVER_ASK or mode == "auto":
            return Verdict("allow", "policy", f"mode {mode}")
        if mode == "auto-edit" and tool not in SHELL_TOOLS:
            return Verdict("allow", "policy", "mode auto-edit: file tools run without asking")
        return Verdict("ask", "policy", f"mode {mode}: {tool} needs approval")


def call_subject(tool: str, arguments: dict[str, Any]) -> str:
    """What rules match on: the command of a shell tool, else the path, else the arguments."""
    if tool in SHELL_TOOLS:
        return str(arguments.get("command", ""))
    if "path" in arguments:
        return str(arguments["path"])
    return json.dumps(arguments, ensure_ascii=False, sort_keys=True)


def _matches(pattern: str, value: str) -> bool:
    return fnmatchcase(value, pattern)


class ApprovalGate:
    """Applies the policy to each call and, where it says ask, gets an answer.

    The answer comes from the `approver` callback (plain or async), or, when the run is
    interactive without a callback (the API's event stream), from `resolve` called by whoever
    reads the `ApprovalRequested` event. Headless runs never wait: a call that would ask is
    denied, and the model is told why.
    """

    def __init__(
        self,
        policy: ApprovalPolicy,
        approver: Approver | None = None,
        *,
        interactive: bool = False,
        event_loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        self.policy = policy
        self.approver = approver
        self.interactive = interactive
        self.event_loop = event_loop
        self._waiting: dict[str, tuple[threading.Event, list[ApprovalDecision]]] = {}
        self._lock = threading.Lock()

    def check(
        self,
        call_id: str,
        tool: str,
        arguments: dict[str, Any],
        emit: Callable[[Any], None],
        cancel: CancelToken,
    ) -> ApprovalDecision:
        verdict = self.policy.decide(tool, arguments)
        if verdict.action == "allow":
            return ApprovalDecision(approved=True, reason=verdict.reason)
        request_id = f"approval-{uuid.uuid4().hex[:12]}"
        if verdict.action == "deny" or (self.approver is None and not self.interactive):
            reason = (
                verdict.reason
                if verdict.action == "deny"
                else (
                    f"{verdict.reason}, and this run is headless (no one to ask); allow it with "
                    "approval.mode or an allow rule"
                )
            )
            emit(
                ev.ApprovalResolved(
                    request_id=request_id,
                    call_id=call_id,
                    approved=False,
                    by=verdict.by,
                    reason=reason,
                )
            )
            return ApprovalDecision(approved=False, reason=reason)
        request = ApprovalRequest(
            request_id=request_id,
            call_id=call_id,
            tool=tool,
            arguments=arguments,
            subject=call_subject(tool, arguments),
            reason=verdict.reason,
        )
        if self.approver is None:  # registered before anyone can see the request
            with self._lock:
                self._waiting[request_id] = (threading.Event(), [])
        emit(
            ev.ApprovalRequested(
                request_id=request_id,
                call_id=call_id,
                tool=tool,
                arguments=arguments,
                reason=verdict.reason,
            )
        )
        decision = self._ask(request, cancel)
        emit(
            ev.ApprovalResolved(
                request_id=request_id,
                call_id=call_id,
                approved=decision.approved,
                by="user",
                reason=decision.reason,
            )
        )
        return decision

    def resolve(self, request_id: str, approved: bool, reason: str = "") -> None:
        """Answer a pending request (from any thread)."""
        with self._lock:
            waiting = self._waiting.get(request_id)
        if waiting is None:
            raise KeyError(f"no approval request {request_id!r} is waiting (answered already?)")
        waiting[1].append(ApprovalDecision(approved=approved, reason=reason))
        waiting[0].set()

    def _ask(self, request: ApprovalRequest, cancel: CancelToken) -> ApprovalDecision:
        if self.approver is not None:
            answer = self.approver(request)
            if inspect.isawaitable(answer):
                answer = self._await(answer)
            if isinstance(answer, ApprovalDecision):
                return answer
            return ApprovalDecision(approved=bool(answer), reason="approver callback")
        with self._lock:
            done, box = self._waiting[request.request_id]
        try:
            while not done.wait(0.05):
                if cancel.cancelled:
                    return ApprovalDecision(approved=False, reason="cancelled while waiting")
            return box[0]
        finally:
            with self._lock:
                self._waiting.pop(request.request_id, None)

    def _await(self, awaitable: Awaitable[Any]) -> Any:
        if self.event_loop is not None and self.event_loop.is_running():
            return asyncio.run_coroutine_threadsafe(_wrap(awaitable), self.event_loop).result()
        return asyncio.run(_wrap(awaitable))


async def _wrap(awaitable: Awaitable[Any]) -> Any:
    return await awaitable
