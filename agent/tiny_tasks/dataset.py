"""Training data for dsv4-tiny: expert runs through the real loop, then tokens and loss masks."""

from __future__ import annotations

import json
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from agent.tiny_tasks.expert import ExpertBackend, Recording
from agent.tiny_tasks.families import Task, sample_tasks
from agent.tiny_tasks.runner import run_task, tiny_agent_config
from dsml import encode_messages


class ExpertFailed(RuntimeError):
    """The expert did not solve a task: the generator or the expert has a bug."""


def record_expert(tasks: Iterable[Task], tools_factory) -> list[Recording]:
    """Run the expert on each task in one LocalSandbox, its directory emptied between tasks."""
    from tools import LocalSandbox

    recordings = []
    with tempfile.TemporaryDirectory(prefix="dsv4-tiny-") as root:
        sandbox = LocalSandbox(root)
        sandbox.start()
        try:
            for task in tasks:
                sandbox.exec("find . -mindepth 1 -delete", timeout=30)
                backend = ExpertBackend(task)
                outcome = run_task(task, backend=backend, sandbox=sandbox, tools=tools_factory())
                if not outcome.solved:
                    raise ExpertFailed(
                        f"the expert failed {task.family!r}: {task.instruction!r} "
                        f"(status {outcome.status}, answer {outcome.answer!r})"
                    )
                recordings.append(backend.recording)
        finally:
            sandbox.stop()
    return recordings


def _record_chunk(args: tuple[int, int]) -> list[Recording]:
    from tools import default_tools

    n, seed = args
    return record_expert(train_tasks(n, seed), default_tools)


def record_parallel(n: int, seed: int, workers: int) -> list[Recording]:
    """`n` training recordings from `workers` processes (sandbox round trips dominate, so a few
    processes per core overlap their waiting). Chunk i draws its tasks with seed (seed, i)."""
    import multiprocessing

    chunks = [(n // workers + (i < n % workers), seed * 1000 + i) for i in range(workers)]
    with multiprocessing.get_context("spawn").Pool(workers) as pool:
        parts = pool.map(_record_chunk, chunks)
    return [rec for part in parts for rec in part]


def save_recordings(recordings: Sequence[Recording], path: Path) -> None:
    with open(path, "w", encoding="utf-8") as f:
        for rec in recordings:
            f.write(json.dumps(rec.segments, ensure_ascii=False) + "\n")


def load_recordings(path: Path) -> list[Recording]:
    with open(path, encoding="utf-8") as f:
        return [Recording([(t, bool(m)) for t, m in json.loads(line)]) for line in f]


def system_text(tools: list) -> str:
    """The system message exactly as the agent renders it (BOS excluded): the fixed prefix."""
    config = tiny_agent_config()
    spec = [t.spec() for t in tools]
    text = encode_messages(
        [{"role": "system", "content": config.system_prompt, "tools": spec}], "thinking"
    )
    return text.removeprefix("<｜begin▁of▁sentence｜>")


def tokenize(rec: Recording, tokenizer) -> tuple[np.ndarray, np.ndarray]:
    """(ids, mask): each segment encoded on its own, exactly as the embedded backend does."""
    ids: list[int] = []
    mask: list[bool] = []
    for text, target in rec.segments:
        piece = tokenizer.encode(text)
        ids.extend(piece)
        mask.extend([target] * len(piece))
    return np.array(ids, dtype=np.int64), np.array(mask, dtype=np.bool_)


def train_tasks(n: int, seed: int) -> list[Task]:
    return sample_tasks(n, seed, split="train")
