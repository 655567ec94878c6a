"""`DockerSandbox`: one long-lived, locked-down container per agent session.

The container's main process is `sleep infinity` under Docker's init, running as the `keeper`
user; commands and file operations go to the runner (`tools/runner.py`), a long-lived
`docker exec` running as the `sandbox` user. So a command that kills every process it may
(`kill -9 -1`) takes the runner down but not the container: the next call starts a new runner.
If the container itself is gone (the engine restarted, someone removed it), the next call makes a
new one on the same /work volume and says so in its result.
"""

from __future__ import annotations

import atexit
import functools
import os
import socket
import struct
import tarfile
import tempfile
import threading
import time
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tools.engine import (
    KEEPER_UID,
    LABEL,
    SANDBOX_UID,
    WORK_DIR,
    EngineError,
    engine_answers,
    ensure_engine,
    image_name,
    shared_client,
)
from tools.sandbox import (
    RUNNER_SOURCE,
    RunnerClient,
    RunnerSandbox,
    SandboxConfig,
    new_session_id,
)
from tools.sandbox_admin import owner_label

if TYPE_CHECKING:
    import docker

# Reads the runner's source from stdin (length first) and runs it: `ps` then shows this line,
# not 15 kB of source.
BOOTSTRAP = (
    "import os\n"
    "h = b''\n"
    "while len(h) < 16: h += os.read(0, 16 - len(h))\n"
    "n = int(h); src = b''\n"
    "while len(src) < n: src += os.read(0, n - len(src))\n"
    "exec(compile(src, 'dsv4-runner', 'exec'), {'__name__': '__main__'})"
)
PIDS_DIRS = "/sys/fs/cgroup/pids:/sys/fs/cgroup"
SPOOL_BYTES = 32 << 20  # archives up to this size stay in memory on their way in or out
OOM_FILES = "/sys/fs/cgroup/memory/memory.oom_control:/sys/fs/cgroup/memory.events"
_engine_checked = False
_engine_lock = threading.Lock()


def _ensure_engine_once() -> None:
    """`ensure_engine` once per process (it costs a few ms when all is there, more otherwise)."""
    global _engine_checked
    with _engine_lock:
        if not _engine_checked:
            ensure_engine(progress=None)
            _engine_checked = True


