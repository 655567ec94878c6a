"""`dsv4 run`: one task, headless."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("run", help="run one task headless in a Docker sandbox")
    p.add_argument("task", nargs="?", help="the instruction")
    p.add_argument("--example", help="an example task from examples/tasks/")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    print("dsv4 run: not built yet (the agent loop arrives with issue #5).")
    return 0
