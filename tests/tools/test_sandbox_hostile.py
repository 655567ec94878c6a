"""Hostile commands against the real engine (issue 4, section 4).

For each: the call comes back within its timeout plus a small margin with a result that says what
happened, the host is untouched, and the next command in the same sandbox works.
"""

from __future__ import annotations

import os
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tools import default_tools
from tools.engine import docker_client

MARGIN_S = 5.0  # engine round trips and a loaded 2-core CI machine


@pytest.fixture(scope="module")
def hostile(engine):
    """A sandbox with tight limits, shared by the cases below (each must leave it usable)."""
    from tools import DockerSandbox, SandboxConfig

    sandbox = DockerSandbox(SandboxConfig(memory="256m", pids=512, cpus=1.0, kill_after=1.0))
    sandbox.start()
    yield sandbox
    sandbox.stop()


def timed(fn):
    t0 = time.monotonic()
    result = fn()
    return result, time.monotonic() - t0


def assert_next_command_works(sandbox):
    r = sandbox.exec("echo alive && ps -e --no-headers | wc -l", timeout=10)
    assert r.exit_code == 0 and r.output.startswith("alive\n"), r
    return int(r.output.split()[1])


def host_pid_count() -> int:
    return sum(1 for p in os.listdir("/proc") if p.isdigit())


def assert_host_untouched(sandbox, host_before: int) -> None:
    """The sandbox's processes show in the host's /proc, but no more than its pids limit allows,
    and the host can still start processes."""
    assert host_pid_count() < host_before + sandbox.config.pids + 200
    assert subprocess.run(["true"], timeout=10).returncode == 0


def wait_for_pids_limit(sandbox, within_s: float = 30) -> None:
    """Until the bomb fills the sandbox's pids cgroup (as the host sees it; slow on a busy host)."""
    cid = docker_client().api.inspect_container(sandbox.container_name)["Id"]
    current = Path(f"/sys/fs/cgroup/pids/docker/{cid}/pids.current")
    deadline = time.monotonic() + within_s
    while int(current.read_text()) < sandbox.config.pids - 5:
        assert time.monotonic() < deadline, "the fork bomb never reached the pids limit"
        time.sleep(0.1)


def test_fork_bomb_is_held_by_the_pids_limit_and_killed_at_the_timeout(hostile):
    host_before = host_pid_count()
    # The bomb fills the pids limit within milliseconds. Usually the shell that started it is
    # stuck retrying fork too, and the timeout ends it with its whole process group; when the
    # shell gets through first, the bomb is left behind and the next command clears it.
    r, took = timed(lambda: hostile.exec(":(){ :|:& };:; sleep 100", timeout=4))
    assert took < 4 + 1 + MARGIN_S
    assert r.timed_out, r
    assert "fork: retry: Resource temporarily unavailable" in r.output  # bash says why
    assert_host_untouched(hostile, host_before)
    assert assert_next_command_works(hostile) < 10


def test_a_fork_bomb_left_in_the_background_is_cleared_for_the_next_command(hostile):
    host_before = host_pid_count()
    r, took = timed(lambda: hostile.exec("(:(){ :|:& };:) >/dev/null 2>&1 & exit 0", timeout=10))
    assert took < 10 + MARGIN_S and r.exit_code == 0, r
    wait_for_pids_limit(hostile)
    assert_host_untouched(hostile, host_before)
    r = hostile.exec("echo alive", timeout=10)
    assert r.exit_code == 0 and r.output == "alive\n", r
    assert "process limit" in r.notice
    assert assert_next_command_works(hostile) < 10


def test_memory_bomb_is_oom_killed_and_reported(hostile):
    bomb = "python3 -c 'x = []\nwhile True: x.append(bytearray(16 << 20))'"
    r, took = timed(lambda: hostile.exec(bomb, timeout=30))
    assert took < 30 + MARGIN_S
    assert r.oom_killed and r.signal == "SIGKILL" and not r.timed_out, r
    assert_next_command_works(hostile)


def test_50_mb_of_output_comes_back_capped(hostile):
    r, took = timed(lambda: hostile.exec("head -c 50000000 /dev/zero | tr '\\0' a", timeout=60))
    assert took < 60 + MARGIN_S
    assert r.exit_code == 0 and r.total_bytes == 50_000_000
    cap = hostile.config.output_head + hostile.config.output_tail
    assert r.truncated_bytes == 50_000_000 - cap
    assert len(r.output) < cap + 200
    assert_next_command_works(hostile)


