"""The agent: joins dsml, tools and model into a long-horizon loop, its API and its command line.

Public API (imported on first use, so that `dsv4 --help` stays fast):
`Agent`, `RunResult`, `AgentConfig`, `load_config`, `RunStatus`, the event types (`agent.events`),
`Backend`, `BackendSession`, `make_backend`, `ApprovalPolicy`, `ApprovalRequest`,
`ApprovalDecision`, `SessionStore`.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "Agent": "agent.api",
    "RunResult": "agent.api",
    "AgentConfig": "agent.config",
    "load_config": "agent.config",
    "ConfigError": "agent.config",
    "RunStatus": "agent.events",
    "Event": "agent.events",
    "parse_event": "agent.events",
    "Backend": "agent.backends.base",
    "BackendSession": "agent.backends.base",
    "BackendError": "agent.backends.base",
    "make_backend": "agent.backends",
    "ApprovalPolicy": "agent.approval",
    "ApprovalRequest": "agent.approval",
    "ApprovalDecision": "agent.approval",
    "SessionStore": "agent.session_store",
    "SessionNotFound": "agent.session_store",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'agent' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
