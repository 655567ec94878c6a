"""Held-out tasks through the full agent loop with the embedded model, each in its own sandbox."""

from __future__ import annotations

import statistics
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agent.tiny_tasks.families import Task, sample_tasks
from agent.tiny_tasks.runner import TaskOutcome, run_task, tiny_agent_config

SHIPPED_MODEL = Path(__file__).resolve().parents[2] / "model" / "default"


def strict_parse_counts(completions: list[str], tools: list[dict[str, Any]]) -> tuple[int, int]:
    """(tool-call blocks, blocks that parse in strict mode with every call valid).

    A completion holds a block when it contains the DSML marker at all: a malformed attempt
    counts as a block that failed.
    """
    from dsml import DsmlError, parse_completion

    blocks = ok = 0
    for text in completions:
        if "｜DSML｜" not in text:
            continue
        blocks += 1
        try:
            turn = parse_completion(text, "thinking", tools=tools, strict=True)
        except DsmlError:
            continue
        ok += bool(turn.tool_calls) and not turn.errors and not turn.truncated
    return blocks, ok


@dataclass
class EvalReport:
    outcomes: list[TaskOutcome]
    task_seconds: list[float]
    blocks: int = 0
    blocks_ok: int = 0
    per_family: dict[str, list[int]] = field(default_factory=dict)

    @property
    def solved(self) -> int:
        return sum(o.solved for o in self.outcomes)

    def summary(self) -> dict[str, Any]:
        return {
            "solved": self.solved,
            "total": len(self.outcomes),
            "solve_rate": self.solved / max(1, len(self.outcomes)),
            "strict_parse_rate": self.blocks_ok / self.blocks if self.blocks else None,
            "tool_call_blocks": self.blocks,
            "median_s": statistics.median(self.task_seconds) if self.task_seconds else None,
            "max_s": max(self.task_seconds) if self.task_seconds else None,
            "per_family": {
                fam: {"solved": s, "total": t} for fam, (s, t) in sorted(self.per_family.items())
            },
            "statuses": _count(o.status for o in self.outcomes),
        }


def _count(items) -> dict[str, int]:
    out: dict[str, int] = defaultdict(int)
    for item in items:
        out[item] += 1
    return dict(out)


def load_backend(model_dir: Path | None = None):
    """The embedded backend on the shipped dsv4-tiny (or `model_dir`)."""
    from agent.backends.embedded import from_config

    config = tiny_agent_config()
    config.backend.model = str(model_dir or SHIPPED_MODEL)
    return from_config(config)


def evaluate(
    tasks: list[Task],
    *,
    backend: Any,
    make_sandbox: Callable[[], Any],
    on_outcome: Callable[[TaskOutcome, float], None] | None = None,
) -> EvalReport:
    """Run every task in a fresh sandbox; the task time counts sandbox start to verdict."""
    from tools import default_tools

    report = EvalReport([], [])
    for task in tasks:
        start = time.perf_counter()
        sandbox = make_sandbox()
        sandbox.start()
        tools = default_tools()
        try:
            outcome = run_task(task, backend=backend, sandbox=sandbox, tools=tools)
        finally:
            sandbox.stop()
        seconds = time.perf_counter() - start
        report.outcomes.append(outcome)
        report.task_seconds.append(seconds)
        blocks, ok = strict_parse_counts(outcome.completions, [t.spec() for t in tools])
        report.blocks += blocks
        report.blocks_ok += ok
        fam = report.per_family.setdefault(task.family, [0, 0])
        fam[0] += outcome.solved
        fam[1] += 1
        if on_outcome is not None:
            on_outcome(outcome, seconds)
    return report


def held_out_tasks(n: int, seed: int) -> list[Task]:
    return sample_tasks(n, seed, split="held_out")
