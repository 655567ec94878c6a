"""Backends that continue a conversation: `embedded` (the model in this process), `openai` (an
OpenAI-compatible endpoint), `scripted` (recorded completions), `vllm` (vLLM with our plugin).

All follow `base.Backend`. Each backend module `agent/backends/<kind>.py` has
`from_config(config: AgentConfig) -> Backend`; `make_backend` picks the one the config names and
imports it only then (torch, vLLM and httpx load only when used).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from agent.backends.base import (
    Backend,
    BackendError,
    BackendSession,
    CancelToken,
    Completion,
    Sampling,
    StepRequest,
)

if TYPE_CHECKING:
    from agent.config import AgentConfig


def make_backend(config: AgentConfig) -> Backend:
    """The backend `config.backend.kind` names, configured."""
    kind = config.backend.kind
    try:
        module = importlib.import_module(f"agent.backends.{kind}")
    except ModuleNotFoundError as exc:
        if exc.name != f"agent.backends.{kind}":
            raise
        raise BackendError(
            f"backend {kind!r} is not available in this installation (no agent/backends/"
            f"{kind}.py); use backend.kind = embedded, openai or scripted"
        ) from exc
    if not hasattr(module, "from_config"):
        raise BackendError(
            f"agent/backends/{kind}.py has no from_config(config); every backend module needs one"
        )
    return module.from_config(config)


__all__ = [
    "Backend",
    "BackendError",
    "BackendSession",
    "CancelToken",
    "Completion",
    "Sampling",
    "StepRequest",
    "make_backend",
]
