"""Tools and the sandboxes they run in (Docker, or the host when explicitly asked)."""

from tools.docker_sandbox import DockerSandbox
from tools.engine import EngineError, EngineInfo, ensure_engine, image_name
from tools.local_sandbox import LocalSandbox
from tools.sandbox import (
    ExecResult,
    FileContent,
    Sandbox,
    SandboxConfig,
    SandboxError,
)

__all__ = [
    "DockerSandbox",
    "EngineError",
    "EngineInfo",
    "ExecResult",
    "FileContent",
    "LocalSandbox",
    "Sandbox",
    "SandboxConfig",
    "SandboxError",
    "ensure_engine",
    "image_name",
]
