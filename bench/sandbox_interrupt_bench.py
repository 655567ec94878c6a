"""Interrupt latency: from `Sandbox.interrupt()` (another thread) to the interrupted `exec`
returning, and until the command's processes are gone, for DockerSandbox and LocalSandbox.

    .venv/bin/python bench/sandbox_interrupt_bench.py [--runs 20]

Each run starts `sleep 600` with a background child in the same group, waits until both run,
interrupts, and times the two spans. Target (issue 5): the exec returns within ~2 s.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import threading
import time

from tools import DockerSandbox, LocalSandbox, SandboxConfig

SLEEP = "sleep 600.41"
COUNT = f"pgrep -cfx '{SLEEP}'"


def running(sandbox) -> int:
    return int(sandbox.exec(COUNT, timeout=10).output.strip() or 0)


def one(sandbox) -> tuple[float, float]:
    done: list[float] = []
    worker = threading.Thread(
        target=lambda: (sandbox.exec(f"{SLEEP} & {SLEEP}; wait"), done.append(time.monotonic()))
    )
    worker.start()
    while running(sandbox) < 2:
        time.sleep(0.01)
    t0 = time.monotonic()
    sandbox.interrupt()
    worker.join(30)
    if not done:
        raise RuntimeError("the interrupted exec did not return within 30 s")
    while running(sandbox):
        time.sleep(0.005)
    return done[0] - t0, time.monotonic() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args()
    print(f"{'sandbox':<8} {'runs':>4} {'exec back med ms':>17} {'max ms':>8} {'gone med ms':>12}")
    with tempfile.TemporaryDirectory() as tmp:
        for name, sandbox in [
            ("docker", DockerSandbox(SandboxConfig())),
            ("local", LocalSandbox(tmp)),
        ]:
            with sandbox:
                spans = [one(sandbox) for _ in range(args.runs)]
            back = [b * 1000 for b, _ in spans]
            gone = [g * 1000 for _, g in spans]
            print(
                f"{name:<8} {args.runs:>4} {statistics.median(back):>17.1f} {max(back):>8.1f} "
                f"{statistics.median(gone):>12.1f}"
            )


if __name__ == "__main__":
    main()
