"""The `dsv4` command line: collects the subcommands of `agent.commands` and dispatches."""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys

from agent import commands


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dsv4", description="An agent runtime for DeepSeek-V4 models."
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for info in sorted(pkgutil.iter_modules(commands.__path__), key=lambda m: m.name):
        importlib.import_module(f"{commands.__name__}.{info.name}").register(sub)
    return parser


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
