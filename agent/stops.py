"""Ways a run leaves the loop, as exceptions: raised where the reason is known, handled in one
place (`AgentLoop.run`), which turns each into the run's status and summary."""

from __future__ import annotations

from agent.events import RunStatus


class StopRun(Exception):
    """The run stops with `status`; `summary` tells the user why (or the model's answer)."""

    status: RunStatus = RunStatus.error

    def __init__(self, summary: str) -> None:
        super().__init__(summary)
        self.summary = summary


class Submitted(StopRun):
    status = RunStatus.submitted


class Answered(StopRun):
    status = RunStatus.answered


class LimitReached(StopRun):
    def __init__(self, status: RunStatus, summary: str) -> None:
        super().__init__(summary)
        self.status = status


class FormatFailures(StopRun):
    status = RunStatus.format_error


class Cancelled(StopRun):
    status = RunStatus.cancelled


class BackendFailed(StopRun):
    status = RunStatus.backend_error
