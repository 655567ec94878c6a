"""The `dsv4` command line: collects the subcommands of `agent.commands` and dispatches."""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys
from pathlib import Path

from agent import commands


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dsv4", description="An agent runtime for DeepSeek-V4 models."
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for info in sorted(pkgutil.iter_modules(commands.__path__), key=lambda m: m.name):
        importlib.import_module(f"{commands.__name__}.{info.name}").register(sub)
    _register_chat(sub)
    return parser


def _register_chat(sub: argparse._SubParsersAction) -> None:
    from agent.commands.run_cmd import BACKENDS

    p = sub.add_parser(
        "chat",
        help="open the terminal UI (also: `dsv4` alone)",
        description="A live agent session in the terminal: the transcript as it streams, "
        "approvals in a dialog, Esc interrupts, F1 lists keys and /commands.",
    )
    p.add_argument(
        "-C",
        dest="directory",
        type=Path,
        default=Path("."),
        metavar="DIR",
        help="the project directory the sandbox works on (default: .)",
    )
    p.add_argument("--resume", metavar="ID", help="reopen a journaled session (id or prefix)")
    p.add_argument("--backend", choices=BACKENDS, help="which backend (default: config)")
    p.add_argument("--model", help="model name (openai) or checkpoint directory (embedded)")
    p.add_argument("--base-url", help="endpoint of the openai backend")
    p.add_argument("--script", type=Path, help="scripted backend: NN.dsml folder or JSON file")
    p.add_argument(
        "--approval",
        choices=("ask", "auto-edit", "auto"),
        help="approval mode (default: config, auto-edit: shell commands ask)",
    )
    p.add_argument(
        "--sandbox",
        choices=("docker", "local"),
        default="docker",
        help="docker (default) or local: on the host, no isolation",
    )
    p.add_argument("--dir", type=Path, help="sessions directory (default: from the config)")
    p.set_defaults(func=_chat)


def _chat(args: argparse.Namespace) -> int:
    from agent.config import ConfigError, load_config
    from agent.task_runner import make_backend, make_sandbox

    directory = args.directory.resolve()
    if not directory.is_dir():
        print(f"dsv4 chat: -C {args.directory}: no such directory", file=sys.stderr)
        return 2
    overrides: dict[str, object] = {}
    for option, key in (
        ("backend", "backend.kind"),
        ("model", "backend.model"),
        ("base_url", "backend.base_url"),
        ("script", "backend.script"),
        ("approval", "approval.mode"),
        ("dir", "sessions_dir"),
    ):
        if getattr(args, option) is not None:
            overrides[key] = getattr(args, option)
    try:
        config = load_config(overrides, project_dir=directory)
    except ConfigError as exc:
        print(f"dsv4 chat: {exc}", file=sys.stderr)
        return 2
    import tui  # lazily: the only agent module that may open the UI (design.md)

    sandboxes = make_sandbox(args.sandbox, mount="bind")  # bind: changes land in DIR
    # Backend failures (a missing model, a bad script) show in the app, which stays open.
    factory = tui.AgentFactory(
        config, make_backend=lambda: make_backend(config), make_sandbox=lambda: sandboxes(directory)
    )
    return tui.run_chat(factory, resume=args.resume)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    if args.command is None:
        # `dsv4` alone opens the terminal UI once it exists; `chat` owns that path.
        args = parser.parse_args(["chat"]) if "chat" in _subcommands(parser) else None
        if args is None:
            parser.print_help()
            return 0
    return int(args.func(args) or 0)


def _subcommands(parser: argparse.ArgumentParser) -> set[str]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return set(action.choices)
    return set()


if __name__ == "__main__":
    sys.exit(main())