class DockerSandbox(RunnerSandbox):
    """Commands and files in a Docker container with hard limits and no network by default."""

    def __init__(self, config: SandboxConfig | None = None) -> None:
        self.config = config or SandboxConfig()
        self.session_id = self.config.session_id or new_session_id()
        self.container_name = f"dsv4-sandbox-{self.session_id}"
        self.volume_name = f"dsv4-work-{self.session_id}"
        self.workdir = WORK_DIR
        self.image = self.config.image or image_name()
        self._client: docker.DockerClient | None = None
        self._container_id: str | None = None
        self._rc: RunnerClient | None = None
        self._lock = threading.Lock()
        self._chowned = False
        if self.config.mount == "bind" and self.config.project_dir is None:
            raise ValueError("mount='bind' needs a project_dir to mount at /work")
        # Bind mounts: commands run as the host user, so files keep the host's owner; only
        # root is mapped to the sandbox user (commands never run as root).
        host_uid = os.getuid()
        self._exec_user = (
            f"{host_uid}:{os.getgid()}"
            if self.config.mount == "bind" and host_uid != 0
            else f"{SANDBOX_UID}:{SANDBOX_UID}"
        )

    # ---- life cycle ---------------------------------------------------------------------------
    def start(self) -> None:
        """Create and start the container (and its /work) and the runner inside it."""
        with self._lock:
            if self._rc is not None and self._rc.dead is None:
                return
            if self.config.docker_host is None:
                _ensure_engine_once()
            self._client = shared_client(self.config.docker_host)
            fresh_volume = self._create_container()
            if fresh_volume and self.config.project_dir and self.config.mount == "copy":
                self._copy_in(self.config.project_dir)
            self._rc = self._start_runner()

    def stop(self, *, keep_volume: bool = False) -> None:
        """Remove the container (and its /work volume unless asked to keep it)."""
        import docker

        with self._lock:
            if self._rc is not None:
                self._rc.shutdown()
                self._rc = None
            client = self._client or shared_client(self.config.docker_host)
            removals = [lambda: client.api.remove_container(self.container_name, force=True)]
            if self.config.mount == "copy" and not keep_volume:
                removals.append(lambda: client.api.remove_volume(self.volume_name, force=True))
            for remove in removals:
                try:
                    remove()
                except docker.errors.NotFound:
                    pass
                except Exception as e:  # the engine may be down: stopping must not fail
                    warnings.warn(
                        f"sandbox {self.container_name}: cleanup failed ({e}); "
                        "`dsv4 sandbox prune` removes it later",
                        stacklevel=2,
                    )
            self._return_ownership()
            self._container_id = None

    def _return_ownership(self) -> None:
        if self._chowned:
            _chown_tree(self.config.project_dir, os.getuid(), os.getgid())
            self._chowned = False

    def _create_container(self) -> bool:
        """Create and start the container; True if /work is a new, empty volume."""
        import docker
        from docker.types import Mount

        cfg = self.config
        client = self._client
        assert client is not None
        labels = {LABEL: "1", f"{LABEL}.session": self.session_id, f"{LABEL}.owner": owner_label()}
        fresh = False
        api = client.api
        if cfg.mount == "copy":
            if cfg.project_dir is None:  # creating is idempotent: one round trip, not two
                api.create_volume(self.volume_name, labels=labels)
            else:  # fill /work only when the volume is new (a recreated sandbox keeps its work)
                try:
                    api.inspect_volume(self.volume_name)
                except docker.errors.NotFound:
                    api.create_volume(self.volume_name, labels=labels)
                    fresh = True
            mount = Mount(WORK_DIR, self.volume_name, type="volume")
        else:
            project = Path(cfg.project_dir).resolve()  # type: ignore[arg-type]
            if os.getuid() == 0 and not self._chowned:
                # Root's files are not writable by the sandbox user: lend them for the session,
                # stop() gives them back to root.
                _chown_tree(project, SANDBOX_UID, SANDBOX_UID)
                self._chowned = True
                atexit.register(self._return_ownership)  # also when the caller forgets stop()
            mount = Mount(WORK_DIR, str(project), type="bind")
        # The low-level calls: the high-level ones add an inspect round trip after each step.
        host_config = api.create_host_config(
            init=True,
            network_mode="bridge" if cfg.network else "none",
            cap_drop=["ALL"],
            security_opt=["no-new-privileges"],
            read_only=True,
            tmpfs={"/tmp": f"rw,nosuid,nodev,size={cfg.tmp_size},mode=1777"},
            mounts=[mount],
            mem_limit=cfg.memory,
            memswap_limit=cfg.memory,
            nano_cpus=int(cfg.cpus * 1e9),
            pids_limit=cfg.pids,
        )
        create = functools.partial(
            api.create_container,
            self.image,
            ["sleep", "infinity"],
            name=self.container_name,
            user=f"{KEEPER_UID}:{KEEPER_UID}",
            working_dir=WORK_DIR,
            labels=labels,
            host_config=host_config,
            network_disabled=not cfg.network,
        )
        try:
            self._container_id = create()["Id"]
        except docker.errors.APIError as e:
            if e.status_code != 409:  # 409: the name is taken by an old container of this session
                raise
            api.remove_container(self.container_name, force=True)
            self._container_id = create()["Id"]
        api.start(self._container_id)
        return fresh

    def _start_runner(self) -> RunnerClient:
        api = self._client.api  # type: ignore[union-attr]
        exec_id = api.exec_create(
            self._container_id,
            ["python3", "-S", "-c", BOOTSTRAP, WORK_DIR, OOM_FILES, PIDS_DIRS],
            stdin=True,
            user=self._exec_user,
            workdir=WORK_DIR,
            environment={"USER": "sandbox", "HOME": WORK_DIR},
        )["Id"]
        raw = api.exec_start(exec_id, socket=True)
        sock: socket.socket = raw._sock
        source = RUNNER_SOURCE.encode()
        sock.sendall(b"%16d" % len(source) + source)
        client = RunnerClient(sock.sendall, lambda: _close_socket(sock, raw))
        reader = threading.Thread(
            target=_read_frames, args=(sock, client), daemon=True, name="dsv4-runner-reader"
        )
        reader.start()
        return client

    # ---- keeping it alive ---------------------------------------------------------------------
    def _recover(self, reason: str) -> str:
        """A new runner, in a new container if the old one is gone; says which."""
        import docker

        with self._lock:
            if self._rc is not None and self._rc.dead is None and "unresponsive" not in reason:
                return "another call had already restarted it"
            if self._rc is not None:
                self._rc.shutdown()
            state = "gone"
            try:
                if not engine_answers(self.config.docker_host):
                    self._bring_engine_back()
                    self._client = shared_client(self.config.docker_host)
                state = self._client.containers.get(self.container_name).status  # type: ignore
            except docker.errors.NotFound:
                state = "removed"
            except EngineError as e:
                raise RuntimeError(f"the sandbox cannot be brought back: {e}") from e
            if state == "running":
                self._rc = self._start_runner()
                return "restarted the command runner (the container was still running)"
            self._create_container()
            self._rc = self._start_runner()
            kept = "/work kept" if self.config.mount == "copy" else "/work is the bind mount"
            return (
                f"the sandbox container was {state} (the Docker engine may have restarted); "
                f"recreated it ({kept})"
            )

    def _bring_engine_back(self) -> None:
        """Ours is restarted (`ensure_engine`); another engine is waited for, up to 60 s."""
        global _engine_checked
        if self.config.docker_host is None:
            with _engine_lock:
                _engine_checked = False
            _ensure_engine_once()
            return
        deadline = time.monotonic() + 60
        while not engine_answers(self.config.docker_host):
            if time.monotonic() > deadline:
                raise EngineError(f"the engine at {self.config.docker_host} is down for 60 s")
            time.sleep(0.5)

    # ---- the project directory ------------------------------------------------------------
    def _copy_in(self, src: Path) -> None:
        """Put src's content into /work, owned by the sandbox user."""

        def own(info: tarfile.TarInfo) -> tarfile.TarInfo:
            info.uid = info.gid = SANDBOX_UID
            info.uname = info.gname = "sandbox"
            return info

        # Spooled: a big project goes through a temporary file, not memory.
        with tempfile.SpooledTemporaryFile(max_size=SPOOL_BYTES) as buf:
            with tarfile.open(fileobj=buf, mode="w") as tar:
                for entry in sorted(Path(src).iterdir()):
                    tar.add(entry, arcname=entry.name, filter=own)
            buf.seek(0)
            self._client.api.put_archive(self._container_id, WORK_DIR, buf)  # type: ignore

    def copy_out(self, dest: Path | None = None) -> Path:
        """Copy /work's content to dest (default: project_dir), owned by the host user.

        Files are added or overwritten; files deleted inside the sandbox stay on the host.
        What the sandbox made is not trusted: entries that would land outside dest (absolute
        or escaping symlinks, device files) are skipped with a warning.
        """
        dest = Path(dest or self.config.project_dir or ".")
        dest.mkdir(parents=True, exist_ok=True)
        uid, gid = os.getuid(), os.getgid()
        skipped: list[str] = []

        def host_owned(member: tarfile.TarInfo, path: str) -> tarfile.TarInfo | None:
            try:
                member = tarfile.data_filter(member, path)
            except tarfile.FilterError as e:
                skipped.append(f"{member.name} ({e})")
                return None
            return member.replace(uid=uid, gid=gid, uname=None, gname=None)

        stream, _ = self._client.api.get_archive(self._container_id, WORK_DIR + "/.")  # type: ignore
        with tempfile.SpooledTemporaryFile(max_size=SPOOL_BYTES) as buf:
            for chunk in stream:
                buf.write(chunk)
            buf.seek(0)
            with tarfile.open(fileobj=buf) as tar:
                members = []
                for m in tar.getmembers():
                    name = m.name.removeprefix("./")
                    if name in ("", "."):
                        continue
                    m.name = name
                    members.append(m)
                tar.extractall(dest, members=members, filter=host_owned)
        if skipped:
            warnings.warn(f"copy_out skipped: {'; '.join(skipped[:20])}", stacklevel=2)
        return dest


