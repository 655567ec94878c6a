"""The Docker engine and the sandbox image: installed, started and built on demand.

`ensure_engine()` is the one code path behind `dsv4 sandbox setup`, the test suite and every
`DockerSandbox`: it installs Debian's `docker.io` and `debootstrap` when missing, starts `dockerd`
when no engine answers, and builds the sandbox image when its tag is missing. No image registry is
reachable on our machines, so the image is a debootstrapped minimal Debian fed to `docker import`.
Every step is skipped when already done, so a second call costs well under a second.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import BaseModel

if TYPE_CHECKING:
    import docker

# The recipe decides the image tag: change anything here and the next set-up builds a new image.
SUITE = "bookworm"
MIRROR = "http://deb.debian.org/debian"
PACKAGES = (
    "python3",
    "git",
    "coreutils",
    "grep",
    "findutils",
    "diffutils",
    "patch",
    "procps",
    "ca-certificates",
)
SANDBOX_USER = "sandbox"
SANDBOX_UID = 1000
# The container's idle main process runs as a second unprivileged user, so that a command's
# `kill -9 -1` (which reaches every process of the sandbox user) cannot stop the container.
KEEPER_USER = "keeper"
KEEPER_UID = 1001
WORK_DIR = "/work"
RECIPE_VERSION = 1
IMAGE_REPO = "dsv4-sandbox"
LABEL = "dsv4.sandbox"  # every container and volume we create carries it (prune finds them)

DOCKER_SOCKET = "/var/run/docker.sock"
DOCKERD_LOG = "/var/log/dsv4-dockerd.log"


def recipe_hash() -> str:
    recipe = {
        "version": RECIPE_VERSION,
        "suite": SUITE,
        "packages": PACKAGES,
        "users": [(SANDBOX_USER, SANDBOX_UID), (KEEPER_USER, KEEPER_UID)],
        "work": WORK_DIR,
    }
    return hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()[:10]


def image_name() -> str:
    """`dsv4-sandbox:v<version>-<recipe hash>`: a changed recipe gets a new tag, hence a rebuild."""
    return f"{IMAGE_REPO}:v{RECIPE_VERSION}-{recipe_hash()}"


class EngineError(RuntimeError):
    """The Docker engine or the sandbox image could not be made ready."""


class EngineInfo(BaseModel):
    """What `ensure_engine` found or made."""

    docker_version: str
    image: str
    installed: bool = False  # packages were installed by this call
    started: bool = False  # dockerd was started by this call
    built: bool = False  # the image was built by this call
    seconds: float = 0.0


Progress = Callable[[str], None]


def _stderr_progress(message: str) -> None:
    print(f"sandbox setup: {message}", file=sys.stderr, flush=True)


def ensure_engine(
    progress: Progress | None = _stderr_progress, *, build_image: bool = True
) -> EngineInfo:
    """Make the Docker engine answer and the sandbox image exist; idempotent."""
    say = progress or (lambda _m: None)
    t0 = time.monotonic()
    installed = False
    if not engine_answers():
        installed = _ensure_packages(say, {"docker.io": "dockerd"})
    client, started = _ensure_daemon(say)
    built = False
    if build_image and not _image_present(client):
        # debootstrap is needed only to build the image.
        installed = _ensure_packages(say, {"debootstrap": "debootstrap"}) or installed
        built = _build_image(client, say)
    version = client.version().get("Version", "?")
    return EngineInfo(
        docker_version=version,
        image=image_name(),
        installed=installed,
        started=started,
        built=built,
        seconds=round(time.monotonic() - t0, 3),
    )


def docker_client(base_url: str | None = None, timeout: float = 60) -> docker.DockerClient:
    """A client of our engine (or of the one at base_url, e.g. "unix:///run/other.sock")."""
    import docker

    return docker.DockerClient(base_url=base_url or f"unix://{DOCKER_SOCKET}", timeout=timeout)


_shared: dict[str, docker.DockerClient] = {}
_shared_lock = threading.Lock()


def shared_client(base_url: str | None = None) -> docker.DockerClient:
    """One client per engine for this process: making one costs a round trip (API version)."""
    key = base_url or ""
    with _shared_lock:
        if key not in _shared:
            _shared[key] = docker_client(base_url)
        return _shared[key]


def _ensure_packages(say: Progress, wanted: dict[str, str]) -> bool:
    """Install the Debian packages (name -> binary it provides) whose binary is missing."""
    missing = [pkg for pkg, binary in wanted.items() if shutil.which(binary) is None]
    if not missing:
        return False
    if os.geteuid() != 0:
        raise EngineError(
            f"{', '.join(missing)} not installed and this is not root; install them with "
            f"`sudo apt-get install {' '.join(missing)}` and run `dsv4 sandbox setup` again"
        )
    say(f"installing {' '.join(missing)} from Debian's packages")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for cmd in (
        ["apt-get", "update", "-q"],
        ["apt-get", "install", "-y", "-q", "--no-install-recommends", *missing],
    ):
        _run(cmd, env=env, what=f"installing {' '.join(missing)}")
    return True


def engine_answers(base_url: str | None = None) -> bool:
    """Whether the engine (ours, or the one at base_url) answers a ping."""
    if base_url is None and not os.path.exists(DOCKER_SOCKET):
        return False
    try:
        docker_client(base_url, timeout=5).ping()
        return True
    except Exception:  # any failure to talk to it means no
        return False


def _ensure_daemon(say: Progress) -> tuple[docker.DockerClient, bool]:
    if engine_answers():
        return docker_client(), False
    if os.geteuid() != 0:
        raise EngineError(
            f"no Docker engine answers on {DOCKER_SOCKET} and this is not root; start it "
            "(`sudo dockerd &` or `sudo systemctl start docker`) and try again"
        )
    say(f"starting dockerd (log: {DOCKERD_LOG})")
    # A new session keeps dockerd alive after this process (and its terminal) goes away.
    with open(DOCKERD_LOG, "ab") as log:
        proc = subprocess.Popen(
            ["dockerd"],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            start_new_session=True,
        )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if engine_answers():
            say("dockerd is up")
            return docker_client(), True
        if proc.poll() is not None:
            raise EngineError(
                f"dockerd exited with status {proc.returncode} while starting; "
                f"see the end of {DOCKERD_LOG}:\n{_tail(DOCKERD_LOG)}"
            )
        time.sleep(0.2)
    raise EngineError(
        f"dockerd did not answer within 60 s; see {DOCKERD_LOG}:\n{_tail(DOCKERD_LOG)}"
    )


def _image_present(client: docker.DockerClient) -> bool:
    import docker

    try:
        client.images.get(image_name())
        return True
    except docker.errors.ImageNotFound:
        return False


def _build_image(client: docker.DockerClient, say: Progress) -> bool:
    name = image_name()
    say(f"building image {name} (debootstrap {SUITE}, about a minute)")
    with tempfile.TemporaryDirectory(prefix="dsv4-rootfs-", dir="/var/tmp") as tmp:
        rootfs = Path(tmp) / "rootfs"
        _debootstrap(rootfs, say)
        _add_users(rootfs)
        say("importing the root filesystem into Docker")
        tar = subprocess.Popen(["tar", "-C", str(rootfs), "-c", "."], stdout=subprocess.PIPE)
        try:
            client.api.import_image_from_stream(
                tar.stdout,
                repository=IMAGE_REPO,
                tag=name.split(":", 1)[1],
                changes=[
                    f"USER {SANDBOX_UID}:{SANDBOX_UID}",
                    f"WORKDIR {WORK_DIR}",
                    "ENV LANG=C.UTF-8 PATH=/usr/local/bin:/usr/bin:/bin",
                    f"LABEL {LABEL}.recipe={recipe_hash()}",
                ],
            )
        finally:
            tar.stdout.close()
            tar.wait()
        if tar.returncode != 0:
            raise EngineError(f"tar of {rootfs} failed with status {tar.returncode}")
    client.images.get(name)  # raises if the import did not produce it
    say(f"image {name} ready")
    return True


def _debootstrap(rootfs: Path, say: Progress) -> None:
    cmd = [
        "debootstrap",
        "--variant=minbase",
        f"--include={','.join(PACKAGES)}",
        SUITE,
        str(rootfs),
        MIRROR,
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert proc.stdout is not None
    tail: list[str] = []
    for line in proc.stdout:
        line = line.rstrip()
        tail = (tail + [line])[-30:]
        # debootstrap prints one line per package; pass on only the stage changes.
        if line.startswith(("I: Retrieving Release", "I: Resolving", "I: Installing", "I: Base")):
            say(line.removeprefix("I: "))
    if proc.wait() != 0:
        raise EngineError(
            f"debootstrap failed with status {proc.returncode} (mirror {MIRROR}):\n"
            + "\n".join(tail)
        )
    # Package caches only make the image bigger.
    for sub in ("var/cache/apt/archives", "var/lib/apt/lists"):
        for entry in (rootfs / sub).glob("*"):
            if entry.is_file():
                entry.unlink()


def _add_users(rootfs: Path) -> None:
    etc = rootfs / "etc"
    for name, uid, home in (
        (SANDBOX_USER, SANDBOX_UID, WORK_DIR),
        (KEEPER_USER, KEEPER_UID, "/nonexistent"),
    ):
        with open(etc / "passwd", "a") as f:
            f.write(f"{name}:x:{uid}:{uid}:{name}:{home}:/bin/bash\n")
        with open(etc / "group", "a") as f:
            f.write(f"{name}:x:{uid}:\n")
        with open(etc / "shadow", "a") as f:
            f.write(f"{name}:*:19000:0:99999:7:::\n")
    work = rootfs / WORK_DIR.lstrip("/")
    work.mkdir(exist_ok=True)
    os.chown(work, SANDBOX_UID, SANDBOX_UID)
    os.chmod(work, 0o755)
    os.chmod(rootfs / "tmp", 0o1777)


def _run(cmd: list[str], *, env: dict[str, str] | None = None, what: str) -> None:
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise EngineError(
            f"{what}: `{' '.join(cmd)}` failed with status {proc.returncode}:\n"
            f"{(proc.stdout + proc.stderr)[-2000:]}"
        )


def _tail(path: str, lines: int = 15) -> str:
    try:
        return "\n".join(Path(path).read_text(errors="replace").splitlines()[-lines:])
    except OSError as e:
        return f"(cannot read {path}: {e})"
