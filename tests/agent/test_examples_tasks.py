"""The example tasks: well-formed folders, a real failing test each, reference trajectories that
are V4 thinking-mode DSML with tool calls the tools accept."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from agent.commands.run_cmd import EXAMPLES_DIR
from agent.task_runner import TaskError, TaskSpec, discover_tasks
from dsml import parse_completion
from tools import default_tools

EOS = "<｜end▁of▁sentence｜>"
TASKS = discover_tasks(EXAMPLES_DIR)
TOOLS = {tool.name: tool for tool in default_tools()}


def test_there_are_at_least_six_examples_and_the_readme_one() -> None:
    names = {task.id for task in TASKS}
    assert len(names) >= 6
    assert "fix-off-by-one" in names  # the README's main job runs it


@pytest.mark.parametrize("task", TASKS, ids=lambda t: t.id)
def test_the_task_fails_before_the_agent_works(task: TaskSpec, tmp_path: Path) -> None:
    work = tmp_path / "work"
    shutil.copytree(task.repo, work)
    proc = subprocess.run(task.test.command, shell=True, cwd=work, capture_output=True, timeout=60)
    assert proc.returncode != 0, f"{task.id}: its tests already pass, so it tests nothing"


@pytest.mark.parametrize("task", TASKS, ids=lambda t: t.id)
def test_reference_is_v4_thinking_dsml_with_valid_tool_calls(task: TaskSpec) -> None:
    completions = task.reference_completions()
    specs = [tool.spec() for tool in TOOLS.values()]
    for step, text in enumerate(completions, 1):
        where = f"{task.id} step {step}"
        # What the model writes after `<｜Assistant｜><think>`: reasoning, `</think>`, then
        # the tool-call block, then EOS.
        assert text.endswith(EOS), where
        assert text.count("</think>") == 1 and not text.startswith("<think>"), where
        assert "\n\n<｜DSML｜tool_calls>\n" in text, where
        turn = parse_completion(text, "thinking", tools=specs, strict=True)
        assert (turn.reasoning_content or "").strip(), where
        assert turn.tool_calls and not turn.errors and not turn.repairs, where
        assert not turn.truncated, where
        for call in turn.tool_calls:
            assert call.name in TOOLS, where
            TOOLS[call.name].Args.model_validate(call.arguments)
        submits = [c for c in turn.tool_calls if c.name == "submit"]
        assert bool(submits) == (step == len(completions)), f"{where}: submit only at the end"


def test_a_folder_without_task_toml_is_refused_with_its_name(tmp_path: Path) -> None:
    (tmp_path / "repo").mkdir()
    with pytest.raises(TaskError, match="no task.toml"):
        TaskSpec.load(tmp_path)


def test_an_unknown_limit_is_refused_with_its_name(tmp_path: Path) -> None:
    (tmp_path / "repo").mkdir()
    (tmp_path / "task.toml").write_text(
        'instruction = "x"\n[limits]\nmax_stepz = 3\n[test]\ncommand = "true"\n'
    )
    with pytest.raises(TaskError, match="max_stepz"):
        TaskSpec.load(tmp_path)


def test_a_task_without_reference_says_so_for_the_scripted_backend(tmp_path: Path) -> None:
    (tmp_path / "repo").mkdir()
    (tmp_path / "task.toml").write_text('instruction = "x"\n[test]\ncommand = "true"\n')
    task = TaskSpec.load(tmp_path)
    assert task.limits == {} and task.test.timeout_s > 0
    with pytest.raises(TaskError, match="nothing to replay"):
        task.reference_completions()
