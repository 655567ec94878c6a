"""`dsv4 batch`: a folder of tasks, each in its own sandbox, judged by its own tests.

Each task is a folder with `task.toml` (instruction, limits, test command) and `repo/`. The
results go to OUT: `results.json` ({"total", "passed", "tasks": [...]}), and per task
`OUT/<id>/result.json`, its trajectory (`OUT/<id>/<session>/events.jsonl`), the test output and
the work directory as the agent left it. A rerun with the same OUT skips the tasks already
finished (tasks that ended in an error of the machinery or the backend run again).

Exit codes: 0 every task passed, 1 some failed, 2 usage (bad folder, bad task, bad options),
4 the backend could not be set up.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from agent.commands.run_cmd import (
    EXIT_BACKEND,
    EXIT_FAILED,
    EXIT_OK,
    EXIT_USAGE,
    add_agent_options,
)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "batch",
        help="run a folder of tasks, each judged by its tests",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("tasks_dir", type=Path, metavar="TASKS_DIR", help="folder of task folders")
    p.add_argument("--out", type=Path, required=True, help="folder for results and trajectories")
    p.add_argument("--workers", type=int, default=1, help="tasks run in parallel (default 1)")
    add_agent_options(p)
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=_batch)


def _batch(args: argparse.Namespace) -> int:
    from agent.backends import BackendError
    from agent.commands.run_cmd import cancel_on_interrupt, config_from_args
    from agent.config import ConfigError
    from agent.task_runner import (
        TaskError,
        TaskRunner,
        discover_tasks,
        make_backend,
        make_sandbox,
        run_batch,
    )

    if args.workers < 1:
        print("dsv4 batch: --workers must be at least 1", file=sys.stderr)
        return EXIT_USAGE
    try:
        tasks = discover_tasks(args.tasks_dir)
        config = config_from_args(args)
    except (ConfigError, TaskError) as exc:
        print(f"dsv4 batch: {exc}", file=sys.stderr)
        return EXIT_USAGE
    # Scripted: a backend per task (its own reference). Others: one backend for the whole
    # batch, so that a model is loaded once and shared by the workers.
    shared = None
    if config.backend.kind != "scripted" or config.backend.script is not None:
        try:
            shared = make_backend(config)
        except BackendError as exc:
            print(f"dsv4 batch: the backend failed: {exc}", file=sys.stderr)
            return EXIT_BACKEND
    runner = TaskRunner(
        config,
        args.out,
        make_backend=(lambda task: make_backend(config, task))
        if shared is None
        else (lambda task: shared),
        make_sandbox=make_sandbox(args.sandbox),
        owns_backends=shared is None,
    )
    try:
        with cancel_on_interrupt(runner.cancel):
            report = run_batch(
                tasks, args.out, runner, workers=args.workers, progress=not args.no_progress
            )
    finally:
        if shared is not None:
            shared.close()
    for result in report.tasks:
        mark = "PASS" if result.passed else "FAIL"
        detail = f" ({result.error})" if result.error else ""
        print(
            f"{mark} {result.id}: {result.status}, {result.steps} steps, "
            f"{result.duration_s:.1f} s{detail}"
        )
    kept = f" ({report.kept} kept from an earlier run)" if report.kept else ""
    print(f"{report.passed}/{report.total} passed{kept}; results in {args.out / 'results.json'}")
    return EXIT_OK if report.passed == report.total else EXIT_FAILED
