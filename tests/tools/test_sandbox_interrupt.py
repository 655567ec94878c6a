"""`Sandbox.interrupt()` from another thread ends the running command (its whole process group)
at once, the waiting `exec` says it was interrupted, and the sandbox goes on serving."""

from __future__ import annotations

import threading
import time

import pytest

from tools import LocalSandbox, SandboxConfig
from tools.builtin_tools import render_exec

# A duration no other process on the host is likely to sleep for, so the count below is ours.
SLEEP = "sleep 61.37"
COUNT = f"pgrep -cfx '{SLEEP}'"  # whole command lines equal to it: not pgrep's own


@pytest.fixture(params=["docker", "local"])
def sandbox(request, tmp_path):
    if request.param == "docker":
        yield request.getfixturevalue("docker_sandbox")
        return
    local = LocalSandbox(tmp_path, SandboxConfig(kill_after=0.5))
    local.start()
    yield local
    local.stop()


def running(sandbox) -> int:
    return int(sandbox.exec(COUNT, timeout=10).output.strip() or 0)


def test_interrupt_kills_the_running_command_and_the_sandbox_goes_on(sandbox):
    results = []
    # A child in the background too: the whole group must go, not only the shell.
    worker = threading.Thread(
        target=lambda: results.append(
            sandbox.exec(f"echo started; {SLEEP} & {SLEEP}; wait", timeout=120)
        )
    )
    worker.start()
    deadline = time.monotonic() + 10
    while running(sandbox) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert running(sandbox) == 2
    t0 = time.monotonic()
    assert sandbox.interrupt() == 1
    worker.join(10)
    waited = time.monotonic() - t0
    assert not worker.is_alive() and waited < 10  # not the 61 s the command would take
    (r,) = results
    assert r.interrupted and not r.timed_out and not r.ok
    assert r.signal == "SIGKILL" and r.output == "started\n"
    assert "[interrupted:" in render_exec(r, 120)
    assert running(sandbox) == 0
    assert sandbox.interrupt() == 0  # nothing runs now
    after = sandbox.exec("echo next", timeout=10)
    assert after.output == "next\n" and after.ok and not after.interrupted
