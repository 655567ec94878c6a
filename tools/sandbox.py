"""The `Sandbox` API shared by `DockerSandbox` and `LocalSandbox`, and the client of the runner.

Both sandboxes drive the same command runner (`tools/runner.py`) over one stream: in Docker it
is a long-lived `docker exec` inside the container, on the host a child process. What differs is
only how that stream is opened and what happens when it breaks.
"""

from __future__ import annotations

import itertools
import json
import marshal
import threading
import uuid
from collections.abc import Callable
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from pathlib import Path
from typing import Any, Literal, Protocol, Self, runtime_checkable

from pydantic import BaseModel, Field, field_validator

RUNNER_SOURCE = (Path(__file__).with_name("runner.py")).read_text()


class SandboxConfig(BaseModel):
    """Limits and layout of one sandbox."""

    image: str | None = None
    """Docker image; None means the image `dsv4 sandbox setup` builds."""
    memory: str = "2g"
    """Memory limit (swap included), Docker syntax: "512m", "2g"."""
    cpus: float = 1.0
    """CPU limit in cores."""
    pids: int = 1024
    """Most processes and threads at once (a fork bomb stops here)."""
    network: bool = False
    """Give the sandbox a network (bridge); off by default."""
    tmp_size: str = "512m"
    """Size of the tmpfs at /tmp (counts against the memory limit)."""
    project_dir: Path | None = None
    """Host directory that becomes /work (copied in, or bind-mounted); None: an empty /work."""
    mount: Literal["copy", "bind"] = "copy"
    """"copy": /work is a Docker volume filled from project_dir (copy_out() brings it back);
    "bind": project_dir itself is mounted at /work."""
    output_head: int = 16_384
    """Bytes of a command's output kept from its start."""
    output_tail: int = 16_384
    """Bytes of a command's output kept from its end (the middle is elided)."""
    default_timeout: float = 120.0
    """Seconds a command may run when the caller gives no timeout."""
    kill_after: float = 2.0
    """Seconds between SIGTERM and SIGKILL once a command's timeout has passed."""
    env: dict[str, str] = Field(default_factory=dict)
    """Environment added to every command."""
    session_id: str | None = None
    """Labels the container (one per agent session); None: a fresh random id."""
    docker_host: str | None = None
    """Docker engine to use ("unix:///path.sock"); None: ours, started by `ensure_engine`."""

    @field_validator("project_dir")
    @classmethod
    def _expand(cls, v: Path | None) -> Path | None:
        return None if v is None else v.expanduser().resolve()


class ExecResult(BaseModel):
    """What became of one command."""

    exit_code: int | None
    """The command's exit status (128+N when killed by signal N); None if it never reported."""
    signal: str | None = None
    """Name of the signal that ended the command ("SIGKILL"), if one did."""
    timed_out: bool = False
    """The timeout passed and the command's whole process group was killed."""
    interrupted: bool = False
    """`Sandbox.interrupt()` killed the command's whole process group before it ended."""
    oom_killed: bool = False
    """The kernel's OOM killer ended the command (the sandbox's memory limit)."""
    output: str = ""
    """stdout and stderr interleaved; head and tail kept, the middle elided with a marker."""
    truncated_bytes: int = 0
    """Bytes of output elided from the middle."""
    total_bytes: int = 0
    """Bytes of output the command wrote in all."""
    duration_s: float = 0.0
    """Wall time of the command inside the sandbox."""
    notice: str | None = None
    """Something the caller should know about the sandbox itself (e.g. it was recreated)."""

    @property
    def ok(self) -> bool:
        return self.exit_code == 0 and not (self.timed_out or self.interrupted)


class FileContent(BaseModel):
    """A slice of a text file, lines start..end (1-based, inclusive) of total_lines."""

    path: str
    text: str
    start: int
    end: int
    total_lines: int
    size: int


class SandboxError(RuntimeError):
    """A file operation was refused or failed; the message says why and what to do."""


