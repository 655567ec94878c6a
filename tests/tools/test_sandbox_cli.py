"""`dsv4 sandbox setup|status|exec|prune` as a user runs them."""

from __future__ import annotations

import json
import subprocess
import sys

from tools.engine import docker_client, image_name

REQUIRED_KEYS = {
    "exit_code",
    "signal",
    "timed_out",
    "oom_killed",
    "output",
    "truncated_bytes",
    "duration_s",
}


def dsv4(*args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "agent.cli", *args], capture_output=True, text=True, timeout=timeout
    )


def test_setup_is_idempotent(engine):
    p = dsv4("sandbox", "setup")
    assert p.returncode == 0, p.stderr
    assert f"image {image_name()}" in p.stderr and "nothing to do" in p.stderr


def test_status_reports_engine_and_image(engine):
    p = dsv4("sandbox", "status")
    status = json.loads(p.stdout)
    assert p.returncode == 0 and status["engine_running"] and status["image_present"]
    assert status["image"] == image_name()


def test_exec_prints_one_json_result_and_cleans_up(engine):
    p = dsv4("sandbox", "exec", "--", "echo", "hi;", "id", "-un;", "exit", "3")
    result = json.loads(p.stdout)
    assert REQUIRED_KEYS <= set(result)
    assert (result["exit_code"], result["output"]) == (3, "hi\nsandbox\n")
    p = dsv4("sandbox", "exec", "--timeout", "1", "--", "sleep 30")
    result = json.loads(p.stdout)
    assert result["timed_out"] is True and result["duration_s"] < 1 + 2 + 5  # + kill-after


def test_exec_keep_leaves_the_sandbox_running(engine):
    p = dsv4("sandbox", "exec", "--keep", "--", "touch kept")
    name = json.loads(p.stdout)["container"]
    client = docker_client()
    try:
        assert client.containers.get(name).status == "running"
    finally:
        client.api.remove_container(name, force=True)
        client.volumes.get(name.replace("dsv4-sandbox-", "dsv4-work-")).remove(force=True)


def test_exec_without_a_command_says_how(engine):
    p = dsv4("sandbox", "exec")
    assert p.returncode == 2 and "give a command after --" in p.stderr
