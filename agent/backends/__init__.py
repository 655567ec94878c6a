"""Backends that continue a conversation: `embedded` (the model in this process), `openai` (an
OpenAI-compatible endpoint), `scripted` (recorded completions). All follow `base.Backend`."""

from agent.backends.base import (
    Backend,
    BackendError,
    BackendSession,
    CancelToken,
    Completion,
    Sampling,
    StepRequest,
)

__all__ = [
    "Backend",
    "BackendError",
    "BackendSession",
    "CancelToken",
    "Completion",
    "Sampling",
    "StepRequest",
]
