"""`dsv4 sandbox setup|status|prune|exec`: engine, image, and a scratch run."""

from __future__ import annotations

import argparse
import json
import sys


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("sandbox", help="the Docker sandboxes the agent's tools run in")
    cmds = p.add_subparsers(dest="sandbox_command", metavar="ACTION", required=True)

    s = cmds.add_parser(
        "setup",
        help="install and start the Docker engine and build the sandbox image (idempotent)",
    )
    s.set_defaults(func=_setup)

    s = cmds.add_parser("status", help="report the engine, the image and running sandboxes")
    s.set_defaults(func=_status)

    s = cmds.add_parser(
        "prune", help="remove leftover sandboxes (containers and volumes whose owner has ended)"
    )
    s.add_argument("--all", action="store_true", help="remove every sandbox, in use or not")
    s.set_defaults(func=_prune)

    s = cmds.add_parser(
        "exec",
        help="run one command in a scratch sandbox and print the result as JSON",
        description="Runs COMMAND (joined with spaces, run by bash) in a fresh sandbox with the "
        "configured limits, as the agent's bash tool would, and prints one JSON object.",
    )
    s.add_argument("--timeout", type=float, default=30.0, help="seconds (default 30)")
    s.add_argument("--keep", action="store_true", help="leave the sandbox running afterwards")
    s.add_argument("--network", action="store_true", help="give the sandbox a network")
    s.add_argument("cmd", nargs=argparse.REMAINDER, metavar="-- COMMAND", help="the command")
    s.set_defaults(func=_exec)


def _setup(args: argparse.Namespace) -> int:
    from tools.engine import EngineError, ensure_engine

    try:
        info = ensure_engine()
    except EngineError as e:
        print(f"dsv4 sandbox setup: {e}", file=sys.stderr)
        return 1
    done = [
        w
        for w, flag in (
            ("installed", info.installed),
            ("started", info.started),
            ("built", info.built),
        )
        if flag
    ]
    print(
        f"sandbox ready: docker {info.docker_version}, image {info.image}"
        f" ({', '.join(done) or 'nothing to do'}; {info.seconds:.1f} s)",
        file=sys.stderr,
    )
    return 0


def _status(args: argparse.Namespace) -> int:
    from tools.sandbox_admin import sandbox_status

    status = sandbox_status()
    print(json.dumps(status.model_dump(), indent=2))
    return 0 if status.engine_running else 1


def _prune(args: argparse.Namespace) -> int:
    from tools.sandbox_admin import prune_sandboxes

    removed = prune_sandboxes(everything=args.all)
    print(
        f"removed {removed['containers']} containers and {removed['volumes']} volumes",
        file=sys.stderr,
    )
    return 0


def _exec(args: argparse.Namespace) -> int:
    from tools import DockerSandbox, SandboxConfig

    cmd = args.cmd[1:] if args.cmd[:1] == ["--"] else args.cmd
    if not cmd:
        print("dsv4 sandbox exec: give a command after --, e.g. `-- ls -la`", file=sys.stderr)
        return 2
    config = SandboxConfig(network=args.network)
    sandbox = DockerSandbox(config)
    try:
        sandbox.start()
        result = sandbox.exec(" ".join(cmd), timeout=args.timeout)
    finally:
        if not args.keep:
            sandbox.stop()
    out = result.model_dump()
    if args.keep:
        out["container"] = sandbox.container_name
    print(json.dumps(out))
    return 0
