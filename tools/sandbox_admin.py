"""Looking at and cleaning up sandboxes by label (`dsv4 sandbox status|prune`)."""

from __future__ import annotations

from pydantic import BaseModel

from tools.engine import LABEL, _engine_answers, docker_client, image_name


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
    if not _engine_answers():
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


def prune_sandboxes() -> dict[str, int]:
    """Remove every container and volume carrying our label (running ones included)."""
    if not _engine_answers():
        return {"containers": 0, "volumes": 0}
    client = docker_client()
    containers = client.containers.list(all=True, filters={"label": LABEL})
    for c in containers:
        c.remove(force=True)
    volumes = client.volumes.list(filters={"label": LABEL})
    for v in volumes:
        v.remove(force=True)
    return {"containers": len(containers), "volumes": len(volumes)}
