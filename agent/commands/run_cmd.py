"""`dsv4 run`: one task, headless, in a sandbox over a directory (or on an example task).

Exit codes:
  0  the model finished: it submitted (or answered without a tool call)
  1  the run failed (malformed output past the limit, cancelled, an error in the agent)
  2  usage: bad arguments, an unknown example, invalid configuration
  3  a limit stopped the run (steps, tokens, wall time, cost, context window)
  4  the backend failed (unreachable endpoint, missing model, engine error)
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

if TYPE_CHECKING:
    from agent.config import AgentConfig
    from agent.events import Event, RunStatus

    Printer = Callable[[Event], None]

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_LIMIT, EXIT_BACKEND = 0, 1, 2, 3, 4
EXAMPLES_DIR = Path(__file__).resolve().parents[2] / "examples" / "tasks"
BACKENDS = ("embedded", "openai", "scripted", "vllm")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "run",
        help="run one task headless in a sandbox",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("task", nargs="?", help="the instruction (omit with --example)")
    p.add_argument("--example", metavar="NAME", help="run examples/tasks/NAME on a temp copy")
    p.add_argument(
        "-C",
        dest="directory",
        type=Path,
        default=Path("."),
        metavar="DIR",
        help="the project directory the sandbox works on (default: .)",
    )
    add_agent_options(p)
    p.add_argument("--json", action="store_true", help="print events as JSON lines")
    p.set_defaults(func=_run)


def add_agent_options(p: argparse.ArgumentParser) -> None:
    """Options shared by `dsv4 run` and `dsv4 batch`."""
    p.add_argument("--backend", choices=BACKENDS, help="which backend (default: config, embedded)")
    p.add_argument("--model", help="model name (openai) or checkpoint directory (embedded)")
    p.add_argument("--base-url", help="endpoint of the openai backend")
    p.add_argument(
        "--script",
        type=Path,
        help="scripted backend: a folder of NN.dsml completions or a JSON file of them "
        "(example and batch tasks replay their own reference/ when none is given)",
    )
    p.add_argument(
        "--max-steps",
        type=int,
        help="stop after this many model calls (a task.toml's own [limits] win over it)",
    )
    p.add_argument(
        "--approval",
        choices=("ask", "auto-edit", "auto"),
        default="auto",
        help="approval mode (default auto: the sandbox isolates; headless runs never "
        "wait, so what would ask is refused)",
    )
    p.add_argument(
        "--sandbox",
        choices=("docker", "local"),
        default="docker",
        help="docker (default) or local: on the host, no isolation",
    )


def config_from_args(args: argparse.Namespace, project_dir: Path | None = None) -> AgentConfig:
    from agent.config import load_config

    overrides: dict[str, object] = {"approval.mode": args.approval}
    for option, key in (
        ("backend", "backend.kind"),
        ("model", "backend.model"),
        ("base_url", "backend.base_url"),
        ("script", "backend.script"),
        ("max_steps", "limits.max_steps"),
    ):
        value = getattr(args, option)
        if value is not None:
            overrides[key] = value
    return load_config(overrides, project_dir=project_dir)


def exit_code(status: RunStatus) -> int:
    from agent.events import RunStatus

    if status in (RunStatus.submitted, RunStatus.answered):
        return EXIT_OK
    if status.is_limit:
        return EXIT_LIMIT
    if status is RunStatus.backend_error:
        return EXIT_BACKEND
    return EXIT_FAILED


def _run(args: argparse.Namespace) -> int:
    from agent.backends import BackendError
    from agent.config import ConfigError
    from agent.task_runner import TaskError

    if (args.task is None) == (args.example is None):
        print(
            "dsv4 run: give a task (\"dsv4 run 'fix the tests'\") or --example NAME, not both",
            file=sys.stderr,
        )
        return EXIT_USAGE
    printer = JsonPrinter(sys.stdout) if args.json else ProgressPrinter(sys.stdout)
    try:
        if args.example is not None:
            return _run_example(args, printer)
        return _run_task(args, printer)
    except (ConfigError, TaskError) as exc:
        print(f"dsv4 run: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except BackendError as exc:
        print(f"dsv4 run: the backend failed: {exc}", file=sys.stderr)
        return EXIT_BACKEND


def _run_task(args: argparse.Namespace, printer: Printer) -> int:
    from agent.api import Agent
    from agent.task_runner import make_backend, make_sandbox
    from tools import default_tools

    directory = args.directory.resolve()
    if not directory.is_dir():
        print(f"dsv4 run: -C {args.directory}: no such directory", file=sys.stderr)
        return EXIT_USAGE
    config = config_from_args(args, project_dir=directory)
    backend = make_backend(config)
    # Bind-mounted: the agent's changes land in DIR as they happen.
    sandbox = make_sandbox(args.sandbox, mount="bind")(directory)
    # The agent starts the sandbox: a failure to start becomes the run's status, not a crash.
    # run() decides approvals by policy alone, so a headless run never waits for a person.
    try:
        with (
            Agent(
                config, backend=backend, sandbox=sandbox, tools=default_tools(), on_event=printer
            ) as agent,
            cancel_on_interrupt(agent.cancel),
        ):
            result = agent.run(args.task)
    finally:
        sandbox.stop()
        backend.close()
    return exit_code(result.status)


def _run_example(args: argparse.Namespace, printer: Printer) -> int:
    from agent.events import RunStatus
    from agent.task_runner import TaskRunner, TaskSpec, make_backend, make_sandbox

    example = EXAMPLES_DIR / args.example
    if not (example / "task.toml").is_file():
        known = sorted(p.name for p in EXAMPLES_DIR.glob("*/") if (p / "task.toml").is_file())
        print(
            f"dsv4 run: no example named {args.example!r} in {EXAMPLES_DIR}; "
            f"examples: {', '.join(known) or 'none'}",
            file=sys.stderr,
        )
        return EXIT_USAGE
    task = TaskSpec.load(example)
    config = config_from_args(args)
    out = Path(tempfile.mkdtemp(prefix=f"dsv4-example-{task.id}-"))
    runner = TaskRunner(
        config,
        out,
        make_backend=lambda t: make_backend(config, t),
        make_sandbox=make_sandbox(args.sandbox),
        on_event=lambda _task, event: printer(event),
    )
    with cancel_on_interrupt(runner.cancel):
        result = runner.run(task)
    if result.test_exit_code is None and not result.test_timed_out:
        verdict = "not run"
    else:
        verdict = "passed" if result.passed else f"failed (exit {result.test_exit_code})"
    lines = [
        f"example {task.id}: agent {result.status}, tests {verdict}",
        f"work directory: {out / task.id / 'work'}",
    ]
    if result.error:
        lines.insert(1, f"error: {result.error}")
    print("\n".join(lines), file=sys.stderr if args.json else sys.stdout)
    if result.status == "error":
        return EXIT_FAILED
    return exit_code(RunStatus(result.status))


@contextmanager
def cancel_on_interrupt(cancel: Callable[[], None]) -> Iterator[None]:
    """The first Ctrl-C cancels the run (it ends `cancelled`, its state kept); a second one
    interrupts at once."""
    if threading.current_thread() is not threading.main_thread():
        yield  # signal handlers belong to the main thread
        return
    previous = signal.getsignal(signal.SIGINT)

    def on_interrupt(signum: int, frame: object) -> None:
        print("\ncancelling (Ctrl-C again to abort)", file=sys.stderr, flush=True)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        cancel()

    signal.signal(signal.SIGINT, on_interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


class JsonPrinter:
    """`--json`: every event as one JSON line, flushed at once (a reader follows live)."""

    def __init__(self, out: TextIO) -> None:
        self.out = out

    def __call__(self, event: Event) -> None:
        self.out.write(event.model_dump_json() + "\n")
        self.out.flush()


class ProgressPrinter:
    """Readable progress: reasoning and content as they stream, each tool call and a few lines
    of its output, a usage line per step, the final status."""

    OUTPUT_LINES = 8

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self._streaming: str | None = None  # "reasoning" or "content" while deltas flow
        color = out.isatty()
        self._dim = "\x1b[2m" if color else ""
        self._bold = "\x1b[1m" if color else ""
        self._reset = "\x1b[0m" if color else ""

    def __call__(self, event: Event) -> None:
        handler = getattr(self, f"_on_{event.type}", None)
        if handler is not None:
            handler(event)
            self.out.flush()

    def _line(self, text: str) -> None:
        if self._streaming is not None:
            self.out.write(self._reset + "\n")
            self._streaming = None
        self.out.write(text + "\n")

    def _stream(self, kind: str, text: str) -> None:
        if self._streaming != kind:
            if self._streaming is not None:
                self.out.write(self._reset + "\n")
            self.out.write(self._dim if kind == "reasoning" else "")
            self._streaming = kind
        self.out.write(text)

    def _on_run_started(self, e) -> None:
        self._line(
            f"{self._bold}dsv4 run{self._reset} session {e.session_id} · "
            f"backend {e.backend} ({e.model or 'default model'})"
        )
        if e.note:
            self._line(f"note: {e.note}")

    def _on_step_started(self, e) -> None:
        self._line(
            f"{self._bold}── step {e.step}{self._reset} "
            f"({e.context_tokens} tokens in context, +{e.prompt_tokens} new)"
        )

    def _on_reasoning_delta(self, e) -> None:
        self._stream("reasoning", e.text)

    def _on_content_delta(self, e) -> None:
        self._stream("content", e.text)

    def _on_tool_call_finished(self, e) -> None:
        if e.error is not None:
            self._line(f"✗ malformed call to {e.name or '?'}: {e.error}")
            return
        args = ", ".join(f"{k}={_short(v)}" for k, v in (e.arguments or {}).items())
        self._line(f"→ {e.name}({args})")

    def _on_approval_resolved(self, e) -> None:
        if not e.approved:
            self._line(f"✗ refused ({e.by}): {e.reason}")

    def _on_tool_output(self, e) -> None:
        lines = e.text.splitlines() or ["(no output)"]
        shown = lines[: self.OUTPUT_LINES]
        if len(lines) > len(shown):
            shown.append(f"… {len(lines) - len(shown)} more lines")
        if e.is_error:
            shown[0] = f"✗ {shown[0]}"
        self._line("\n".join(f"  {self._dim}{line}{self._reset}" for line in shown))

    def _on_step_finished(self, e) -> None:
        u = e.usage
        cost = f", cost {u.cost:.4f}" if u.cost else ""
        self._line(
            f"  {self._dim}[prompt {u.prompt_tokens} tokens ({u.cached_tokens} cached) → "
            f"{u.generated_tokens} generated; context {u.context_tokens}{cost}]{self._reset}"
        )

    def _on_error(self, e) -> None:
        self._line(
            f"error{' (fatal)' if e.fatal else ''}{f' in {e.where}' if e.where else ''}: "
            f"{e.message}"
        )

    def _on_run_finished(self, e) -> None:
        t = e.totals
        self._line(f"{self._bold}■ {e.status.value}{self._reset}: {e.summary}")
        self._line(
            f"  {t.steps} steps, {t.generated_tokens} tokens generated, "
            f"{t.tool_calls} tool calls ({t.tool_errors} errors), {t.duration_s:.1f} s"
            + (f", cost {t.cost:.4f}" if t.cost else "")
        )


def _short(value: object, limit: int = 60) -> str:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    text = text.replace("\n", "⏎")
    return repr(text[:limit] + "…") if len(text) > limit else repr(text)
