"""Agent overhead per step, and step time against session length.

Part 1, overhead (scripted backend, a trivial tool, no sandbox work): one long session in which
every step calls a `noop` tool. A step's overhead is its time (from one call of the backend to
the next; the last step ends when `run` returns) minus the time inside the backend generating
(the scripted backend's `extend`, less the time spent in the agent's streaming callback, which is
the agent's own work) and minus the time inside the tool. Reported as the median and p90 over a
window of steps ending at each history length, with the journal (durable, fsync'd) on and off.
Beside it, as the reference, the time to re-render the whole conversation at that length
(`dsml.encode_messages`), which an agent that rewrites its trajectory every step pays on top.

Part 2, step time against k (embedded backend, the untrained tiny model): one 200-step session
in which each step appends a tool-result turn and writes 32 tokens; the time of step k with the
session's cache (only the new tokens prefilled) beside the same step re-prefilling the whole
token history on a fresh session.

    .venv/bin/python bench/agent_bench.py [--steps 2000] [--window 50] [--model-steps 200]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

import dsml
from agent.api import Agent
from agent.backends.scripted import ScriptedBackend
from agent.config import AgentConfig
from agent.events import StepStarted
from tools import SubmitTool, Tool, ToolResult


class NoopArgs(BaseModel):
    note: str = Field(description="Anything; it is ignored.")


class NoopTool(Tool):
    """A trivial tool: its time is measured and subtracted, so what is left is the agent's."""

    name = "noop"
    description = "Does nothing and answers ok."
    Args = NoopArgs

    def __init__(self) -> None:
        self.seconds: list[tuple[float, float]] = []
        """(wall, CPU) seconds of each call."""

    def execute(self, sandbox: Any, args: NoopArgs) -> ToolResult:
        started = now()
        result = ToolResult(text="ok")
        self.seconds.append(since(started))
        return result


class NullSandbox:
    """The noop tool touches no sandbox; starting one would only add a constant."""

    workdir = ""

    def start(self) -> None:
        pass

    def stop(self) -> None:
        pass


def turn(reasoning: str, call: tuple[str, dict[str, Any]]) -> str:
    message = dsml.AssistantMessage(
        reasoning_content=reasoning, tool_calls=[dsml.ToolCall(name=call[0], arguments=call[1])]
    )
    return dsml.render_suffix([dsml.UserMessage(content="")], [message], "thinking")


def now() -> tuple[float, float]:
    """Wall clock and this process's CPU time (all threads): CPU time is what the agent's work
    costs even when other processes crowd the cores, wall time what a user waits."""
    return time.perf_counter(), time.process_time()


def since(start: tuple[float, float]) -> tuple[float, float]:
    wall, cpu = now()
    return wall - start[0], cpu - start[1]


@dataclass
class TimedSession:
    """Wraps a backend session: time in `extend`, less the time in the agent's `on_text`."""

    inner: Any
    model_seconds: list[tuple[float, float]] = field(default_factory=list)
    starts: list[tuple[float, float]] = field(default_factory=list)
    """When each call began: a step runs from one call to the next."""

    def extend(self, request: Any, on_text: Any, cancel: Any) -> Any:
        self.starts.append(now())
        in_callback = [0.0, 0.0]

        def timed_on_text(text: str) -> None:
            started = now()
            on_text(text)
            wall, cpu = since(started)
            in_callback[0] += wall
            in_callback[1] += cpu

        started = now()
        completion = self.inner.extend(request, timed_on_text, cancel)
        wall, cpu = since(started)
        self.model_seconds.append((wall - in_callback[0], cpu - in_callback[1]))
        return completion

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


class TimedScriptedBackend(ScriptedBackend):
    def open_session(self) -> TimedSession:  # type: ignore[override]
        self.timed = TimedSession(super().open_session())
        return self.timed


@dataclass
class OverheadRun:
    step_starts: list[tuple[float, float]]
    model_s: list[tuple[float, float]]
    tool_s: list[tuple[float, float]]
    end: tuple[float, float]
    messages: list[Any]
    context_tokens: list[int]
    events: int

    def overhead_ms(self, clock: int) -> list[float]:
        """Per step (0-based): its time less model and tool time, in ms; clock 0 = wall, 1 = CPU."""
        bounds = [*self.step_starts, self.end]
        return [
            1000 * (bounds[k + 1][clock] - bounds[k][clock]
                    - self.model_s[k][clock] - self.tool_s[k][clock])
            for k in range(len(self.step_starts))
        ]  # fmt: skip