@runtime_checkable
class Sandbox(Protocol):
    """Where tools run: commands and files under one work directory."""

    workdir: str

    def start(self) -> None: ...

    def exec(
        self,
        command: str,
        *,
        timeout: float | None = None,
        env: dict[str, str] | None = None,
        workdir: str | None = None,
        stdin: str | None = None,
    ) -> ExecResult: ...

    def read_file(self, path: str, start: int | None = None, end: int | None = None) -> str: ...

    def read_lines(
        self, path: str, start: int | None = None, end: int | None = None
    ) -> FileContent: ...

    def write_file(self, path: str, text: str) -> dict[str, Any]: ...

    def list_files(
        self, path: str = ".", depth: int = 2, ignore: list[str] | None = None, limit: int = 500
    ) -> dict[str, Any]: ...

    def search(
        self,
        pattern: str,
        path: str = ".",
        *,
        glob: str | None = None,
        ignore_case: bool = False,
        limit: int = 200,
    ) -> dict[str, Any]: ...

    def interrupt(self) -> int:
        """Kill the commands running now (their whole process groups), from any thread: each
        `exec` waiting on one returns at once with `interrupted` set. Returns how many."""
        ...

    def stop(self) -> None: ...


class SandboxUnavailable(SandboxError):
    """The sandbox broke and could not be brought back (e.g. the engine stays down)."""


class RunnerGone(RuntimeError):
    """The runner's stream closed (the runner was killed or the container went away)."""


class RunnerClient:
    """Requests to one runner over one stream, answered out of order, matched by id."""

    def __init__(self, send: Callable[[bytes], None], close: Callable[[], None]) -> None:
        self._send = send
        self._close = close
        self._lock = threading.Lock()  # guards _pending and dead
        # Writes have their own lock: a writer blocked on a full pipe must not keep the reader
        # thread from matching answers, or runner and host would wait on each other.
        self._send_lock = threading.Lock()
        self._ids = itertools.count(1)
        self._pending: dict[int, Future[dict[str, Any]]] = {}
        self._buf = b""
        self.dead: str | None = None  # why the stream closed, once it has

    def request(self, op: str, wait: float, **fields: Any) -> dict[str, Any]:
        """Send one request and wait up to `wait` s for its answer (TimeoutError past that)."""
        fut: Future[dict[str, Any]] = Future()
        with self._lock:
            if self.dead is not None:
                raise RunnerGone(self.dead)
            rid = next(self._ids)
            self._pending[rid] = fut
        frame = marshal.dumps({"id": rid, "op": op, **fields})
        try:
            with self._send_lock:
                self._send(len(frame).to_bytes(4, "big") + frame)
        except OSError as e:
            self.closed(f"could not write to the runner: {e}")
            raise RunnerGone(self.dead) from e
        try:
            return fut.result(timeout=wait)
        except FutureTimeout:
            with self._lock:
                self._pending.pop(rid, None)
            raise TimeoutError(f"the runner did not answer {op} within {wait:.1f} s") from None

    def feed(self, data: bytes) -> None:
        """Bytes of the runner's stdout, from the reader thread (JSON lines: the sandbox is not
        trusted, so nothing it sends is unmarshalled). Raises ValueError on garbage."""
        self._buf += data
        while b"\n" in self._buf:
            line, self._buf = self._buf.split(b"\n", 1)
            msg = json.loads(line)
            if not isinstance(msg, dict):
                raise ValueError(f"runner sent {line[:80]!r}, not a JSON object")
            with self._lock:
                fut = self._pending.pop(msg.get("id"), None)
            if fut is not None:
                fut.set_result(msg)

    def closed(self, reason: str) -> None:
        with self._lock:
            self._fail_all(reason)

    def _fail_all(self, reason: str) -> None:
        if self.dead is None:
            self.dead = reason
        for fut in self._pending.values():
            fut.set_exception(RunnerGone(reason))
        self._pending.clear()

    def shutdown(self) -> None:
        self.closed("the sandbox was stopped")
        try:
            self._close()
        except OSError:
            pass


def new_session_id() -> str:
    return uuid.uuid4().hex[:12]


