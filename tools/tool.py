"""`Tool` and `ToolResult`: what the model calls and what it gets back.

A tool's `Args` (a pydantic model) is the contract with the model: `spec()` turns it into the
OpenAI function shape, with a flat JSON schema (no titles, no `anyOf` for optional values) that
the DSML parser validates calls against. `run()` never raises: bad arguments, refused paths and
failed commands all come back as a `ToolResult` with `is_error` set, which the model can act on.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, ClassVar

from pydantic import BaseModel, ValidationError

from tools.sandbox import Sandbox, SandboxError


class ToolResult(BaseModel):
    """A tool's answer: `text` goes to the model, `data` to UIs and logs."""

    text: str
    data: dict[str, Any] = {}
    is_error: bool = False
    submitted: bool = False
    """Set by `submit`: the agent's task is done."""


class Tool(ABC):
    """One tool the model may call."""

    name: ClassVar[str]
    description: ClassVar[str]
    Args: ClassVar[type[BaseModel]]

    def spec(self) -> dict[str, Any]:
        """The OpenAI function dict: {"name", "description", "parameters"}."""
        return {
            "name": self.name,
            "description": self.description,
            "parameters": flat_schema(self.Args),
        }

    def run(self, sandbox: Sandbox, args: BaseModel | dict[str, Any]) -> ToolResult:
        """Validate the arguments and run; every failure becomes an error result."""
        try:
            parsed = args if isinstance(args, self.Args) else self.Args.model_validate(args)
        except ValidationError as e:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in err['loc']) or 'arguments'}: {err['msg']}"
                for err in e.errors()
            )
            return self.error(f"invalid arguments for {self.name}: {problems}")
        try:
            return self.execute(sandbox, parsed)
        except SandboxError as e:
            return self.error(str(e))
        except Exception as e:  # noqa: BLE001 - a tool failure must not end the agent
            return self.error(f"{self.name} failed: {type(e).__name__}: {e}")

    @abstractmethod
    def execute(self, sandbox: Sandbox, args: Any) -> ToolResult:
        """Do the work with validated arguments."""

    def error(self, text: str, **data: Any) -> ToolResult:
        return ToolResult(text=f"Error: {text}", data={"error": text, **data}, is_error=True)


def flat_schema(model: type[BaseModel]) -> dict[str, Any]:
    """The model's JSON schema without titles, optional values shown by their plain type."""
    schema = model.model_json_schema()
    props: dict[str, Any] = {}
    for name, prop in schema.get("properties", {}).items():
        prop = {k: v for k, v in prop.items() if k != "title"}
        variants = [v for v in prop.pop("anyOf", []) if v.get("type") != "null"]
        if len(variants) == 1:
            prop = {**variants[0], **prop}
        if prop.get("default", 0) is None:
            del prop["default"]
        props[name] = prop
    out: dict[str, Any] = {"type": "object", "properties": props}
    if schema.get("required"):
        out["required"] = schema["required"]
    out["additionalProperties"] = False
    return out