def run_overhead(steps: int, journal: bool, directory: Path) -> OverheadRun:
    script = [turn(f"Step {k}: call the noop tool.", ("noop", {"note": str(k)}))
              for k in range(1, steps)]  # fmt: skip
    script.append(turn("All steps done.", ("submit", {"summary": f"{steps} steps"})))
    backend = TimedScriptedBackend(script)
    noop = NoopTool()
    config = AgentConfig(
        sessions_dir=directory,
        approval={"mode": "auto"},
        limits={"max_steps": steps, "max_format_failures": 1},
        save_cache=False,
    )
    context_tokens: list[int] = []
    events = [0]

    def on_event(event: Any) -> None:
        events[0] += 1
        if isinstance(event, StepStarted):
            context_tokens.append(event.context_tokens)

    agent = Agent(
        config,
        backend=backend,
        sandbox=NullSandbox(),
        tools=[noop, SubmitTool()],
        on_event=on_event,
        journal=journal,
    )
    with agent:
        result = agent.run("Call the noop tool once per step, then submit.")
        end = now()
    if result.status.value != "submitted" or result.totals.steps != steps:
        raise SystemExit(f"bench run ended early: {result.status.value}: {result.summary}")
    # The submit step's tool is the real submit tool; count its time as tool time too (~0).
    tool_s = [*noop.seconds, (0.0, 0.0)]
    return OverheadRun(
        backend.timed.starts, backend.timed.model_seconds, tool_s, end,
        agent.conversation.messages, context_tokens, events[0],
    )  # fmt: skip


def render_ms(messages: list[Any], repeats: int = 3) -> float:
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        dsml.encode_messages(messages, "thinking")
        best = min(best, time.perf_counter() - started)
    return 1000 * best


def overhead_table(steps: int, window: int) -> None:
    marks = [m for m in (window, 250, 500, 1000, 2000, 5000) if m <= steps]
    load = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(dir=Path.home()) as tmp:  # a real disk, not a tmpfs
        runs = {journal: run_overhead(steps, journal, Path(tmp) / str(journal))
                for journal in (False, True)}  # fmt: skip
    per_step = runs[True].events / steps
    print(f"\n## Agent overhead per step (scripted backend, noop tool, {steps}-step session)\n")
    print(
        f"Median (p90) over the {window} steps ending at each step, in ms; {per_step:.0f} "
        f"events a step; {os.cpu_count()} cores, load average {load:.1f} at the start."
    )
    print(
        "CPU = this process's CPU time (robust to other processes on the cores); wall = what "
        "a user waits. Reference: re-rendering the whole history once (what an agent that "
        "rewrites its trajectory each step pays on top).\n"
    )
    print("| step | context tokens | CPU, no journal | wall, no journal | CPU, journal "
          "| wall, journal | re-render whole history |")  # fmt: skip
    print("|---:|---:|---:|---:|---:|---:|---:|")
    messages = runs[False].messages
    for mark in marks:
        cells = []
        for journal, clock in ((False, 1), (False, 0), (True, 1), (True, 0)):
            values = sorted(runs[journal].overhead_ms(clock)[mark - window : mark])
            p90 = values[int(0.9 * (len(values) - 1))]
            cells.append(f"{statistics.median(values):.2f} ({p90:.2f})")
        # Messages up to step `mark`: system, user, then an assistant + tool result per step.
        rerender = render_ms(messages[: 2 + 2 * mark])
        ctx = runs[False].context_tokens[mark - 1]
        print(f"| {mark} | {ctx} | {' | '.join(cells)} | {rerender:.2f} |")


TOOL_RESULT_SUFFIX = (
    "<｜end▁of▁sentence｜><｜User｜><tool_result>exit code 0\nok</tool_result>"
    "<｜Assistant｜><think>"
)
"""What each later step appends: the untrained model writes noise, so the step's prompt is a
fixed, realistic tool-result turn (closing the model's turn, as the agent does for a cut-off
one) rather than whatever the loop would make of the noise."""


