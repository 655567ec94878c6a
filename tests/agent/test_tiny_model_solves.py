"""The shipped dsv4-tiny solves held-out tasks through the full agent loop (CI's small sample).

Ten tasks drawn fresh from the held-out generator run with the embedded backend, greedy, each
in its own LocalSandbox; a task counts only when its own check passes on the sandbox
afterwards. The full measurement (100 tasks in Docker, per family) is bench/tiny_eval.py.
"""

import tempfile

import torch

from agent.tiny_tasks.evaluate import evaluate, held_out_tasks, load_backend
from tools import LocalSandbox


def test_shipped_model_solves_at_least_8_of_10_held_out_tasks(tmp_path):
    torch.set_num_threads(1)
    report = evaluate(
        held_out_tasks(10, 0),
        backend=load_backend(),
        make_sandbox=lambda: LocalSandbox(tempfile.mkdtemp(dir=tmp_path)),
    )
    failed = [
        (o.family, o.instruction, o.status, o.answer) for o in report.outcomes if not o.solved
    ]
    assert report.solved >= 8, failed
