"""Agent configuration: one pydantic model, each field documented.

Sources, later ones winning: the defaults here, `~/.config/dsv4/config.toml`, the project's
`.dsv4.toml` (the nearest one in the working directory or above), environment variables
(`DSV4_<SECTION>__<FIELD>`, e.g. `DSV4_BACKEND__KIND=openai`, `DSV4_LIMITS__MAX_STEPS=20`;
`DEEPSEEK_API_KEY` for the API key), then arguments given in code or on the command line.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError

USER_CONFIG = Path("~/.config/dsv4/config.toml")
PROJECT_CONFIG_NAME = ".dsv4.toml"
DEFAULT_SESSIONS_DIR = Path("~/.local/share/dsv4/sessions")
DEFAULT_MODEL_DIR = Path("~/.local/share/dsv4/models/default")
ENV_PREFIX = "DSV4_"


class ConfigError(ValueError):
    """A configuration file, variable or argument is invalid; the message names which."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)


class BackendConfig(_Section):
    kind: Literal["embedded", "openai", "scripted", "vllm"] = "embedded"
    """Which backend continues the conversation: the model in this process (default), an
    OpenAI-compatible HTTP endpoint, recorded completions, or vLLM with our plugin."""
    model: str = ""
    """The model's name: for `openai` the API's model id (e.g. "deepseek-chat"); for `embedded`
    and `vllm` a checkpoint directory ("" = the default model). Also the price-table key."""
    base_url: str = "https://api.deepseek.com"
    """Endpoint of the `openai` backend (a vLLM server: "http://127.0.0.1:8000/v1")."""
    api_key: SecretStr | None = None
    """API key of the `openai` backend; `DEEPSEEK_API_KEY` sets it."""
    api_mode: Literal["chat", "completions"] = "chat"
    """`chat`: /chat/completions with tools and reasoning_content; `completions`: /completions
    with our own DSML-rendered prompt (append-only text, best for servers with prefix caching)."""
    max_retries: int = 4
    """Retries of a request answered with 429 or 5xx, or cut off before any text came."""
    retry_backoff_s: float = 1.0
    """First retry waits this long, each later one twice as long (a Retry-After header wins)."""
    extra_body: dict[str, Any] = Field(default_factory=dict)
    """Extra fields for every `openai` request body (e.g. a server's thinking switch)."""
    request_timeout_s: float = 600.0
    """Seconds to wait for an HTTP response to start and between streamed chunks."""
    script: Path | None = None
    """`scripted` backend: a JSON file with the completions to replay, in order."""
    context_limit: int | None = None
    """Override the backend's context window (tokens); None = what the backend reports."""
    max_tokens_per_step: int = 8192
    """The most tokens one step may write."""
    threads: int | None = None
    """CPU threads of the `embedded` model (torch's, process-wide); None keeps torch's default.
    On cores shared with other work, 1 is often several times faster for small models."""
    temperature: float = 0.0
    """Sampling temperature (0 = greedy)."""
    top_p: float = 1.0
    """Nucleus sampling: sample from the smallest set of tokens with this much probability."""
    seed: int | None = None
    """Sampling seed (None: random)."""


class LimitsConfig(_Section):
    max_steps: int | None = 100
    """Model calls per run; None = no limit."""
    max_generated_tokens: int | None = None
    """Tokens written by the model over the session; None = no limit."""
    max_wall_time_s: float | None = None
    """Seconds per run; None = no limit."""
    max_cost: float | None = None
    """Money per session, in the price table's currency; None = no limit."""
    context_margin_tokens: int = 2048
    """Stop with status `context_limit` when fewer than this many tokens of the context window
    would be left after the next prompt (the history is never summarised or truncated)."""
    max_format_failures: int = 3
    """Consecutive turns with malformed tool calls before the run stops with `format_error`."""


class ApprovalRule(_Section):
    tool: str = "*"
    """Tool name (glob, e.g. "bash", "*_file")."""
    pattern: str = "*"
    """Glob on the call's subject: the command for `bash`, the path for file tools."""
    action: Literal["allow", "deny", "ask"]
    """What to do with a matching call. Deny rules are checked first, then ask, then allow."""


class ApprovalConfig(_Section):
    mode: Literal["ask", "auto-edit", "auto"] = "auto-edit"
    """`ask`: every tool call waits for approval; `auto-edit`: file tools run, shell commands ask;
    `auto`: everything runs (inside the sandbox). Headless runs never wait: what would ask is
    denied, and the model is told so."""
    rules: list[ApprovalRule] = Field(default_factory=list)
    """Allow/deny/ask rules by tool and command or path pattern, before the mode applies."""


class Price(_Section):
    input_per_mtok: float
    """Price of a million prompt tokens not served from a cache."""
    cached_input_per_mtok: float
    """Price of a million prompt tokens served from the provider's cache."""
    output_per_mtok: float
    """Price of a million generated tokens."""


