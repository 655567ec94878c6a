"""Slash commands typed in the editor, and the help text that lists them with the keys."""

from __future__ import annotations

from dataclasses import dataclass

COMMANDS = {
    "help": "show keys and commands",
    "sessions": "list journaled sessions (Enter resumes one)",
    "resume": "/resume ID — reopen a session (an id or a unique prefix)",
    "continue": "go on where the last run stopped (after an interrupt or a resume)",
    "approval": "/approval ask|auto-edit|auto — which tool calls wait for you",
    "model": "show the backend, the model and its context window (switching: see there)",
    "export": "/export [FILE] — write the transcript as Markdown (default: <session>.md)",
    "quit": "leave (Ctrl+Q)",
}

HELP_MARKDOWN = "\n".join(
    [
        "# dsv4 chat",
        "",
        "| Key | Does |",
        "|---|---|",
        "| Enter | send the message |",
        "| Ctrl+J (or Alt+Enter, Shift+Enter) | new line in the message |",
        "| Up / Down (first / last line) | message history |",
        "| Esc | interrupt the running step (nothing is lost; send to go on) |",
        "| Ctrl+O | expand/collapse the newest reasoning or tool output |",
        "| click | expand/collapse a reasoning block or tool panel |",
        "| PageUp / PageDown, mouse wheel | scroll the transcript |",
        "| F1 | this help |",
        "| Ctrl+Q | quit |",
        "",
        "| Command | Does |",
        "|---|---|",
        *(f"| /{name} | {what} |" for name, what in COMMANDS.items()),
    ]
)


@dataclass
class SlashCommand:
    name: str
    argument: str


class UnknownCommand(ValueError):
    pass


def parse_command(text: str) -> SlashCommand | None:
    """The slash command `text` is, or None when it is a message for the model.

    `//text` sends `/text` to the model."""
    if not text.startswith("/") or text.startswith("//"):
        return None
    name, _, argument = text[1:].strip().partition(" ")
    if name not in COMMANDS:
        known = ", ".join(f"/{c}" for c in COMMANDS)
        raise UnknownCommand(f"unknown command /{name}; commands: {known} (// sends a '/')")
    return SlashCommand(name, argument.strip())


def model_text(
    *,
    backend: str,
    model: str,
    context_limit: int,
    context_tokens: int,
    note: str,
    session_id: str,
    wanted: str = "",
) -> str:
    """What `/model [NAME]` says: the model in use, its context window and how much of it this
    session fills, and why another model cannot take over mid-session (with how to do it)."""
    share = f" ({context_tokens / context_limit:.0%})" if context_limit else ""
    limit = f"{context_limit:,} tokens" if context_limit else "unknown"
    lines = [
        f"backend: {backend} · model: {model or '-'}",
        f"context window: {limit} · used: {context_tokens:,}{share}",
    ]
    if note:
        lines.append(f"note: {note}")
    if wanted:
        lines.append(f"Cannot switch to {wanted!r} in this session.")
    resume = f"dsv4 chat --resume {session_id}" if session_id else "dsv4 chat --resume ID"
    lines.append(
        "The model is loaded once per session and holds its cache (the conversation read so "
        "far); another model would have to read it all again. To go on with another model: "
        f"Ctrl+Q, then `{resume} --backend … --model …`."
    )
    return "\n".join(lines)
