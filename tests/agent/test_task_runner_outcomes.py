"""`TaskRunner` and `run_batch` on tasks that go wrong, in real Docker sandboxes: the tests decide
pass/fail whatever the agent claims, task limits apply, a test command past its timeout fails,
a backend failure is recorded and retried on a rerun while final results are kept."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import dsml
from agent.commands.run_cmd import EXAMPLES_DIR
from agent.config import AgentConfig
from agent.task_runner import (
    BatchReport,
    TaskRunner,
    discover_tasks,
    make_backend,
    make_sandbox,
    read_result,
    run_batch,
)

EXAMPLE = EXAMPLES_DIR / "fix-off-by-one"
TOML = """instruction = "Fix the failing tests in test_pagination.py."
{limits}
[test]
command = "{command}"
timeout_s = {timeout}
"""


def submit_only() -> str:
    message = dsml.AssistantMessage(
        reasoning_content="I am sure it works.",
        tool_calls=[dsml.ToolCall(name="submit", arguments={"summary": "done (not really)"})],
    )
    return dsml.render_suffix([dsml.UserMessage(content="")], [message], "thinking")


def make_task(
    root: Path,
    name: str,
    *,
    reference: list[str] | None = None,
    limits: str = "",
    command: str = "python3 -m unittest discover",
    timeout: float = 60,
) -> Path:
    task = root / name
    shutil.copytree(EXAMPLE / "repo", task / "repo")
    (task / "task.toml").write_text(TOML.format(limits=limits, command=command, timeout=timeout))
    (task / "reference").mkdir()
    completions = reference or [p.read_text() for p in sorted((EXAMPLE / "reference").iterdir())]
    for i, text in enumerate(completions, 1):
        (task / "reference" / f"{i:02d}.dsml").write_text(text)
    return task


def runner(tmp_path: Path, out: Path) -> TaskRunner:
    config = AgentConfig(
        sessions_dir=tmp_path / "unused", backend={"kind": "scripted"}, approval={"mode": "auto"}
    )
    return TaskRunner(
        config,
        out,
        make_backend=lambda task: make_backend(config, task),
        make_sandbox=make_sandbox("docker"),
    )


def test_outcomes_are_judged_by_the_tests_and_failures_are_retried(tmp_path: Path) -> None:
    tasks_dir, out = tmp_path / "tasks", tmp_path / "out"
    full = [p.read_text() for p in sorted((EXAMPLE / "reference").iterdir())]
    make_task(tasks_dir, "claims-without-fixing", reference=[submit_only()])
    make_task(tasks_dir, "limited", limits="[limits]\nmax_steps = 2")
    make_task(tasks_dir, "slow-tests", command="sleep 30", timeout=1)
    short = make_task(tasks_dir, "script-runs-out", reference=full[:2])
    tasks = discover_tasks(tasks_dir)

    report = run_batch(tasks, out, runner(tmp_path, out), workers=2, progress=False)
    by_id = {r.id: r for r in report.tasks}
    assert report.total == 4 and report.passed == 0 and report.kept == 0

    claims = by_id["claims-without-fixing"]
    assert (claims.status, claims.passed, claims.steps) == ("submitted", False, 1)
    assert (
        claims.test_exit_code not in (0, None)
        and "FAIL" in (out / "claims-without-fixing" / "test_output.txt").read_text()
    )

    limited = by_id["limited"]
    assert (limited.status, limited.passed, limited.steps) == ("step_limit", False, 2)

    slow = by_id["slow-tests"]
    assert slow.status == "submitted" and slow.test_timed_out and not slow.passed
    assert slow.test_duration_s < 15

    runs_out = by_id["script-runs-out"]
    assert runs_out.status == "backend_error" and not runs_out.passed
    assert not runs_out.final and all(r.final for r in report.tasks if r is not runs_out)

    # Rerun with the whole reference: only the failed-by-machinery task runs again.
    for i, text in enumerate(full, 1):
        (short / "reference" / f"{i:02d}.dsml").write_text(text)
    before = read_result(out / "limited")
    again = run_batch(tasks, out, runner(tmp_path, out), workers=2, progress=False)
    assert again.kept == 3 and again.passed == 1
    assert {r.id: r.status for r in again.tasks}["script-runs-out"] == "submitted"
    assert read_result(out / "limited") == before


def test_a_broken_sandbox_is_an_error_of_that_task_only(tmp_path: Path) -> None:
    tasks_dir, out = tmp_path / "tasks", tmp_path / "out"
    make_task(tasks_dir, "a")

    def no_sandbox(workdir: Path):
        raise RuntimeError(f"no sandbox for {workdir.name} today")

    broken = runner(tmp_path, out)
    broken.make_sandbox = no_sandbox
    result = broken.run(discover_tasks(tasks_dir)[0])
    assert result.status == "error" and not result.passed and not result.final
    assert "no sandbox for work today" in (result.error or "")
    assert read_result(out / "a") == result


def test_ctrl_c_cancels_a_batch_and_starts_no_further_task(tmp_path: Path) -> None:
    tasks_dir, out = tmp_path / "tasks", tmp_path / "out"
    slow = [
        dsml.render_suffix(
            [dsml.UserMessage(content="")],
            [dsml.AssistantMessage(reasoning_content="Wait.", tool_calls=[
                dsml.ToolCall(name="bash", arguments={"command": "sleep 60"})])],
            "thinking",
        ),
        submit_only(),
    ]  # fmt: skip
    for name in ("a-slow", "b-slow"):
        make_task(tasks_dir, name, reference=slow)
    env = {**os.environ, "DSV4_SESSIONS_DIR": str(tmp_path / "unused")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "agent.cli", "batch", str(tasks_dir), "--out", str(out),
         "--backend", "scripted", "--no-progress"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )  # fmt: skip
    deadline = time.monotonic() + 60
    while not list(out.glob("a-slow/*/events.jsonl")) and time.monotonic() < deadline:
        time.sleep(0.1)
    time.sleep(1.0)  # into the tool call
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 1 and "Traceback" not in stderr, stderr
    report = BatchReport.model_validate_json((out / "results.json").read_text())
    assert [r.status for r in report.tasks] == ["cancelled", "cancelled"]
    assert report.tasks[1].error == "not started" and not (out / "b-slow").exists()
    assert not any(r.final for r in report.tasks)  # a rerun runs both
