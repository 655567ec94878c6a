"""Tasks with tests: a task folder's format, one task run end to end, and batches of them.

A task is a folder holding `task.toml` and `repo/`:

```toml
title = "Fix an off-by-one bug"          # optional, for people
instruction = "The tests in ... fail ..." # what the agent is asked to do
[limits]                                  # optional; any field of `agent.config.LimitsConfig`
max_steps = 12
[test]                                    # decides pass/fail after the agent stops
command = "python3 -m unittest discover -v"
timeout_s = 60
```

and optionally `reference/NN.dsml`: the completions a model wrote on it, in order, exactly as the
model's cache holds them (reasoning, `</think>`, tool-call block, EOS). The scripted backend
replays them; they are the task's reference trajectory.

`TaskRunner.run` copies `repo/` into a fresh sandbox, runs the agent on the instruction, then runs
the test command in that same sandbox: its exit status decides `passed`. Each task leaves
`OUT/<id>/result.json`, its trajectory (the session journal, `events.jsonl`) and the test output.
`run_batch` runs a folder of tasks with N workers, writes `OUT/results.json` after every task
and skips, on a rerun, the tasks whose result is already final.
"""

from __future__ import annotations

import os
import shutil
import threading
import time
import tomllib
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from tqdm import tqdm

from agent import backends
from agent.api import Agent, RunResult
from agent.backends.base import BackendError
from agent.backends.scripted import ScriptedBackend
from agent.config import AgentConfig, LimitsConfig
from agent.events import Event, RunStatus
from tools import DockerSandbox, LocalSandbox, SandboxConfig, default_tools

if TYPE_CHECKING:
    from agent.backends.base import Backend
    from tools import Sandbox

TASK_FILE = "task.toml"
REPO_DIR = "repo"
REFERENCE_DIR = "reference"
RESULT_FILE = "result.json"
RESULTS_FILE = "results.json"
TRAJECTORY_FILE = "events.jsonl"
TEST_OUTPUT_FILE = "test_output.txt"
# Outcomes caused by the machinery rather than by the agent: a rerun tries these tasks again.
RETRIED_STATUSES = frozenset({"error", "backend_error", "cancelled"})


class TaskError(ValueError):
    """A task folder is malformed; the message names the folder and what to fix."""


class _Stopped(Exception):
    """The runner was cancelled before this task's agent started."""


class TaskTest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    command: str
    """Shell command run in the sandbox's work directory after the agent stops; exit 0 = pass."""
    timeout_s: float = 300.0
    """Seconds the test command may run; past that the task fails."""


class TaskSpec(BaseModel):
    """One task folder, read and checked."""

    model_config = ConfigDict(extra="forbid")

    id: str
    """The folder's name."""
    directory: Path
    title: str = ""
    instruction: str
    limits: dict[str, Any] = Field(default_factory=dict)
    """Overrides of `LimitsConfig` fields for this task."""
    test: TaskTest

    @field_validator("instruction")
    @classmethod
    def _instruction_not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("instruction is empty")
        return value.strip()

    @field_validator("limits")
    @classmethod
    def _limits_are_limit_fields(cls, value: dict[str, Any]) -> dict[str, Any]:
        LimitsConfig.model_validate(value)  # raises with the offending field's name
        return value

    @classmethod
    def load(cls, directory: Path) -> TaskSpec:
        """The task in `directory`; `TaskError` says what is missing or wrong."""
        directory = Path(directory)
        toml_path = directory / TASK_FILE
        if not toml_path.is_file():
            raise TaskError(
                f"{directory}: no {TASK_FILE}; a task folder holds {TASK_FILE} and {REPO_DIR}/"
            )
        if not (directory / REPO_DIR).is_dir():
            raise TaskError(f"{directory}: no {REPO_DIR}/ folder holding the task's project")
        try:
            data = tomllib.loads(toml_path.read_text(encoding="utf-8"))
        except tomllib.TOMLDecodeError as exc:
            raise TaskError(f"{toml_path}: not valid TOML: {exc}") from exc
        try:
            return cls.model_validate({**data, "id": directory.name, "directory": directory})
        except ValidationError as exc:
            raise TaskError(f"{toml_path}: {exc}") from exc

    @property
    def repo(self) -> Path:
        return self.directory / REPO_DIR

    def reference_completions(self) -> list[str]:
        """The reference trajectory's completions in order; `TaskError` when there is none."""
        files = sorted((self.directory / REFERENCE_DIR).glob("*.dsml"))
        if not files:
            raise TaskError(
                f"{self.directory}: no {REFERENCE_DIR}/*.dsml, so the scripted backend has "
                "nothing to replay; record one or pick another backend"
            )
        return [f.read_text(encoding="utf-8") for f in files]