def test_sleep_past_its_timeout_is_killed_with_its_whole_group(hostile):
    r, took = timed(lambda: hostile.exec("sleep 1000 & sleep 1000; echo never", timeout=2))
    assert took < 2 + 1 + MARGIN_S
    assert r.timed_out and "never" not in r.output
    left = hostile.exec("pgrep -c -u sandbox -x sleep || true", timeout=10)
    assert left.output.strip() == "0"
    assert_next_command_works(hostile)


def test_a_command_reading_stdin_gets_eof(hostile):
    r, took = timed(lambda: hostile.exec("cat; read x; echo done $?", timeout=10))
    assert took < 10  # never waits for the timeout
    assert r.exit_code == 0 and r.output == "done 1\n"
    assert_next_command_works(hostile)


def test_a_background_process_does_not_hold_the_call(hostile):
    r, took = timed(lambda: hostile.exec("sleep 30 & echo started", timeout=20))
    assert took < 2  # not the 30 s of the background sleep
    assert r.exit_code == 0 and r.output == "started\n"
    assert (
        hostile.exec("pgrep -c -u sandbox -x sleep", timeout=10).output.strip() == "1"
    )  # still running
    hostile.exec("pkill -x sleep; true", timeout=10)
    # Also when it keeps writing to the captured output:
    r, took = timed(lambda: hostile.exec("(while :; do echo tick; sleep 0.01; done) &", timeout=20))
    assert took < 2 and r.exit_code == 0
    hostile.exec("pkill -f 'echo tick'; pkill -x bash; true", timeout=10)
    assert_next_command_works(hostile)


def test_kill_minus_one_leaves_a_usable_sandbox(hostile):
    container_id = docker_client().api.inspect_container(hostile.container_name)["Id"]
    r, took = timed(lambda: hostile.exec("kill -9 -1", timeout=10))
    assert took < 10 + MARGIN_S
    assert r.notice and "runner" in r.notice  # says what happened
    assert_next_command_works(hostile)
    # The container itself survived (its main process belongs to another user).
    assert docker_client().api.inspect_container(hostile.container_name)["Id"] == container_id


def test_writes_outside_work_fail_and_the_host_is_untouched(hostile, tmp_path: Path):
    marker = tmp_path / "host-file"
    marker.write_text("host")
    r = hostile.exec(
        f"echo x > /etc/passwd; echo x > /bin/ls; echo x > /x; echo x > {marker}; "
        "mkdir /work2; echo x > /proc/sys/kernel/hostname",
        timeout=10,
    )
    assert r.output.count("Read-only file system") >= 4
    assert marker.read_text() == "host"
    assert hostile.exec("head -c 4 /bin/ls | od -c | head -1", timeout=10).output.split()[2] == "E"
    assert_next_command_works(hostile)


@pytest.mark.parametrize("path", ["../../etc/passwd", "/etc/shadow", "sub/../../../root"])
def test_path_traversal_through_the_file_tools_is_refused(hostile, path):
    tools = {t.name: t for t in default_tools()}
    for name, args in (
        ("read_file", {"path": path}),
        ("write_file", {"path": path, "content": "x"}),
        ("edit_file", {"path": path, "old_str": "a", "new_str": "b"}),
        ("list_files", {"path": path}),
        ("search", {"pattern": "root", "path": path}),
    ):
        result = tools[name].run(hostile, args)
        assert result.is_error and "outside the work directory" in result.text, (name, result)
    assert_next_command_works(hostile)


def test_symlink_escape_through_the_file_tools_is_refused(hostile):
    hostile.exec("ln -sfn / root_link && ln -sfn /etc/passwd pw", timeout=10)
    tools = {t.name: t for t in default_tools()}
    try:
        for name, args in (
            ("read_file", {"path": "pw"}),
            ("read_file", {"path": "root_link/etc/hostname"}),
            ("write_file", {"path": "root_link/tmp/x", "content": "x"}),
            ("edit_file", {"path": "pw", "old_str": "root", "new_str": "toor"}),
            ("list_files", {"path": "root_link"}),
        ):
            result = tools[name].run(hostile, args)
            assert result.is_error and "symlink" in result.text, (name, result)
    finally:
        hostile.exec("rm -f root_link pw", timeout=10)
    assert_next_command_works(hostile)


def test_200_concurrent_execs_all_come_back(hostile):
    def one(i: int):
        return hostile.exec(f"sleep 0.5; echo {i}", timeout=60)

    with ThreadPoolExecutor(max_workers=200) as pool:
        results, took = timed(lambda: list(pool.map(one, range(200))))
    assert took < 60 + MARGIN_S
    assert [r.output for r in results] == [f"{i}\n" for i in range(200)]
    assert all(r.exit_code == 0 for r in results)
    assert_next_command_works(hostile)
