"""`dsv4 sessions`, `dsv4 resume`, `dsv4 export`: journaled sessions, listed, continued, exported.

Sessions live in `sessions_dir` from the configuration (default
`~/.local/share/dsv4/sessions`; `--dir` or `DSV4_SESSIONS_DIR` points elsewhere, e.g. at a batch's
`OUT/<task>/`). An id may be given by a unique prefix.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from agent.commands.run_cmd import EXIT_BACKEND, EXIT_OK, EXIT_USAGE, add_agent_options


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("sessions", help="list journaled sessions", description=__doc__)
    _add_dir(p)
    p.add_argument("--json", action="store_true", help="one JSON object per session")
    p.set_defaults(func=_sessions)

    p = sub.add_parser(
        "resume",
        help="continue a session (with its saved cache: no re-prefill)",
        description=__doc__,
    )
    p.add_argument("session", help="session id (or a unique prefix)")
    p.add_argument(
        "message", nargs="?", help="a further instruction; without one the run goes on as it was"
    )
    p.add_argument(
        "-C",
        dest="directory",
        type=Path,
        default=Path("."),
        metavar="DIR",
        help="the project directory the sandbox works on (default: .)",
    )
    _add_dir(p)
    add_agent_options(p)
    p.add_argument("--json", action="store_true", help="print events as JSON lines")
    p.set_defaults(func=_resume)

    p = sub.add_parser("export", help="export a session's conversation", description=__doc__)
    p.add_argument("session", help="session id (or a unique prefix)")
    p.add_argument(
        "--format",
        choices=("openai", "markdown"),
        default="markdown",
        help="markdown: a readable transcript (default); openai: the message list as JSON",
    )
    p.add_argument("-o", "--output", type=Path, help="write to this file (default: stdout)")
    _add_dir(p)
    p.set_defaults(func=_export)


def _add_dir(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dir", type=Path, help="sessions directory (default: from the config)")


def _store(args: argparse.Namespace):  # -> SessionStore
    from agent.config import load_config
    from agent.session_store import SessionStore

    root = args.dir if args.dir is not None else load_config().sessions_dir
    return SessionStore(root)


def _sessions(args: argparse.Namespace) -> int:
    from agent.config import ConfigError

    try:
        store = _store(args)
    except ConfigError as exc:
        print(f"dsv4 sessions: {exc}", file=sys.stderr)
        return EXIT_USAGE
    sessions = store.list()
    if args.json:
        for info in sessions:
            print(info.model_dump_json())
        return EXIT_OK
    if not sessions:
        print(f"no sessions in {store.root}")
        return EXIT_OK
    print(f"{'ID':<24} {'UPDATED':<16} {'STATUS':<14} {'STEPS':>5}  {'BACKEND':<30} TASK")
    for info in sessions:
        updated = time.strftime("%Y-%m-%d %H:%M", time.localtime(info.updated))
        status = info.status or "unfinished"
        same = info.model in ("", info.backend)
        backend = info.backend if same else f"{info.backend}:{info.model}"
        task = " ".join(info.task.split())
        task = task[:57] + "…" if len(task) > 58 else task
        print(f"{info.id:<24} {updated:<16} {status:<14} {info.steps:>5}  {backend:<30} {task}")
    return EXIT_OK


def _resume(args: argparse.Namespace) -> int:
    from agent.api import Agent
    from agent.backends import BackendError
    from agent.commands.run_cmd import JsonPrinter, ProgressPrinter, config_from_args, exit_code
    from agent.config import ConfigError
    from agent.session_store import SessionNotFound
    from agent.task_runner import make_backend, make_sandbox
    from tools import default_tools

    directory = args.directory.resolve()
    if not directory.is_dir():
        print(f"dsv4 resume: -C {args.directory}: no such directory", file=sys.stderr)
        return EXIT_USAGE
    printer = JsonPrinter(sys.stdout) if args.json else ProgressPrinter(sys.stdout)
    try:
        config = config_from_args(args, project_dir=directory)
        if args.dir is not None:
            config.sessions_dir = args.dir
        backend = make_backend(config)
    except ConfigError as exc:
        print(f"dsv4 resume: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except BackendError as exc:
        print(f"dsv4 resume: the backend failed: {exc}", file=sys.stderr)
        return EXIT_BACKEND
    sandbox = make_sandbox(args.sandbox, mount="bind")(directory)
    try:
        agent = Agent.resume(
            args.session,
            config,
            backend=backend,
            sandbox=sandbox,
            tools=default_tools(),
            on_event=printer,
        )
    except SessionNotFound as exc:
        backend.close()
        print(f"dsv4 resume: {exc}", file=sys.stderr)
        return EXIT_USAGE
    try:
        with agent:
            result = agent.send(args.message)
    finally:
        sandbox.stop()
        backend.close()
    return exit_code(result.status)


def _export(args: argparse.Namespace) -> int:
    from agent.config import ConfigError
    from agent.session_store import SessionNotFound

    try:
        store = _store(args)
        session_id = store.path(args.session).name
        if args.format == "openai":
            text = json.dumps(store.export_messages(session_id), ensure_ascii=False, indent=2)
        else:
            text = store.export_markdown(session_id)
    except (ConfigError, SessionNotFound) as exc:
        print(f"dsv4 export: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if args.output is not None:
        args.output.write_text(text + "\n", encoding="utf-8")
    else:
        sys.stdout.write(text + "\n")
    return EXIT_OK
