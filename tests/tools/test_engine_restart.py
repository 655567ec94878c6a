"""A sandbox survives its Docker engine restarting (issue 4, section 2).

Restarting the engine that every other test and tool uses would break them mid-run, so this test
starts a second `dockerd` of its own (own socket, data root and exec root; no bridge), loads the
sandbox image into it, and restarts that one.
"""

from __future__ import annotations

import subprocess
import threading
import time
from pathlib import Path

import pytest

from tools import DockerSandbox, SandboxConfig, image_name
from tools.engine import docker_client, engine_answers

NAME = "dsv4-test-engine"
SOCKET = f"/var/run/{NAME}.sock"
URL = f"unix://{SOCKET}"
DATA_ROOT = Path(f"/var/lib/{NAME}")
EXEC_ROOT = Path(f"/var/run/{NAME}")
LOG = Path(f"/var/log/{NAME}.log")


class SecondEngine:
    def __init__(self) -> None:
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with open(LOG, "ab") as log:
            # In a network namespace of its own: dockerd creates (and with `--bridge none`
            # deletes) the docker0 bridge, and the host's belongs to the main engine.
            self.proc = subprocess.Popen(
                [
                    "unshare",
                    "--net",
                    "dockerd",
                    "-H",
                    URL,
                    "--data-root",
                    str(DATA_ROOT),
                    "--exec-root",
                    str(EXEC_ROOT),
                    "--pidfile",
                    f"{EXEC_ROOT}.pid",
                ],
                stdout=log,
                stderr=log,
                start_new_session=True,
            )
        deadline = time.monotonic() + 60
        while not engine_answers(URL):
            assert self.proc.poll() is None, f"second dockerd exited; see {LOG}"
            assert time.monotonic() < deadline, f"second dockerd did not answer; see {LOG}"
            time.sleep(0.2)

    def stop(self) -> None:
        """A clean engine stop: dockerd stops its containers, as on a restart or reboot."""
        assert self.proc is not None
        self.proc.terminate()
        self.proc.wait(timeout=60)


@pytest.fixture(scope="module")
def second_engine(engine):
    eng = SecondEngine()
    eng.start()
    try:
        if not docker_client(URL).images.list(name=image_name()):
            subprocess.run(
                f"docker save {image_name()} | docker -H {URL} load -q",
                shell=True,
                check=True,
                capture_output=True,
                timeout=300,
            )
        yield eng
    finally:
        client = docker_client(URL)
        for c in client.containers.list(all=True):
            c.remove(force=True)
        client.volumes.prune()
        eng.stop()


def test_a_sandbox_survives_its_engine_restarting(second_engine):
    sandbox = DockerSandbox(SandboxConfig(docker_host=URL))
    sandbox.start()
    try:
        sandbox.write_file("state.txt", "before the restart\n")
        old_id = docker_client(URL).api.inspect_container(sandbox.container_name)["Id"]
        second_engine.stop()
        # The engine comes back a moment after the next call has started waiting for it.
        threading.Timer(1.0, second_engine.start).start()
        results = [sandbox.exec("cat state.txt", timeout=30)]
        # The call that finds the sandbox gone says so and brings it back; whether that call ran
        # the command too depends on when the engine's stop reached the runner's stream.
        while results[-1].exit_code is None and len(results) < 3:
            results.append(sandbox.exec("cat state.txt", timeout=30))
        assert results[-1].output == "before the restart\n", results
        assert any("recreated" in (r.notice or "") for r in results), results
        new_id = docker_client(URL).api.inspect_container(sandbox.container_name)["Id"]
        assert new_id != old_id  # a new container on the same /work volume
        assert sandbox.exec("echo fine", timeout=10).output == "fine\n"
    finally:
        sandbox.stop()