def discover_tasks(tasks_dir: Path) -> list[TaskSpec]:
    """Every task folder directly under `tasks_dir` (those holding task.toml), by name."""
    tasks_dir = Path(tasks_dir)
    if not tasks_dir.is_dir():
        raise TaskError(f"{tasks_dir}: not a folder of tasks")
    tasks = [TaskSpec.load(d) for d in sorted(tasks_dir.iterdir()) if (d / TASK_FILE).is_file()]
    if not tasks:
        raise TaskError(f"{tasks_dir}: no task folders (subfolders with {TASK_FILE}) in it")
    return tasks


class TaskResult(BaseModel):
    """How one task went; one entry of results.json."""

    id: str
    status: str
    """The run's status (`agent.events.RunStatus` values), or "error" when the task could not
    run (sandbox, task folder); "error" and backend failures are retried on a rerun."""
    passed: bool
    """The test command exited 0 after the agent stopped."""
    steps: int = 0
    duration_s: float = 0.0
    """Whole task: sandbox start, agent, tests."""
    agent_duration_s: float = 0.0
    test_duration_s: float = 0.0
    test_exit_code: int | None = None
    test_timed_out: bool = False
    generated_tokens: int = 0
    cost: float = 0.0
    summary: str = ""
    """The agent's closing summary (the submit tool's, or its answer)."""
    error: str | None = None
    session_id: str = ""
    trajectory: str = ""
    """The trajectory's path, relative to the output folder."""

    @property
    def final(self) -> bool:
        """Whether a rerun keeps this result instead of running the task again."""
        return self.status not in RETRIED_STATUSES


class BatchReport(BaseModel):
    """results.json."""

    total: int
    passed: int
    tasks: list[TaskResult]
    """Results so far, in the tasks' order (all of them once the batch is done)."""
    kept: int = 0
    """Tasks not run again because an earlier run of this batch left a final result."""


def write_json_atomic(path: Path, text: str) -> None:
    """Write `text` to `path` so that a reader (or a crash) never sees half a file."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def read_result(task_out: Path) -> TaskResult | None:
    """The result a previous run left in `task_out`, or None (absent or unreadable)."""
    try:
        return TaskResult.model_validate_json((task_out / RESULT_FILE).read_bytes())
    except (OSError, ValidationError):
        return None


SandboxFactory = Callable[[Path], "Sandbox"]
"""host work directory -> a sandbox over that directory, not yet started."""
BackendFactory = Callable[[TaskSpec], "Backend"]
EventSink = Callable[[TaskSpec, Event], None]


class TaskRunner:
    """Runs tasks end to end; `run` keeps no state between calls (only `cancel` sets some), so
    several threads may share one runner."""

    def __init__(
        self,
        config: AgentConfig,
        out_dir: Path,
        *,
        make_backend: BackendFactory,
        make_sandbox: SandboxFactory,
        on_event: EventSink | None = None,
        owns_backends: bool = True,
    ) -> None:
        self.config = config
        self.out_dir = Path(out_dir)
        self.make_backend = make_backend
        self.make_sandbox = make_sandbox
        self.on_event = on_event
        self.owns_backends = owns_backends
        """False when `make_backend` hands out one shared backend (e.g. one loaded model for a
        whole batch): the runner then leaves closing it to the caller."""
        self._running: set[Agent] = set()
        self._lock = threading.Lock()
        self._stopping = False

    def cancel(self) -> None:
        """Cancel the agents running now (their tasks end `cancelled`, retried on a rerun) and
        start no further task."""
        with self._lock:
            self._stopping = True
            running = list(self._running)
        for agent in running:
            agent.cancel()

    def run(self, task: TaskSpec) -> TaskResult:
        """Run `task` in a fresh sandbox, then its tests; never raises for a task's failure."""
        if self._stopping:  # leaves no trace: the task runs on a rerun
            return TaskResult(id=task.id, status="cancelled", passed=False, error="not started")
        task_out = self.out_dir / task.id
        if task_out.exists():  # an unfinished earlier attempt: start clean
            shutil.rmtree(task_out)
        task_out.mkdir(parents=True)
        started = time.monotonic()
        try:
            result = self._run(task, task_out)
        except _Stopped as exc:
            result = TaskResult(id=task.id, status="cancelled", passed=False, error=str(exc))
        except BackendError as exc:  # e.g. the model could not be loaded: retried on a rerun
            result = TaskResult(
                id=task.id, status=RunStatus.backend_error.value, passed=False, error=str(exc)
            )
        except Exception as exc:  # one task's failure (sandbox, task folder) must not end a batch
            result = TaskResult(
                id=task.id, status="error", passed=False, error=f"{type(exc).__name__}: {exc}"
            )
        result.duration_s = round(time.monotonic() - started, 3)
        write_json_atomic(task_out / RESULT_FILE, result.model_dump_json(indent=2))
        return result

    def _run(self, task: TaskSpec, task_out: Path) -> TaskResult:
        workdir = task_out / "work"
        shutil.copytree(task.repo, workdir, symlinks=True)
        backend = self.make_backend(task)  # first: a missing model fails before any sandbox
        try:
            sandbox = self.make_sandbox(workdir)
            sandbox.start()
            try:
                run, agent_s = self._run_agent(task, task_out, backend, sandbox)
                test_started = time.monotonic()
                test = sandbox.exec(task.test.command, timeout=task.test.timeout_s)
                test_s = time.monotonic() - test_started
                if isinstance(sandbox, DockerSandbox) and sandbox.config.mount == "copy":
                    sandbox.copy_out(workdir)  # the project as the agent left it, to inspect
            finally:
                sandbox.stop()
        finally:
            if self.owns_backends:
                backend.close()
        (task_out / TEST_OUTPUT_FILE).write_text(test.output, encoding="utf-8")
        trajectory = ""
        if run.session_dir is not None:
            trajectory = str((run.session_dir / TRAJECTORY_FILE).relative_to(self.out_dir))
        return TaskResult(
            id=task.id,
            status=run.status.value,
            passed=test.ok,
            steps=run.totals.steps,
            agent_duration_s=round(agent_s, 3),
            test_duration_s=round(test_s, 3),
            test_exit_code=test.exit_code,
            test_timed_out=test.timed_out,
            generated_tokens=run.totals.generated_tokens,
            cost=run.totals.cost,
            summary=run.summary,
            session_id=run.session_id,
            trajectory=trajectory,
        )

    def _run_agent(
        self, task: TaskSpec, task_out: Path, backend: Backend, sandbox: Sandbox
    ) -> tuple[RunResult, float]:
        limits = self.config.limits.model_copy(update=task.limits)
        # The journal lies beside the task's other outputs: OUT/<task>/<session>/events.jsonl.
        config = self.config.model_copy(update={"limits": limits, "sessions_dir": task_out})
        on_event = None
        if self.on_event is not None:
            sink = self.on_event
            on_event = lambda event: sink(task, event)  # noqa: E731
        started = time.monotonic()
        # run() decides approvals by policy alone: a batch never waits for a person.
        with Agent(
            config, backend=backend, sandbox=sandbox, tools=default_tools(), on_event=on_event
        ) as agent:
            with self._lock:
                self._running.add(agent)
            if self._stopping:  # cancelled while this task was setting up
                raise _Stopped("cancelled before the agent started")
            try:
                run = agent.run(task.instruction)
            finally:
                with self._lock:
                    self._running.discard(agent)
        return run, time.monotonic() - started


