"""`dsv4 sessions`, `dsv4 resume`, `dsv4 export` on journaled sessions (scripted backend, real
Docker sandbox): a run stopped by its step limit is listed, resumed to its end in the same
session, and exported as OpenAI messages and as Markdown."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from agent.cli import main
from agent.commands.run_cmd import EXAMPLES_DIR
from agent.events import StepFinished, StepStarted, parse_event

EXAMPLE = EXAMPLES_DIR / "fix-off-by-one"
SCRIPTED = ["--backend", "scripted", "--script", str(EXAMPLE / "reference")]


@pytest.fixture(autouse=True)
def sessions(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    directory = tmp_path / "sessions"
    monkeypatch.setenv("DSV4_SESSIONS_DIR", str(directory))
    return directory


def test_list_resume_and_export_a_session(
    tmp_path: Path, sessions: Path, capsys: pytest.CaptureFixture
) -> None:
    project = tmp_path / "project"
    shutil.copytree(EXAMPLE / "repo", project)
    assert main(["sessions"]) == 0
    assert "no sessions in" in capsys.readouterr().out

    assert main(["run", "Fix the failing tests.", "-C", str(project), *SCRIPTED,
                 "--max-steps", "2"]) == 3  # fmt: skip
    capsys.readouterr()
    assert main(["sessions", "--json"]) == 0
    (listed,) = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert (listed["status"], listed["steps"]) == ("step_limit", 2)
    session_id = listed["id"]
    assert main(["sessions"]) == 0
    table = capsys.readouterr().out
    assert session_id in table and "step_limit" in table and "Fix the failing tests." in table

    # Resume by a unique prefix: the saved backend state goes on at step 3 of the script.
    assert main(["resume", session_id[:-2], "-C", str(project), *SCRIPTED]) == 0
    out = capsys.readouterr().out
    assert "── step 3" in out and "── step 1" not in out and "■ submitted" in out
    assert "start = (number - 1) * per_page" in (project / "pagination.py").read_text()
    assert [s.name for s in sessions.iterdir()] == [session_id]  # the same session went on

    assert main(["export", session_id, "--format", "openai"]) == 0
    messages = json.loads(capsys.readouterr().out)
    assert [m["role"] for m in messages[:2]] == ["system", "user"]
    calls = [c["function"]["name"] for m in messages for c in m.get("tool_calls") or []]
    assert calls == ["bash", "read_file", "edit_file", "bash", "submit"]
    assert all(m.get("reasoning_content") for m in messages if m["role"] == "assistant")

    markdown = tmp_path / "transcript.md"
    assert main(["export", session_id, "-o", str(markdown)]) == 0
    text = markdown.read_text()
    assert text.startswith(f"# Session {session_id}") and "**Call** `edit_file`" in text
    assert "Run finished: submitted" in text


def test_an_unknown_session_is_a_usage_error(capsys: pytest.CaptureFixture) -> None:
    assert main(["export", "no-such-session"]) == 2
    assert "no session 'no-such-session'" in capsys.readouterr().err
    assert main(["resume", "no-such-session", *SCRIPTED]) == 2
    assert "no session 'no-such-session'" in capsys.readouterr().err


def test_resume_with_the_embedded_model_reuses_its_saved_cache(
    tmp_path: Path, sessions: Path
) -> None:
    """`dsv4 resume` of an embedded-model session continues from the cache saved beside the
    journal: the next step processes only its new prompt tokens, nothing is prefilled again."""
    project = tmp_path / "project"
    shutil.copytree(EXAMPLE / "repo", project)
    # One torch thread: on shared cores the default pool spins (see the README main-job test).
    env = {**os.environ, "DSV4_SESSIONS_DIR": str(sessions), "OMP_NUM_THREADS": "1"}
    common = ["-C", str(project), "--backend", "embedded", "--max-steps", "1", "--json"]

    def dsv4(*argv: str, exits: tuple[int, ...]) -> list:
        proc = subprocess.run(
            [sys.executable, "-m", "agent.cli", *argv, *common],
            capture_output=True, text=True, env=env, timeout=600,
        )  # fmt: skip
        assert proc.returncode in exits, proc.stderr
        return [parse_event(line) for line in proc.stdout.splitlines()]

    first = dsv4("run", "Fix the failing tests.", exits=(3,))  # the step limit
    (step1,) = [e for e in first if isinstance(e, StepFinished)]
    session_id = first[0].session_id
    # How the resumed step ends depends on what the default model writes (submit, or the limit).
    resumed = dsv4("resume", session_id, exits=(0, 1, 3))
    (started,) = [e for e in resumed if isinstance(e, StepStarted)]
    (step2,) = [e for e in resumed if isinstance(e, StepFinished)]
    assert started.context_tokens == step1.usage.context_tokens > 0
    assert step2.usage.cached_tokens == step1.usage.context_tokens
    # Only the new suffix is processed: everything else came from the loaded cache.
    assert started.prompt_tokens == step2.usage.prompt_tokens - step2.usage.cached_tokens > 0
