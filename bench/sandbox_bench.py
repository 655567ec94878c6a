"""Sandbox speed: start, exec overhead and file round trips, beside the plain `docker` CLI.

    .venv/bin/python bench/sandbox_bench.py [--runs 100] [--starts 10]

Ours: `DockerSandbox` (a long-lived runner inside the container, one stream for all calls).
Reference, in the same run and with the same container settings: the `docker` command line
(`docker run -d` + `docker exec`), the docker SDK's `exec_run` for exec overhead, and a bare
container create + start (the floor any Docker-based start pays). The variants are timed in turn,
one call each per round, so that all see the same load on a shared machine.
Targets (issue 4): start plus first command <= 400 ms, exec overhead median <= 60 ms.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import time
from collections.abc import Callable

from tools import DockerSandbox, SandboxConfig, ensure_engine, image_name
from tools.engine import KEEPER_UID, SANDBOX_UID, docker_client
from tools.sandbox_admin import owner_label

PAYLOAD = "".join(f"line {i}: some text for the file round trip\n" for i in range(25))  # ~1 KB


def summary(times: list[float]) -> tuple[float, float, float]:
    times = sorted(times)
    p95 = times[min(len(times) - 1, int(round(0.95 * len(times))) - 1)]
    return statistics.median(times), p95, times[0]


def measure_interleaved(
    cases: list[tuple[Callable[[], object], Callable[[], object]]], runs: int
) -> list[tuple[float, float, float]]:
    """(run, clean up) pairs timed in turn, so that all see the same machine load."""
    times: list[list[float]] = [[] for _ in cases]
    for _ in range(runs):
        for (fn, cleanup), out in zip(cases, times, strict=True):
            t0 = time.perf_counter()
            fn()
            out.append((time.perf_counter() - t0) * 1000)
            cleanup()
    return [summary(t) for t in times]


def docker_cli(*args: str, stdin: str | None = None) -> str:
    p = subprocess.run(["docker", *args], input=stdin, capture_output=True, text=True)
    if p.returncode != 0:
        raise RuntimeError(f"docker {' '.join(args)} failed ({p.returncode}): {p.stderr.strip()}")
    return p.stdout


CLI_RUN_FLAGS = [
    "--init",
    "--network",
    "none",
    "--cap-drop",
    "ALL",
    "--security-opt",
    "no-new-privileges",
    "--read-only",
    "--tmpfs",
    "/tmp:rw,size=512m,mode=1777",
    "--memory",
    "2g",
    "--memory-swap",
    "2g",
    "--cpus",
    "1",
    "--pids-limit",
    "1024",
    "--user",
    f"{KEEPER_UID}",
    "--label",
    "dsv4.sandbox=1",
    "-v",
    "{vol}:/work",
    "-w",
    "/work",
]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=100, help="repetitions of each per-call figure")
    ap.add_argument("--starts", type=int, default=10, help="sandbox starts to time")
    args = ap.parse_args()
    ensure_engine(progress=None)
    print(
        f"docker {docker_client().version()['Version']}, image {image_name()}, "
        f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores"
    )
    # (operation, runs, ours, reference): the reference is the docker CLI unless the label says
    rows: list[tuple[str, str, tuple[float, ...] | None, tuple[float, ...] | None]] = []

    # -- start: create + start + first command -------------------------------------------------
    boxes: list[DockerSandbox] = []

    def start_ours() -> None:
        box = DockerSandbox(SandboxConfig())
        box.start()
        box.exec("true", timeout=10)
        boxes.append(box)

    def stop_ours() -> None:
        while boxes:
            boxes.pop().stop()

    names: list[str] = []

    def start_cli() -> None:
        name = f"dsv4-bench-{os.getpid()}-{len(names)}"
        names.append(name)
        # Owned by this process, so a concurrent `prune` (other tests) leaves them alone.
        flags = [f.replace("{vol}", name) for f in CLI_RUN_FLAGS]
        flags += ["--label", f"dsv4.sandbox.owner={owner_label()}"]
        docker_cli("run", "-d", "--name", name, *flags, image_name(), "sleep", "infinity")
        docker_cli("exec", "-u", str(SANDBOX_UID), name, "true")

    def stop_cli() -> None:
        while names:
            name = names.pop()
            subprocess.run(["docker", "rm", "-f", "-v", name], capture_output=True)
            subprocess.run(["docker", "volume", "rm", name], capture_output=True)

    # The floor any Docker-based design pays: create + start of the same container, nothing run.
    api = docker_client().api
    created: list[str] = []

    def create_start() -> None:
        box = DockerSandbox(SandboxConfig())  # its settings, without the runner
        box._client = docker_client()
        box._create_container()
        created.append(box.container_name)

    def remove_created() -> None:
        while created:
            name = created.pop()
            api.remove_container(name, force=True)
            api.remove_volume(name.replace("dsv4-sandbox-", "dsv4-work-"), force=True)

    ours, cli, floor = measure_interleaved(
        [(start_ours, stop_ours), (start_cli, stop_cli), (create_start, remove_created)],
        args.starts,
    )
    rows.append(("start + first command", f"n={args.starts}", ours, cli))
    rows.append(("create + start only, SDK", f"n={args.starts}", None, floor))

    # -- per-call figures in one running sandbox -----------------------------------------------
    box = DockerSandbox(SandboxConfig())
    box.start()
    try:
        name = box.container_name
        box.exec("true", timeout=10)
        container = docker_client().containers.get(name)
        uid = str(SANDBOX_UID)

        def nothing() -> None:
            pass

        ours, cli, sdk = measure_interleaved(
            [
                (lambda: box.exec("true", timeout=10), nothing),
                (lambda: docker_cli("exec", "-u", uid, name, "true"), nothing),
                (lambda: container.exec_run(["true"], user=uid), nothing),
            ],
            args.runs,
        )
        rows.append(("exec `true`", f"n={args.runs}", ours, cli))
        rows.append(("exec `true`, SDK exec_run", f"n={args.runs}", None, sdk))
        write_cli = ["exec", "-i", "-u", uid, name, "sh", "-c", "cat > bench.txt"]
        ours, cli = measure_interleaved(
            [
                (lambda: box.write_file("bench.txt", PAYLOAD), nothing),
                (lambda: docker_cli(*write_cli, stdin=PAYLOAD), nothing),
            ],
            args.runs,
        )
        rows.append(("write_file 1 KB", f"n={args.runs}", ours, cli))
        ours, cli = measure_interleaved(
            [
                (lambda: box.read_file("bench.txt"), nothing),
                (lambda: docker_cli("exec", name, "cat", "bench.txt"), nothing),
            ],
            args.runs,
        )
        rows.append(("read_file 1 KB", f"n={args.runs}", ours, cli))
        assert box.read_file("bench.txt") == PAYLOAD
    finally:
        box.stop()

    print()
    head = [
        "operation",
        "runs",
        "ours median",
        "ours p95",
        "ours min",
        "reference median",
        "ref p95",
        "ref min",
    ]
    print("| " + " | ".join(head) + " |")
    print("|" + "|".join("---" for _ in head) + "|")
    for label, n, ours_t, ref in rows:
        cells = [label, n[2:]]
        cells += [f"{v:.1f} ms" for v in ours_t] if ours_t else ["", "", ""]
        cells += [f"{v:.1f} ms" for v in ref] if ref else ["", "", ""]
        print("| " + " | ".join(cells) + " |")
    print("Reference: the `docker` command line (`docker run -d` + `docker exec`), same settings.")
    print(f"load average after: {os.getloadavg()[0]:.2f}")
    print("\nTargets: start + first command <= 400 ms; exec overhead median <= 60 ms.")


if __name__ == "__main__":
    main()
