"""LocalSandbox: the same runner on the host, with the same exec semantics."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tools import LocalSandbox, SandboxConfig, SandboxError


@pytest.fixture
def local(tmp_path):
    sandbox = LocalSandbox(
        tmp_path, SandboxConfig(kill_after=0.5, output_head=100, output_tail=100)
    )
    sandbox.start()
    yield sandbox
    sandbox.stop()


def test_runs_in_the_root_with_stdin_closed(local, tmp_path):
    r = local.exec("pwd; cat; echo rc=$?", timeout=5)
    assert r.output == f"{tmp_path}\nrc=0\n"


def test_timeout_kills_the_whole_group(local):
    t0 = time.monotonic()
    r = local.exec("sleep 300 & echo $! > bg.pid; sleep 300", timeout=1)
    assert r.timed_out and time.monotonic() - t0 < 5
    pid = int(local.read_file("bg.pid"))
    # The background one died too (on the host an orphan may linger as a zombie till reaped).
    state = local.exec(f"cat /proc/{pid}/stat 2>/dev/null | cut -d' ' -f3", timeout=5).output
    assert state.strip() in ("", "Z")


def test_background_process_survives_and_does_not_block(local):
    t0 = time.monotonic()
    r = local.exec("sleep 300 & echo $! > bg.pid", timeout=30)
    assert r.exit_code == 0 and time.monotonic() - t0 < 2
    pid = int(local.read_file("bg.pid"))
    assert local.exec(f"kill -0 {pid} && kill {pid}", timeout=5).exit_code == 0


def test_output_is_capped(local):
    r = local.exec("seq 1 1000", timeout=5)
    assert r.output.startswith("1\n2\n3\n4\n5\n") and r.output.endswith("999\n1000\n")
    assert r.truncated_bytes == r.total_bytes - 200 and r.total_bytes == 3893


def test_paths_are_confined(local):
    with pytest.raises(SandboxError, match="outside the work directory"):
        local.read_file("../x")
    local.exec("ln -s / up", timeout=5)
    with pytest.raises(SandboxError, match="symlink"):
        local.write_file("up/tmp/x", "x")


def test_a_killed_runner_is_restarted_and_says_so(local):
    r = local.exec(f"kill -9 {local._proc.pid}", timeout=5)
    assert r.exit_code is None and "runner died" in r.notice
    r = local.exec("echo back", timeout=5)
    assert r.output == "back\n"


def test_any_bytes_come_back_intact_or_replaced(local):
    r = local.exec(r"printf 'tab\t\"quote\" back\\slash \x01 é \xff\n'", timeout=5)
    assert r.output == 'tab\t"quote" back\\slash \x01 é \ufffd\n'
    local.exec(r"""touch "$(printf 'bad\xffname')" """, timeout=5)
    names = [e["path"] for e in local.list_files(".")["entries"]]
    assert any(n.startswith("bad") for n in names)


def test_stop_ends_running_and_background_commands(tmp_path):
    sandbox = LocalSandbox(tmp_path)
    sandbox.start()
    sandbox.exec("sleep 300 & echo $! > bg.pid", timeout=10)
    pid = int(sandbox.read_file("bg.pid"))
    t0 = time.monotonic()
    sandbox.stop()
    assert time.monotonic() - t0 < 5
    stat = Path(f"/proc/{pid}/stat")
    assert not stat.exists() or stat.read_text().split()[2] == "Z"
