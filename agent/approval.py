"""Approval policy: which tool calls run at once, which wait for a person, which are refused.

Rules come first (deny, then ask, then allow; each matches a tool name glob and a glob on the
call's subject: the command of `bash`, the path of file tools), then the mode:
`ask` asks for every call, `auto-edit` runs file tools and asks for shell commands, `auto` runs
everything (inside the sandbox). `submit` changes nothing in the sandbox and is never asked about.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import Any, Literal

from pydantic import BaseModel

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


Approver = Callable[
    [ApprovalRequest], bool | ApprovalDecision | Awaitable[bool | ApprovalDecision]
]
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
                if rule.action == action and _matches(rule.tool, tool) and _matches(
                    rule.pattern, subject
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