def make_backend(config: AgentConfig, task: TaskSpec | None = None) -> Backend:
    """The backend `config` names; the scripted backend without a script of its own replays
    `task`'s reference trajectory."""
    if config.backend.kind == "scripted" and config.backend.script is None and task is not None:
        return ScriptedBackend(task.reference_completions(), model=f"scripted:{task.id}")
    try:
        return backends.make_backend(config)
    except (OSError, ValueError) as exc:  # e.g. a script or checkpoint file missing or garbled
        raise BackendError(f"{config.backend.kind} backend: {exc}") from exc


def make_sandbox(kind: str = "docker", *, mount: str = "copy") -> SandboxFactory:
    """A factory of sandboxes over a host directory: `docker` (a container; `mount` "copy"
    copies the directory in, "bind" mounts it) or `local` (the host itself, no isolation)."""

    def factory(workdir: Path) -> Sandbox:
        if kind == "local":
            return LocalSandbox(workdir)
        if kind != "docker":
            raise ValueError(f"unknown sandbox kind {kind!r}; use docker or local")
        return DockerSandbox(SandboxConfig(project_dir=workdir, mount=mount))

    return factory


def run_batch(
    tasks: list[TaskSpec],
    out_dir: Path,
    runner: TaskRunner,
    *,
    workers: int = 1,
    progress: bool = True,
) -> BatchReport:
    """Run `tasks` with `workers` in parallel; tasks with a final result in `out_dir` are kept,
    not run again. `out_dir/results.json` is rewritten after every task."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    results: dict[str, TaskResult] = {}
    todo = []
    for task in tasks:
        previous = read_result(out_dir / task.id)
        if previous is not None and previous.final:
            results[task.id] = previous
        else:
            todo.append(task)
    kept = len(results)

    def report() -> BatchReport:
        done = [results[t.id] for t in tasks if t.id in results]
        return BatchReport(
            total=len(tasks), passed=sum(r.passed for r in done), tasks=done, kept=kept
        )

    write_json_atomic(out_dir / RESULTS_FILE, report().model_dump_json(indent=2))
    bar = tqdm(
        total=len(tasks), initial=len(results), unit="task", desc="batch", disable=not progress
    )
    with bar, ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        bar.set_postfix(passed=report().passed)
        for future in as_completed([pool.submit(runner.run, task) for task in todo]):
            result = future.result()
            results[result.id] = result
            current = report()
            write_json_atomic(out_dir / RESULTS_FILE, current.model_dump_json(indent=2))
            bar.set_postfix(passed=current.passed, last=f"{result.id}:{result.status}")
            bar.update(1)
    return report()
