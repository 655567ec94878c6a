"""dsv4-tiny on held-out tasks through the full agent loop, each in a fresh Docker sandbox.

    python bench/tiny_eval.py --n 100 --seed 1 [--json] [--model DIR] [--sandbox docker|local]

Tasks are drawn from the held-out pool of agent/tiny_tasks (never seen in training); a task is
solved when its own check passes on the sandbox afterwards (files, or the submitted answer
against the command's real output), not when the model says so. Decoding is greedy.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--n", type=int, default=100)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--model", type=Path, help="checkpoint directory (default: the shipped one)")
    p.add_argument("--sandbox", choices=("docker", "local"), default="docker")
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()

    import torch

    from agent.tiny_tasks.evaluate import evaluate, held_out_tasks, load_backend

    torch.set_num_threads(args.threads)
    if args.sandbox == "docker":
        from tools import DockerSandbox, ensure_engine

        ensure_engine(progress=None)
        make_sandbox = DockerSandbox
    else:
        from tools import LocalSandbox

        def make_sandbox():
            return LocalSandbox(tempfile.mkdtemp(prefix="dsv4-tiny-eval-"))

    backend = load_backend(args.model)
    tasks = held_out_tasks(args.n, args.seed)

    def progress(outcome, seconds):
        mark = "ok  " if outcome.solved else "FAIL"
        print(
            f"{mark} {outcome.family:15s} {seconds:5.1f}s {outcome.status:12s} "
            f"{outcome.instruction[:60]!r}",
            file=sys.stderr,
            flush=True,
        )

    report = evaluate(tasks, backend=backend, make_sandbox=make_sandbox, on_outcome=progress)
    s = report.summary()
    if args.json:
        print(json.dumps(s))
        return 0
    print(f"{'family':16s} {'solved':>7s} {'total':>6s} {'rate':>6s}")
    for fam, v in s["per_family"].items():
        print(f"{fam:16s} {v['solved']:7d} {v['total']:6d} {v['solved'] / v['total']:6.0%}")
    print(f"{'ALL':16s} {s['solved']:7d} {s['total']:6d} {s['solve_rate']:6.0%}")
    rate = "n/a" if s["strict_parse_rate"] is None else f"{s['strict_parse_rate']:.1%}"
    print(f"strict parse: {s['tool_call_blocks']} tool-call blocks, rate {rate}")
    print(f"task seconds: median {s['median_s']:.1f}, max {s['max_s']:.1f}")
    print(f"statuses: {s['statuses']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
