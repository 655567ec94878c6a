"""`dsv4 dsml render|parse`: what the model sees, and what it wrote, for debugging."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

_ENCODER_KWARGS = (
    "thinking_mode",
    "context",
    "drop_thinking",
    "add_default_bos_token",
    "reasoning_effort",
)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("dsml", help="render a prompt or parse a completion (DeepSeek-V4 DSML)")
    actions = p.add_subparsers(dest="dsml_action", metavar="ACTION", required=True)

    r = actions.add_parser(
        "render",
        help="print the prompt text of a JSON conversation, exactly (no added newline)",
        description="FILE holds a message list (OpenAI chat format plus V4's roles), or an "
        "object with `messages` and encode_messages keyword arguments (thinking_mode, context, "
        "drop_thinking, add_default_bos_token, reasoning_effort), optionally `dialect` "
        "(deepseek-v4, deepseek-v3.2) and a top-level `tools` list, which goes on the first "
        "system message.",
    )
    r.add_argument("file", help="a JSON file, or - for stdin")
    r.add_argument(
        "--mode",
        choices=["thinking", "chat"],
        default="thinking",
        help="thinking mode when the file does not say (default: thinking)",
    )
    r.set_defaults(func=_render)

    q = actions.add_parser(
        "parse",
        help="parse a completion and print it as JSON",
        description="FILE holds what the model wrote after the prompt's "
        "<think> (thinking) or </think> (chat), up to EOS.",
    )
    q.add_argument("file", help="a text file, or - for stdin")
    q.add_argument("--mode", choices=["thinking", "chat"], required=True)
    q.add_argument(
        "--tools",
        help="JSON file: a list of tools (OpenAI or function objects) "
        "to validate the calls against",
    )
    q.add_argument(
        "--strict",
        action="store_true",
        help="follow the reference rules exactly; a format error exits with 1",
    )
    q.set_defaults(func=_parse)


def _read(name: str) -> str:
    if name == "-":
        return sys.stdin.buffer.read().decode("utf-8")
    return Path(name).read_text(encoding="utf-8")


def _write(text: str) -> None:
    sys.stdout.buffer.write(text.encode("utf-8"))
    sys.stdout.buffer.flush()


def _render(args: argparse.Namespace) -> int:
    from dsml import DIALECTS, DsmlError, encode_messages

    try:
        data: Any = json.loads(_read(args.file))
    except (OSError, ValueError) as err:
        print(f"dsv4 dsml render: cannot read {args.file}: {err}", file=sys.stderr)
        return 2
    kwargs: dict[str, Any] = {"thinking_mode": args.mode}
    if isinstance(data, dict):
        unknown = set(data) - {"messages", "tools", "dialect", *_ENCODER_KWARGS}
        if "messages" not in data or unknown:
            print(
                f"dsv4 dsml render: an object needs `messages` and may have "
                f"{', '.join(('tools', 'dialect', *_ENCODER_KWARGS))}; unknown keys: "
                f"{sorted(unknown)}",
                file=sys.stderr,
            )
            return 2
        messages = [dict(m) for m in data["messages"]]
        if data.get("tools"):
            if not messages or messages[0].get("role") != "system":
                messages.insert(0, {"role": "system", "content": ""})
            messages[0]["tools"] = data["tools"]
        kwargs.update({k: data[k] for k in _ENCODER_KWARGS if k in data})
        if "dialect" in data:
            if data["dialect"] not in DIALECTS:
                print(
                    f"dsv4 dsml render: unknown dialect {data['dialect']!r}; known: "
                    f"{sorted(DIALECTS)}",
                    file=sys.stderr,
                )
                return 2
            kwargs["dialect"] = DIALECTS[data["dialect"]]
    else:
        messages = data
    mode = kwargs.pop("thinking_mode")
    try:
        _write(encode_messages(messages, mode, **kwargs))
    except (DsmlError, KeyError, TypeError, AttributeError) as err:
        print(f"dsv4 dsml render: {err}", file=sys.stderr)
        return 2
    return 0


def _parse(args: argparse.Namespace) -> int:
    from dsml import ParseError, parse_completion

    try:
        text = _read(args.file)
        tools = json.loads(Path(args.tools).read_text(encoding="utf-8")) if args.tools else None
    except (OSError, ValueError) as err:
        print(f"dsv4 dsml parse: cannot read input: {err}", file=sys.stderr)
        return 2
    if isinstance(tools, dict):
        tools = tools.get("tools")
    try:
        turn = parse_completion(text, args.mode, tools=tools, strict=args.strict)
    except ParseError as err:
        out = {"error": {"kind": err.kind, "offset": err.offset, "message": err.message}}
        _write(json.dumps(out, ensure_ascii=False, indent=2) + "\n")
        return 1
    _write(json.dumps(turn.model_dump(mode="json"), ensure_ascii=False, indent=2) + "\n")
    return 0