def step_time_table(steps: int, gen_tokens: int, marks: list[int], threads: int) -> None:
    """The embedded backend's step k against k, over one session, with its cache (each step
    prefills only the new suffix) and re-prefilling the same token history from nothing."""
    import torch

    from agent.backends.base import CancelToken, StepRequest
    from agent.backends.embedded import EmbeddedBackend, untrained_tiny_model
    from model import ModelConfig, SamplingParams

    # Measured here: on cores that other processes also use, torch's default thread pool spins
    # and small forwards run tens of times slower than on one thread.
    torch.set_num_threads(threads)
    model, tokenizer = untrained_tiny_model(ModelConfig)
    backend = EmbeddedBackend(model, tokenizer, model_name="untrained-tiny", context_limit=1 << 20)
    session = backend.open_session()
    first = dsml.encode_messages(
        [
            dsml.SystemMessage(content=AgentConfig().system_prompt, tools=[NoopTool().spec()]),
            dsml.UserMessage(content="Call the noop tool once per step, then submit."),
        ],
        "thinking",
    )
    reuse: list[tuple[float, float]] = []  # (wall, CPU) of every step
    rows = []
    for k in range(1, steps + 1):
        prompt = first if k == 1 else TOOL_RESULT_SUFFIX
        history = session.session.token_ids
        request = StepRequest(prompt=prompt, messages=[], tools=[], max_tokens=gen_tokens)
        started = now()
        completion = session.extend(request, lambda _text: None, CancelToken())
        reuse.append(since(started))
        if k in marks:
            # The same step from nothing: a fresh engine session prefills the whole history
            # plus this step's prompt, then writes as many tokens as the cached run did.
            ids = history + tokenizer.encode(prompt)
            fresh = backend.engine.new_session()
            started = now()
            backend.engine.extend(fresh, ids)
            backend.engine.generate(fresh, completion.generated_tokens, SamplingParams())
            rows.append((k, len(ids), completion.prompt_tokens - completion.cached_tokens,
                         completion.generated_tokens, since(started)))  # fmt: skip
    print(f"\n## Step time against k: embedded untrained tiny model, {steps}-step session\n")
    print(
        f"Each step appends its prompt and writes up to {gen_tokens} tokens (greedy). Cache "
        "reuse: the session's cache, only the new tokens prefilled (what the agent does); "
        "median of the 5 steps ending at k (k itself at k < 5). Re-prefill: step k once more on a "
        "fresh session that first prefills the whole history. Seconds of wall time and of this "
        f"process's CPU time; {threads} torch thread(s), {os.cpu_count()} cores, load average "
        f"{os.getloadavg()[0]:.1f} at the end.\n"
    )
    print("| step k | context tokens | new prompt tokens | generated | cache reuse, wall (CPU) "
          "| re-prefill, wall (CPU) | ratio, CPU |")  # fmt: skip
    print("|---:|---:|---:|---:|---:|---:|---:|")
    for k, ctx, new, gen, (pre_wall, pre_cpu) in rows:
        window = reuse[max(0, k - 5) : k] if k >= 5 else reuse[k - 1 : k]
        wall = statistics.median(w for w, _ in window)
        cpu = statistics.median(c for _, c in window)
        print(f"| {k} | {ctx} | {new} | {gen} | {wall:.2f} ({cpu:.2f}) "
              f"| {pre_wall:.2f} ({pre_cpu:.2f}) | {pre_cpu / cpu:.1f}x |")  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=2000, help="steps of the overhead session")
    parser.add_argument("--window", type=int, default=50, help="steps per table row")
    parser.add_argument("--model-steps", type=int, default=200, help="steps of the model session")
    parser.add_argument("--gen-tokens", type=int, default=32, help="tokens written per step")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (model part)")
    parser.add_argument("--part", choices=("all", "overhead", "model"), default="all")
    args = parser.parse_args(argv)
    if args.part in ("all", "overhead"):
        overhead_table(args.steps, args.window)
    if args.part in ("all", "model"):
        marks = sorted({1, 2, 5, 10, 25, 50, 100, 150, args.model_steps} & set(
            range(1, args.model_steps + 1)))  # fmt: skip
        step_time_table(args.model_steps, args.gen_tokens, marks, args.threads)
    return 0


if __name__ == "__main__":
    sys.exit(main())
