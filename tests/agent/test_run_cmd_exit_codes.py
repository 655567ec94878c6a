"""`dsv4 run`: progress and JSON events, each documented exit code, changes landing in -C DIR,
and the README's main job ending with a clear status. Tools run in real Docker sandboxes."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

import dsml
from agent.cli import main
from agent.commands.run_cmd import EXAMPLES_DIR
from agent.events import RunFinished, RunStarted, parse_event

EXAMPLE = EXAMPLES_DIR / "fix-off-by-one"


def turn(reasoning: str, *calls: tuple[str, dict], content: str = "") -> str:
    """What the model writes for one turn in thinking mode; calls as (name, arguments)."""
    message = dsml.AssistantMessage(
        reasoning_content=reasoning,
        content=content,
        tool_calls=[dsml.ToolCall(name=n, arguments=a) for n, a in calls],
    )
    return dsml.render_suffix([dsml.UserMessage(content="")], [message], "thinking")


@pytest.fixture(autouse=True)
def sessions_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    directory = tmp_path / "sessions"
    monkeypatch.setenv("DSV4_SESSIONS_DIR", str(directory))
    return directory


@pytest.fixture
def project(tmp_path: Path) -> Path:
    directory = tmp_path / "project"
    shutil.copytree(EXAMPLE / "repo", directory)
    return directory


def write_script(path: Path, completions: list[str]) -> Path:
    path.write_text(json.dumps({"completions": completions}))
    return path


def test_example_prints_json_events_and_exits_0(tmp_path: Path) -> None:
    env = {**os.environ, "DSV4_SESSIONS_DIR": str(tmp_path / "sessions")}
    proc = subprocess.run(
        [sys.executable, "-m", "agent.cli", "run", "--example", "fix-off-by-one",
         "--backend", "scripted", "--json"],
        capture_output=True, text=True, env=env, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    events = [parse_event(line) for line in proc.stdout.splitlines()]
    assert isinstance(events[0], RunStarted) and isinstance(events[-1], RunFinished)
    assert events[-1].status.value == "submitted"
    assert [e.seq for e in events] == list(range(len(events)))
    assert {"tool_call_finished", "tool_output", "step_finished"} <= {e.type for e in events}
    assert "example fix-off-by-one: agent submitted, tests passed" in proc.stderr


def test_progress_shows_steps_calls_outputs_and_status(capsys: pytest.CaptureFixture) -> None:
    code = main(["run", "--example", "fix-off-by-one", "--backend", "scripted"])
    out = capsys.readouterr().out
    assert code == 0
    for expected in ("── step 1", "→ bash(command='python3 -m unittest discover -v')",
                     "FAIL", "→ edit_file(", "■ submitted", "tests passed"):  # fmt: skip
        assert expected in out, expected
    assert "{" not in out.splitlines()[0]  # readable text, not JSON


def test_changes_land_in_the_directory_and_a_submit_exits_0(
    project: Path, capsys: pytest.CaptureFixture
) -> None:
    code = main(["run", "Fix the failing tests.", "-C", str(project), "--backend", "scripted",
                 "--script", str(EXAMPLE / "reference")])  # fmt: skip
    assert code == 0, capsys.readouterr().out
    assert "start = (number - 1) * per_page" in (project / "pagination.py").read_text()
    assert (project / "pagination.py").stat().st_uid == os.getuid()


def test_a_step_limit_exits_3(project: Path, capsys: pytest.CaptureFixture) -> None:
    code = main(["run", "Fix the failing tests.", "-C", str(project), "--backend", "scripted",
                 "--script", str(EXAMPLE / "reference"), "--max-steps", "1"])  # fmt: skip
    assert code == 3
    assert "■ step_limit" in capsys.readouterr().out


def test_repeated_malformed_calls_fail_with_exit_1(
    project: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    bad = turn("Call a tool that is not there.", ("teleport", {"where": "moon"}))
    script = write_script(tmp_path / "bad.json", [bad] * 5)
    code = main(["run", "Do it.", "-C", str(project), "--backend", "scripted",
                 "--script", str(script)])  # fmt: skip
    assert code == 1
    assert "■ format_error" in capsys.readouterr().out


def test_an_unreachable_endpoint_exits_4(
    project: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("DSV4_BACKEND__MAX_RETRIES", "0")
    code = main(["run", "Do it.", "-C", str(project), "--backend", "openai",
                 "--base-url", f"http://127.0.0.1:{port}/v1"])  # fmt: skip
    assert code == 4
    assert "backend_error" in capsys.readouterr().out


@pytest.mark.parametrize(
    "argv",
    [
        ["run"],
        ["run", "a task", "--example", "fix-off-by-one"],
        ["run", "--example", "no-such-example"],
        ["run", "a task", "-C", "/no/such/dir"],
    ],
    ids=["nothing", "task-and-example", "unknown-example", "missing-dir"],
)
def test_usage_errors_exit_2(argv: list[str], capsys: pytest.CaptureFixture) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("dsv4 run: ")
    if "no-such-example" in argv:
        assert "fix-off-by-one" in err  # the message lists the examples there are


def test_an_unknown_backend_is_a_usage_error(capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["run", "x", "--backend", "nope"])
    assert exc.value.code == 2


def test_readme_main_job_ends_with_a_clear_status(tmp_path: Path) -> None:
    """`dsv4 run --example fix-off-by-one` with the default (embedded) backend, in Docker: whatever
    the model writes (the untrained stand-in writes noise), the run ends with a status and never
    a traceback."""
    # One torch thread: on cores shared with other test processes torch's default pool spins
    # and the tiny model's forwards run tens of times slower (measured on the 2-core CI boxes).
    env = {**os.environ, "DSV4_SESSIONS_DIR": str(tmp_path / "sessions"), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "agent.cli", "run", "--example", "fix-off-by-one"],
        capture_output=True, text=True, env=env, timeout=600,
    )  # fmt: skip
    output = proc.stdout + proc.stderr
    assert "Traceback" not in output
    assert "backend embedded" in proc.stdout and "── step 1" in proc.stdout
    assert "\n■ " in proc.stdout  # the run's final status line
    assert "example fix-off-by-one: agent " in proc.stdout
    assert proc.returncode in (0, 1, 3)  # finished, failed (e.g. format_error) or a limit


def test_ctrl_c_cancels_the_tool_in_flight_and_exits_1(project: Path, tmp_path: Path) -> None:
    script = write_script(tmp_path / "slow.json", [
        turn("Wait a while.", ("bash", {"command": "sleep 60"})),
        turn("Done.", ("submit", {"summary": "waited"})),
    ])  # fmt: skip
    env = {**os.environ, "DSV4_SESSIONS_DIR": str(tmp_path / "sessions")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "agent.cli", "run", "Wait.", "-C", str(project),
         "--backend", "scripted", "--script", str(script)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )  # fmt: skip
    lines = []
    for line in proc.stdout:  # wait until the tool is running
        lines.append(line)
        if line.startswith("→ bash("):
            break
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 1, err
    assert "■ cancelled" in out and "Traceback" not in err
    assert "cancelling" in err
