"""Tools as the parsers use them: each tool's compiled argument validator, built once."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from dsml.schema import Validator, compile_schema
from dsml.types import ToolSpec

ToolsLike = Sequence[ToolSpec | dict[str, Any]]


class ToolSet:
    """Validators by tool name, and which parameters each schema declares as strings."""

    def __init__(self, tools: ToolsLike) -> None:
        specs = [ToolSpec.coerce(t) for t in tools]
        self.names = [s.name for s in specs]
        self.validators: dict[str, Validator] = {
            s.name: compile_schema(s.parameters) for s in specs
        }
        self.string_params: dict[str, set[str]] = {
            s.name: {
                k
                for k, sub in s.parameters.get("properties", {}).items()
                if isinstance(sub, dict) and _declares_string(sub)
            }
            for s in specs
        }

    def check(self, name: str, arguments: dict[str, Any]) -> tuple[str, str] | None:
        """None when the call is acceptable, else (error kind, message for the model)."""
        validator = self.validators.get(name)
        if validator is None:
            return "unknown_tool", (
                f"unknown tool {name!r}; the available tools are: {', '.join(self.names)}"
            )
        error = validator(arguments, "arguments")
        if error is None:
            return None
        return "invalid_arguments", f"invalid arguments for tool {name!r}: {error}"


def _declares_string(schema: dict[str, Any]) -> bool:
    kind = schema.get("type")
    return kind == "string" or (isinstance(kind, list) and "string" in kind)


_CACHE: list[tuple[object, ToolSet]] = []


def toolset(tools: ToolsLike | ToolSet | None) -> ToolSet | None:
    """The ToolSet of `tools`, compiled once per tools object (a few recent ones are kept)."""
    if tools is None or isinstance(tools, ToolSet):
        return tools
    for obj, compiled in _CACHE:
        if obj is tools:
            return compiled
    compiled = ToolSet(tools)
    _CACHE.insert(0, (tools, compiled))  # holding `tools` keeps its identity valid
    del _CACHE[8:]
    return compiled
