"""DockerSandbox against the real engine: the container's locks, exec semantics, files, recovery."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from tools import SandboxError
from tools.engine import LABEL, SANDBOX_UID, docker_client


def _inspect(sandbox) -> dict:
    return docker_client().api.inspect_container(sandbox.container_name)


def test_container_is_locked_down_as_configured(fresh_sandbox):
    sandbox = fresh_sandbox(memory="300m", cpus=0.5, pids=200)
    attrs = _inspect(sandbox)
    host = attrs["HostConfig"]
    assert attrs["Config"]["Labels"][f"{LABEL}.session"] == sandbox.session_id
    assert host["Init"] is True
    assert host["NetworkMode"] == "none"
    assert host["CapDrop"] == ["ALL"]
    assert "no-new-privileges" in host["SecurityOpt"]
    assert host["ReadonlyRootfs"] is True
    assert host["Memory"] == 300 * 1024 * 1024
    assert host["MemorySwap"] == 300 * 1024 * 1024
    assert host["NanoCpus"] == 500_000_000
    assert host["PidsLimit"] == 200
    # Inside: a non-root user with no capabilities, no new privileges, no network but lo.
    r = sandbox.exec(
        "id -u; grep -E '^(CapEff|NoNewPrivs)' /proc/self/status; "
        "tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d ' '; "
        "cat /sys/fs/cgroup/pids/pids.max /sys/fs/cgroup/memory/memory.limit_in_bytes",
        timeout=10,
    )
    lines = r.output.split()
    assert lines[0] == str(SANDBOX_UID)
    assert "CapEff:" in lines and lines[lines.index("CapEff:") + 1] == "0000000000000000"
    assert lines[lines.index("NoNewPrivs:") + 1] == "1"
    assert lines[lines.index("NoNewPrivs:") + 2 : -2] == ["lo"]
    assert lines[-2:] == ["200", str(300 * 1024 * 1024)]


def test_network_is_opt_in(fresh_sandbox):
    sandbox = fresh_sandbox(network=True)
    assert _inspect(sandbox)["HostConfig"]["NetworkMode"] == "bridge"
    r = sandbox.exec("tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d ' '", timeout=10)
    assert "eth0" in r.output.split()


def test_root_is_read_only_and_work_and_tmp_are_writable(docker_sandbox):
    r = docker_sandbox.exec(
        "touch /etc/x 2>&1; touch /usr/x 2>&1; echo a > /work/w && echo b > /tmp/t && cat /work/w "
        "/tmp/t && rm /work/w /tmp/t",
        timeout=10,
    )
    assert r.output.count("Read-only file system") == 2
    assert r.output.endswith("a\nb\n")


def test_exec_reports_exit_code_env_workdir_and_stdin(docker_sandbox):
    r = docker_sandbox.exec("echo out; echo err >&2; exit 7", timeout=10)
    assert (r.exit_code, r.signal, r.timed_out, r.output) == (7, None, False, "out\nerr\n")
    docker_sandbox.exec("mkdir -p sub", timeout=10)
    r = docker_sandbox.exec(
        "pwd; echo $GREETING", timeout=10, env={"GREETING": "hi"}, workdir="sub"
    )
    assert r.output == "/work/sub\nhi\n"
    r = docker_sandbox.exec("tr a-z A-Z", timeout=10, stdin="hello\n")
    assert r.output == "HELLO\n"
    r = docker_sandbox.exec("kill -TERM $$", timeout=10)
    assert r.signal == "SIGTERM" and r.exit_code == 143


def test_output_keeps_head_and_tail_and_counts_the_rest(fresh_sandbox):
    sandbox = fresh_sandbox(output_head=100, output_tail=50)
    r = sandbox.exec("seq 1 100000", timeout=20)
    total = sum(len(f"{i}\n") for i in range(1, 100001))
    assert r.total_bytes == total
    assert r.truncated_bytes == total - 150
    assert r.output.startswith("1\n2\n3\n")
    assert r.output.endswith("99999\n100000\n")
    assert f"[... {total - 150} bytes elided" in r.output


def test_copy_mode_copies_the_project_in_and_out_with_the_right_owners(fresh_sandbox, tmp_path):
    project = tmp_path / "project"
    (project / "pkg").mkdir(parents=True)
    (project / "pkg" / "mod.py").write_text("x = 1\n")
    sandbox = fresh_sandbox(project_dir=project)
    r = sandbox.exec(
        "stat -c '%u %n' pkg pkg/mod.py && echo y = 2 >> pkg/mod.py && touch new", timeout=10
    )
    assert r.output.splitlines() == [f"{SANDBOX_UID} pkg", f"{SANDBOX_UID} pkg/mod.py"]
    assert (project / "pkg" / "mod.py").read_text() == "x = 1\n"  # a copy, not the host file
    sandbox.exec("ln -s /etc/passwd evil && ln -s pkg/mod.py fine", timeout=10)
    with pytest.warns(UserWarning, match="copy_out skipped: evil"):
        out = sandbox.copy_out(tmp_path / "out")
    assert (out / "pkg" / "mod.py").read_text() == "x = 1\ny = 2\n"
    assert not (out / "evil").is_symlink() and (out / "fine").is_symlink()
    for path in (out / "pkg" / "mod.py", out / "new"):
        assert (path.stat().st_uid, path.stat().st_gid) == (os.getuid(), os.getgid())


def test_bind_mode_lets_the_sandbox_write_and_leaves_host_files_to_the_host_user(
    fresh_sandbox, tmp_path
):
    project = tmp_path / "bound"
    project.mkdir()
    (project / "a.txt").write_text("host\n")
    sandbox = fresh_sandbox(project_dir=project, mount="bind")
    r = sandbox.exec("echo sandbox >> a.txt && mkdir d && echo n > d/new.txt && id -u", timeout=10)
    assert r.exit_code == 0, r.output
    assert (project / "a.txt").read_text() == "host\nsandbox\n"
    sandbox.stop()
    for path in (project / "a.txt", project / "d", project / "d" / "new.txt"):
        assert (path.stat().st_uid, path.stat().st_gid) == (os.getuid(), os.getgid())


def test_file_operations_work_on_the_read_only_root(docker_sandbox):
    info = docker_sandbox.write_file("deep/er/f.txt", "one\ntwo\nthree\n")
    assert info["created"] is True and info["path"] == "deep/er/f.txt"
    content = docker_sandbox.read_lines("/work/deep/er/f.txt", 2, 3)
    assert (content.text, content.total_lines) == ("two\nthree\n", 3)
    names = [e["path"] for e in docker_sandbox.list_files("deep", depth=3)["entries"]]
    assert names == ["deep/er", "deep/er/f.txt"]
    docker_sandbox.exec("rm -r deep", timeout=10)


@pytest.mark.parametrize("path", ["../etc/passwd", "/etc/passwd", "a/../../x", "/work/../tmp/x"])
def test_paths_outside_the_work_directory_are_refused(docker_sandbox, path):
    with pytest.raises(SandboxError, match="outside the work directory /work"):
        docker_sandbox.read_file(path)
    with pytest.raises(SandboxError, match="outside the work directory /work"):
        docker_sandbox.write_file(path, "x")


def test_symlinks_out_of_the_work_directory_are_refused(docker_sandbox):
    docker_sandbox.exec("ln -sfn /etc etc_link && ln -sfn /tmp/t.txt tmp_file", timeout=10)
    try:
        for op in (
            lambda: docker_sandbox.read_file("etc_link/passwd"),
            lambda: docker_sandbox.write_file("tmp_file", "x"),
            lambda: docker_sandbox.list_files("etc_link"),
        ):
            with pytest.raises(SandboxError, match="symlink"):
                op()
    finally:
        docker_sandbox.exec("rm -f etc_link tmp_file", timeout=10)


def test_a_dead_container_is_recreated_with_the_work_directory_intact(fresh_sandbox):
    sandbox = fresh_sandbox()
    sandbox.write_file("keep.txt", "still here\n")
    old_id = _inspect(sandbox)["Id"]
    docker_client().api.kill(sandbox.container_name)
    time.sleep(0.3)
    r = sandbox.exec("cat keep.txt", timeout=10)
    assert r.exit_code == 0 and r.output == "still here\n"
    assert r.notice and "recreated" in r.notice
    assert _inspect(sandbox)["Id"] != old_id
    assert sandbox.exec("true", timeout=10).notice is None


def test_a_removed_container_is_recreated(fresh_sandbox):
    sandbox = fresh_sandbox()
    sandbox.write_file("keep.txt", "x")
    docker_client().api.remove_container(sandbox.container_name, force=True)
    r = sandbox.exec("cat keep.txt", timeout=10)
    assert r.output == "x" and "removed" in r.notice


def test_prune_removes_leftovers_of_ended_processes_and_keeps_live_sandboxes(docker_sandbox):
    import subprocess
    import sys

    from tools.sandbox_admin import prune_sandboxes, sandbox_status

    session = "prune-me-" + os.urandom(3).hex()
    # A process that starts a sandbox and dies without stopping it leaves a leftover behind.
    subprocess.run(
        [
            sys.executable,
            "-c",
            "from tools import DockerSandbox, SandboxConfig; "
            f"DockerSandbox(SandboxConfig(session_id='{session}')).start()",
        ],
        check=True,
        timeout=120,
    )
    names = {s.name for s in sandbox_status().sandboxes}
    assert f"dsv4-sandbox-{session}" in names and docker_sandbox.container_name in names
    removed = prune_sandboxes()
    assert removed["containers"] >= 1 and removed["volumes"] >= 1
    names = {s.name for s in sandbox_status().sandboxes}
    assert f"dsv4-sandbox-{session}" not in names
    assert not docker_client().volumes.list(filters={"name": f"dsv4-work-{session}"})
    assert docker_sandbox.exec("true", timeout=10).exit_code == 0  # the live one is kept


def test_host_bind_files_are_untouched_by_absolute_paths(tmp_path: Path, docker_sandbox):
    marker = tmp_path / "marker"
    marker.write_text("host")
    r = docker_sandbox.exec(f"echo evil > {marker}; ls {tmp_path}", timeout=10)
    assert r.exit_code != 0
    assert marker.read_text() == "host"


def test_large_files_go_both_ways_concurrently(docker_sandbox):
    from concurrent.futures import ThreadPoolExecutor

    def roundtrip(i: int) -> bool:
        text = f"{i:04d}" * 500_000  # 2 MB each way
        docker_sandbox.write_file(f"big/{i}.txt", text)
        return docker_sandbox.read_file(f"big/{i}.txt") == text

    with ThreadPoolExecutor(max_workers=16) as pool:
        assert all(pool.map(roundtrip, range(16)))
    docker_sandbox.exec("rm -r big", timeout=10)
