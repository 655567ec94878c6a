"""`LocalSandbox`: the Sandbox API on the host itself. No isolation at all: only when asked for.

It runs the same command runner as `DockerSandbox`, as a child process with `root` as its work
directory, so commands get the same process groups, timeouts, output caps and path confinement
for the file operations, but no limits on memory, processes or network, and commands can touch
anything the host user can.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

from tools.sandbox import RunnerClient, RunnerSandbox, SandboxConfig

RUNNER_PATH = Path(__file__).with_name("runner.py")


class LocalSandbox(RunnerSandbox):
    """Commands and files in `root` on the host, with no isolation."""

    def __init__(self, root: Path | str, config: SandboxConfig | None = None) -> None:
        self.root = Path(root).resolve()
        if not self.root.is_dir():
            raise ValueError(f"LocalSandbox root {self.root} is not a directory; create it first")
        self.config = config or SandboxConfig()
        self.workdir = str(self.root)
        self._proc: subprocess.Popen[bytes] | None = None
        self._rc: RunnerClient | None = None
        self._lock = threading.Lock()

    def start(self) -> None:
        with self._lock:
            if self._rc is None or self._rc.dead is not None:
                self._rc = self._spawn()

    def stop(self) -> None:
        with self._lock:
            if self._rc is not None:
                self._rc.shutdown()
                self._rc = None
            if self._proc is not None:
                try:  # closing its stdin makes it kill its commands and leave
                    self._proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    self._proc.kill()
                    self._proc.wait()
                self._proc = None

    def _spawn(self) -> RunnerClient:
        env = {**os.environ, "DSV4_HOST_PATH": os.environ.get("PATH", "/usr/bin:/bin")}
        proc = subprocess.Popen(
            [sys.executable, "-S", str(RUNNER_PATH), str(self.root)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            cwd=self.root,
            env=env,
        )
        assert proc.stdin is not None and proc.stdout is not None
        stdin, stdout = proc.stdin, proc.stdout

        def send(data: bytes) -> None:
            stdin.write(data)
            stdin.flush()

        client = RunnerClient(send, stdin.close)

        def read() -> None:
            try:
                while chunk := stdout.read1(65536):
                    client.feed(chunk)
            except ValueError as e:
                proc.kill()
                client.closed(f"garbled runner output: {e}")
            client.closed(f"the runner process ended (status {proc.wait()})")

        threading.Thread(target=read, daemon=True, name="dsv4-local-runner").start()
        self._proc = proc
        return client

    def _recover(self, reason: str) -> str:
        with self._lock:
            if self._rc is not None and self._rc.dead is None and "unresponsive" not in reason:
                return "another call had already restarted it"
            if self._proc is not None and self._proc.poll() is None:
                self._proc.kill()
            self._rc = self._spawn()
        return "restarted the command runner"