def _default_prices() -> dict[str, Price]:
    # DeepSeek API list prices in USD (api-docs.deepseek.com, V3.2 pricing); override in config.
    deepseek = Price(input_per_mtok=0.28, cached_input_per_mtok=0.028, output_per_mtok=0.42)
    return {"deepseek-chat": deepseek, "deepseek-reasoner": deepseek}


class AgentConfig(_Section):
    backend: BackendConfig = Field(default_factory=BackendConfig)
    """What continues the conversation (`[backend]` in TOML)."""
    limits: LimitsConfig = Field(default_factory=LimitsConfig)
    """When a run stops (`[limits]`)."""
    approval: ApprovalConfig = Field(default_factory=ApprovalConfig)
    """Which tool calls run without asking (`[approval]`)."""
    prices: dict[str, Price] = Field(default_factory=_default_prices)
    """Per-model prices (key: the backend's model name); a model not listed costs nothing."""
    thinking_mode: Literal["thinking", "chat"] = "thinking"
    """`thinking`: the model reasons inside <think> before acting; `chat`: it answers directly."""
    reasoning_effort: Literal["high", "max"] | None = None
    """V4 reasoning effort; `max` adds the format's fixed paragraph after BOS."""
    system_prompt: str = (
        "You are a coding agent working in a sandbox. Use the tools to inspect and change "
        "files and to run commands. When the task is done, call the submit tool with a short "
        "summary."
    )
    """The system message's text; the tools block is appended to it."""
    sessions_dir: Path = DEFAULT_SESSIONS_DIR
    """Where sessions are journaled: `<sessions_dir>/<id>/events.jsonl` and the saved cache."""
    save_cache: bool = True
    """Save the embedded backend's cache beside the journal at each step's end (resume without
    re-prefill)."""


def load_config(
    overrides: Mapping[str, Any] | None = None,
    *,
    env: Mapping[str, str] | None = None,
    user_file: Path | None = USER_CONFIG,
    project_dir: Path | None = None,
) -> AgentConfig:
    """The configuration from every source (see the module docstring), `overrides` last.

    `overrides` is nested like the TOML (`{"backend": {"kind": "openai"}}`); dotted keys
    (`{"backend.kind": "openai"}`) work too. `project_dir=None` looks from the working directory.
    """
    env = os.environ if env is None else env
    merged: dict[str, Any] = {}
    if user_file is not None:
        _merge(merged, _read_toml(user_file.expanduser()))
    project = _find_project_file(Path.cwd() if project_dir is None else project_dir)
    if project is not None:
        _merge(merged, _read_toml(project))
    _merge(merged, _from_env(env))
    if overrides:
        _merge(merged, _unflatten(overrides))
    try:
        config = AgentConfig.model_validate(merged)
    except ValidationError as exc:
        where = f"config files, {ENV_PREFIX}* variables or arguments"
        raise ConfigError(f"invalid configuration ({where}):\n{exc}") from exc
    config.sessions_dir = config.sessions_dir.expanduser()
    return config


def _read_toml(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML ({exc}); fix or remove the file") from exc


def _find_project_file(start: Path) -> Path | None:
    for directory in [start, *start.resolve().parents]:
        candidate = directory / PROJECT_CONFIG_NAME
        if candidate.is_file():
            return candidate
    return None


def _from_env(env: Mapping[str, str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if env.get("DEEPSEEK_API_KEY"):
        out["backend"] = {"api_key": env["DEEPSEEK_API_KEY"]}
    for key, value in env.items():
        if not key.startswith(ENV_PREFIX):
            continue
        path = [part.lower() for part in key[len(ENV_PREFIX) :].split("__")]
        # Other DSV4_* variables (not naming a config field) belong to other parts: skip them.
        if not all(path) or path[0] not in AgentConfig.model_fields:
            continue
        _merge(out, _nest(path, _parse_env_value(value)))
    return out


def _parse_env_value(value: str) -> Any:
    # Values are TOML scalars or arrays (`20`, `true`, `["a"]`); anything else is a plain string.
    try:
        return tomllib.loads(f"v = {value}")["v"]
    except tomllib.TOMLDecodeError:
        return value


def _unflatten(overrides: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in overrides.items():
        if isinstance(value, Mapping):
            value = _unflatten(value)
        _merge(out, _nest(key.split("."), value))
    return out


def _nest(path: list[str], value: Any) -> dict[str, Any]:
    for part in reversed(path[1:]):
        value = {part: value}
    return {path[0]: value}


def _merge(into: dict[str, Any], new: Mapping[str, Any]) -> None:
    for key, value in new.items():
        if isinstance(value, Mapping) and isinstance(into.get(key), dict):
            _merge(into[key], value)
        else:
            into[key] = dict(value) if isinstance(value, Mapping) else value
