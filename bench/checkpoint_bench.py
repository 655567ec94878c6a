"""Checkpoint save/load: file sizes, times, and how much memory loading takes beyond the model.

    .venv/bin/python bench/checkpoint_bench.py [--preset tiny] [--threads 2]

Each layout is written once, then loaded in a fresh process, so the growth of its peak resident
memory during `load_checkpoint` is the load's own: the model's bytes plus whatever the reading
holds at once (tensors come from the memory-mapped files one at a time).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

_LOAD = """
import json, sys, time, torch
torch.set_num_threads(int(sys.argv[3]))
from model import load_checkpoint
def status(key):  # kB figures of /proc/self/status
    for line in open("/proc/self/status"):
        if line.startswith(key):
            return int(line.split()[1])
dtype = torch.bfloat16 if sys.argv[2] == "bf16" else torch.float32
open("/proc/self/clear_refs", "w").write("5")  # resets the peak (VmHWM) to the current RSS
base = status("VmRSS:")
t = time.perf_counter()
m = load_checkpoint(sys.argv[1], dtype=dtype)
elapsed = time.perf_counter() - t
model_bytes = sum(p.numel() * p.element_size() for p in m.state_dict().values())
grow = (status("VmHWM:") - base) / 1024
print(json.dumps({"s": elapsed, "grow_mib": grow, "model_mib": model_bytes / 2**20}))
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--preset", default="tiny")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()

    import torch

    from model import DeepseekV4, ModelConfig, save_checkpoint

    torch.set_num_threads(args.threads)
    model = DeepseekV4(ModelConfig.preset(args.preset))
    n_params = sum(p.numel() for p in model.parameters())
    layouts = [
        ("fp32, one file", {}, "fp32"),
        ("bf16, one file", {"dtype": torch.bfloat16}, "bf16"),
        ("FP8/FP4 (release), one file", {"quantize": True}, "fp32"),
        ("FP8/FP4 (release), 4 MiB shards", {"quantize": True, "shard_bytes": 4 << 20}, "fp32"),
    ]
    print(f"preset {args.preset}: {n_params:,} parameters, {args.threads} threads")
    print(
        f"| {'layout':32} | files | MiB on disk | save s | load s | load into | "
        "model MiB | peak RSS growth MiB |"
    )
    print(
        f"|{'-' * 34}|-------|-------------|--------|--------|-----------|-----------|"
        + "-" * 22
        + "|"
    )
    with tempfile.TemporaryDirectory() as tmp:
        for i, (name, kwargs, load_dtype) in enumerate(layouts):
            out = Path(tmp) / str(i)
            t = time.perf_counter()
            paths = save_checkpoint(model, out, **kwargs)
            save_s = time.perf_counter() - t
            mib = sum(p.stat().st_size for p in paths) / 2**20
            run = subprocess.run(
                [sys.executable, "-c", _LOAD, str(out), load_dtype, str(args.threads)],
                capture_output=True, text=True, check=True,
            )  # fmt: skip
            r = json.loads(run.stdout)
            print(
                f"| {name:32} | {len(paths):5} | {mib:11.1f} | {save_s:6.2f} | {r['s']:6.2f} | "
                f"{load_dtype:9} | {r['model_mib']:9.1f} | {r['grow_mib']:20.1f} |"
            )


if __name__ == "__main__":
    main()
