"""Tools and the sandboxes they run in (Docker, or the host when explicitly asked)."""

from tools.builtin_tools import (
    BashTool,
    EditFileTool,
    ListFilesTool,
    ReadFileTool,
    SearchTool,
    SubmitTool,
    WriteFileTool,
    default_tools,
)
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
from tools.tool import Tool, ToolResult

__all__ = [
    "BashTool",
    "DockerSandbox",
    "EditFileTool",
    "EngineError",
    "EngineInfo",
    "ExecResult",
    "FileContent",
    "ListFilesTool",
    "LocalSandbox",
    "ReadFileTool",
    "Sandbox",
    "SandboxConfig",
    "SandboxError",
    "SearchTool",
    "SubmitTool",
    "Tool",
    "ToolResult",
    "WriteFileTool",
    "default_tools",
    "ensure_engine",
    "image_name",
]
