"""Looking at and cleaning up sandboxes by label (`dsv4 sandbox status|prune`)."""

from __future__ import annotations

import os
import socket

from pydantic import BaseModel

from tools.engine import LABEL, docker_client, engine_answers, image_name


class SandboxInfo(BaseModel):
    name: str
    session: str
    state: str
    created: str


class SandboxStatus(BaseModel):
    engine_running: bool
    docker_version: str | None = None
    image: str
    image_present: bool = False
    sandboxes: list[SandboxInfo] = []


def sandbox_status() -> SandboxStatus:
    """The engine, the image and our containers; starts nothing."""
    if not engine_answers():
        return SandboxStatus(engine_running=False, image=image_name())
    client = docker_client()
    present = bool(client.images.list(name=image_name()))
    boxes = [
        SandboxInfo(
            name=c.name,
            session=c.labels.get(f"{LABEL}.session", ""),
            state=c.status,
            created=c.attrs.get("Created", ""),
        )
        for c in client.containers.list(all=True, filters={"label": LABEL})
    ]
    return SandboxStatus(
        engine_running=True,
        docker_version=client.version().get("Version"),
        image=image_name(),
        image_present=present,
        sandboxes=boxes,
    )


def owner_label() -> str:
    """Which process owns a sandbox: `host:pid`; prune keeps those whose owner still runs."""
    return f"{socket.gethostname()}:{os.getpid()}"


def _owner_alive(labels: dict[str, str]) -> bool:
    host, _, pid = labels.get(f"{LABEL}.owner", "").rpartition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True


def prune_sandboxes(*, everything: bool = False) -> dict[str, int]:
    """Remove leftover sandboxes: containers and volumes with our label whose owning process
    has ended (or, with everything=True, all of them, in use or not)."""
    if not engine_answers():
        return {"containers": 0, "volumes": 0}
    client = docker_client()
    removed_c = removed_v = 0
    for c in client.containers.list(all=True, filters={"label": LABEL}):
        if everything or not _owner_alive(c.labels):
            c.remove(force=True)
            removed_c += 1
    in_use = {
        m.get("Name")
        for c in client.containers.list(all=True, filters={"label": LABEL})
        for m in c.attrs.get("Mounts", [])
    }
    for v in client.volumes.list(filters={"label": LABEL}):
        if v.name in in_use:
            continue
        if everything or not _owner_alive(v.attrs.get("Labels") or {}):
            v.remove(force=True)
            removed_v += 1
    return {"containers": removed_c, "volumes": removed_v}
