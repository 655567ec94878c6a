"""`dsv4` alone and `dsv4 chat [-C DIR] [--resume ID]` open the app with the right factory."""

from __future__ import annotations

import subprocess
import sys

import pytest

import tui
from agent import cli


@pytest.fixture
def opened(monkeypatch) -> list:
    calls: list = []
    monkeypatch.setattr(
        tui, "run_chat", lambda factory, resume=None: calls.append((factory, resume)) or 0
    )
    return calls


def test_dsv4_alone_opens_the_chat_app(opened, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    assert cli.main([]) == 0
    [(factory, resume)] = opened
    assert resume is None and factory.config.approval.mode == "auto-edit"


def test_chat_resume_with_options_reaches_the_factory(opened, tmp_path):
    script = tmp_path / "script.json"
    script.write_text('{"completions": []}')
    argv = ["chat", "-C", str(tmp_path), "--resume", "2026", "--backend", "scripted"]
    argv += ["--script", str(script), "--approval", "ask", "--dir", str(tmp_path / "s")]
    assert cli.main(argv) == 0
    [(factory, resume)] = opened
    assert resume == "2026"
    assert (factory.config.backend.kind, factory.config.approval.mode) == ("scripted", "ask")
    assert factory.config.sessions_dir == tmp_path / "s"
    assert factory.make_backend().name == "scripted"
    sandbox = factory.make_sandbox()
    assert type(sandbox).__name__ == "DockerSandbox" and sandbox.config.project_dir == tmp_path


def test_chat_rejects_a_missing_directory(tmp_path, capsys):
    assert cli.main(["chat", "-C", str(tmp_path / "nope")]) == 2
    assert "no such directory" in capsys.readouterr().err


def test_chat_help_documents_the_options():
    out = subprocess.run(
        [sys.executable, "-m", "agent.cli", "chat", "--help"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "--resume ID" in out and "-C DIR" in out and "Esc interrupts" in out