class RunnerSandbox:
    """The Sandbox methods that only talk to the runner; subclasses open and mend the stream."""

    workdir: str
    config: SandboxConfig
    _rc: RunnerClient | None
    _lock: threading.Lock

    def _runner(self) -> tuple[RunnerClient, str | None]:
        """A live runner, and a notice if it (or the sandbox) had to be brought back."""
        with self._lock:
            if self._rc is None:
                raise RuntimeError("the sandbox is not started; call start() first")
            if self._rc.dead is None:
                return self._rc, None
            reason = self._rc.dead
        try:
            notice = self._recover(reason)
        except Exception as e:
            raise SandboxUnavailable(
                f"the sandbox is down and could not be brought back: {type(e).__name__}: {e}"
            ) from e
        with self._lock:
            assert self._rc is not None
            return self._rc, notice

    def _recover(self, reason: str) -> str:
        """Bring a dead runner back; return what was done, for the caller."""
        raise NotImplementedError

    def _try_recover(self, reason: str) -> str:
        try:
            return self._recover(reason)
        except Exception as e:  # the result must still come back, saying what went wrong
            return f"bringing the sandbox back failed: {type(e).__name__}: {e}"

    def exec(
        self,
        command: str,
        *,
        timeout: float | None = None,
        env: dict[str, str] | None = None,
        workdir: str | None = None,
        stdin: str | None = None,
    ) -> ExecResult:
        cfg = self.config
        timeout = cfg.default_timeout if timeout is None else timeout
        if timeout <= 0:
            raise ValueError(f"timeout must be positive, got {timeout}")
        try:
            client, notice = self._runner()
        except SandboxUnavailable as e:
            return ExecResult(exit_code=None, notice=str(e))
        try:
            msg = client.request(
                "exec",
                wait=timeout + cfg.kill_after + 10,
                command=command,
                timeout=timeout,
                kill_after=cfg.kill_after,
                env={**cfg.env, **(env or {})},
                workdir=workdir,
                stdin=stdin,
                head=cfg.output_head,
                tail=cfg.output_tail,
            )
        except RunnerGone as e:
            done = self._try_recover(str(e))
            return ExecResult(
                exit_code=None,
                signal="SIGKILL",
                notice=_join(
                    notice,
                    f"the command runner died while this command ran ({e}); "
                    f"{done}. The command may have killed it (e.g. `kill -9 -1`).",
                ),
            )
        except TimeoutError as e:
            done = self._try_recover(f"unresponsive: {e}")
            return ExecResult(exit_code=None, timed_out=True, notice=_join(notice, f"{e}; {done}"))
        if not msg.get("ok"):
            return ExecResult(exit_code=None, output=msg.get("error", ""), notice=notice)
        fields = {k: msg[k] for k in ExecResult.model_fields if k in msg}
        if notice:
            fields["notice"] = _join(notice, fields["notice"]) if fields.get("notice") else notice
        return ExecResult(**fields)

    def interrupt(self) -> int:
        # The runner serves requests while commands run, so this goes over the same stream. A
        # runner that is down runs nothing: there is nothing to interrupt, and nothing to mend.
        with self._lock:
            client = self._rc
        if client is None or client.dead is not None:
            return 0
        try:
            return int(client.request("interrupt", wait=5).get("interrupted", 0))
        except (RunnerGone, TimeoutError):
            return 0

    def _file_op(self, op: str, **fields: Any) -> dict[str, Any]:
        client, _ = self._runner()
        try:
            msg = client.request(op, wait=60, **fields)
        except RunnerGone as e:
            self._try_recover(str(e))
            client, _ = self._runner()
            msg = client.request(op, wait=60, **fields)
        if not msg.pop("ok", False):
            raise SandboxError(msg.get("error", f"{op} failed"))
        msg.pop("id", None)
        return msg

    def read_lines(
        self, path: str, start: int | None = None, end: int | None = None
    ) -> FileContent:
        msg = self._file_op("read", path=path, start=start, end=end)
        return FileContent(**{k: msg[k] for k in FileContent.model_fields})

    def read_file(self, path: str, start: int | None = None, end: int | None = None) -> str:
        return self.read_lines(path, start, end).text

    def write_file(self, path: str, text: str) -> dict[str, Any]:
        return self._file_op("write", path=path, text=text)

    def list_files(
        self, path: str = ".", depth: int = 2, ignore: list[str] | None = None, limit: int = 500
    ) -> dict[str, Any]:
        return self._file_op("list", path=path, depth=depth, ignore=ignore or [], limit=limit)

    def search(
        self,
        pattern: str,
        path: str = ".",
        *,
        glob: str | None = None,
        ignore_case: bool = False,
        limit: int = 200,
    ) -> dict[str, Any]:
        return self._file_op(
            "search", pattern=pattern, path=path, glob=glob, ignore_case=ignore_case, limit=limit
        )

    def start(self) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _join(a: str | None, b: str) -> str:
    return f"{a}; {b}" if a else b
