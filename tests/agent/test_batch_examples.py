"""`dsv4 batch` on every example task with the scripted backend replaying each task's reference
trajectory, in real Docker sandboxes: all pass, results.json and the trajectories are written, and
a rerun keeps the finished tasks instead of running them again."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from agent.commands.run_cmd import EXAMPLES_DIR
from agent.events import RunFinished, RunStarted
from agent.session_store import read_events
from agent.task_runner import BatchReport, discover_tasks


def batch(out: Path, tmp_path: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "DSV4_SESSIONS_DIR": str(tmp_path / "unused-sessions")}
    return subprocess.run(
        [sys.executable, "-m", "agent.cli", "batch", str(EXAMPLES_DIR), "--workers", "2",
         "--out", str(out), "--backend", "scripted"],
        capture_output=True, text=True, env=env, timeout=300,
    )  # fmt: skip


def test_every_example_passes_and_a_rerun_keeps_them(tmp_path: Path) -> None:
    out = tmp_path / "out"
    proc = batch(out, tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    ids = [task.id for task in discover_tasks(EXAMPLES_DIR)]

    raw = json.loads((out / "results.json").read_text())
    assert {"total", "passed", "tasks"} <= raw.keys()
    assert {"id", "status", "passed", "steps", "duration_s"} <= raw["tasks"][0].keys()
    report = BatchReport.model_validate(raw)
    assert report.total == report.passed == len(ids) >= 6
    assert [r.id for r in report.tasks] == ids
    for result in report.tasks:
        assert result.status == "submitted" and result.passed and result.test_exit_code == 0
        assert result.steps == len(list((EXAMPLES_DIR / result.id / "reference").glob("*.dsml")))
        events = list(read_events(out / result.trajectory))  # one trajectory per task
        assert isinstance(events[0], RunStarted) and isinstance(events[-1], RunFinished)
        assert events[-1].status.value == "submitted"
        # unittest's "OK", or the "ok" a script-style test prints (fix-typo)
        assert "OK" in (out / result.id / "test_output.txt").read_text().upper()
    # The work directory is the project as the agent left it.
    fixed = (out / "fix-off-by-one" / "work" / "pagination.py").read_text()
    assert "start = (number - 1) * per_page" in fixed
    assert f"{len(ids)}/{len(ids)}" in proc.stderr  # the tqdm progress bar

    stamps = {i: (out / i / "result.json").stat().st_mtime_ns for i in ids}
    again = batch(out, tmp_path)
    assert again.returncode == 0
    assert f"({len(ids)} kept from an earlier run)" in again.stdout
    assert stamps == {i: (out / i / "result.json").stat().st_mtime_ns for i in ids}
    assert BatchReport.model_validate_json((out / "results.json").read_text()).kept == len(ids)


def test_batch_usage_and_backend_errors(tmp_path: Path, capsys) -> None:
    from agent.cli import main

    out = str(tmp_path / "out")
    assert main(["batch", str(tmp_path / "missing"), "--out", out]) == 2
    assert "not a folder of tasks" in capsys.readouterr().err
    assert main(["batch", str(EXAMPLES_DIR), "--out", out, "--workers", "0"]) == 2
    assert main(["batch", str(tmp_path), "--out", out]) == 2
    assert "no task folders" in capsys.readouterr().err
    code = main(["batch", str(EXAMPLES_DIR), "--out", out, "--backend", "scripted",
                 "--script", str(tmp_path / "no-script.json")])  # fmt: skip
    assert code == 4
    err = capsys.readouterr().err
    assert "the backend failed" in err and "no-script.json" in err