def _read_frames(sock: socket.socket, client: RunnerClient) -> None:
    """Demultiplex Docker's attach stream: 8-byte headers (stream, size), stdout to the client."""
    buf = b""
    errors = b""
    try:
        while True:
            while len(buf) < 8:
                chunk = sock.recv(65536)
                if not chunk:
                    raise EOFError
                buf += chunk
            kind, size = struct.unpack(">BxxxL", buf[:8])
            while len(buf) < 8 + size:
                chunk = sock.recv(max(65536, 8 + size - len(buf)))
                if not chunk:
                    raise EOFError
                buf += chunk
            payload, buf = buf[8 : 8 + size], buf[8 + size :]
            if kind == 1:
                client.feed(payload)  # ValueError on garbage: treated as a dead runner
            else:
                errors = (errors + payload)[-2000:]
    except (EOFError, OSError):
        pass
    except ValueError as e:  # something in the sandbox wrote into the runner's stdout
        errors += f"garbled runner output: {e}".encode()
    detail = errors.decode(errors="replace").strip().splitlines()[-1:] or ["no message"]
    client.closed(f"the runner's stream closed ({detail[0]})")


def _close_socket(sock: socket.socket, raw: Any) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    sock.close()
    raw.close()


def _chown_tree(root: Path | None, uid: int, gid: int) -> None:
    if root is None:
        return
    for dirpath, dirnames, filenames in os.walk(root):
        for name in [*dirnames, *filenames, None]:
            path = os.path.join(dirpath, name) if name else dirpath
            try:
                os.lchown(path, uid, gid)
            except OSError:
                pass
