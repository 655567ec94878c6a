"""Agent-like sessions through vLLM with our plugin, against our own engine run sequentially.

Workload (the shape of agent traffic): every session starts with the same long prefix (system
prompt and tools), adds its own short task, then takes turns: a short suffix (a tool result),
then a short generated reply. Greedy decoding, so both paths write the same tokens.

- vLLM: N sessions at once through the `vllm` agent backend (one engine, continuous batching,
  prefix caching); each session runs in its own thread.
- engine: the same N sessions one after another with `model.Engine`, which keeps each session's
  cache (the shared prefix is prefilled once and forked).

Prints tokens/s of both, their ratio, and vLLM's prefix-cache hit rate per turn (vLLM's own
`prefix_cache_queries` / `prefix_cache_hits` counters over that turn's requests). Both sides
first run two short sessions untimed (one-time allocations are not throughput), on a prefix
of their own. Wall-clock rates: run it on a quiet machine (the load average is printed before
and after).

    .venv/bin/python bench/vllm_bench.py [--sessions 1 4 16] [--prefix 1536] [--turns 3]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import threading
import time
from pathlib import Path

import torch

os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")


def build_checkpoint(directory: Path, seed: int = 0) -> None:
    """A random tiny DeepSeek-V4 and a small BPE tokenizer (vocab = the model's)."""
    from model import DeepseekV4, ModelConfig
    from model.checkpoint import save_state_dict
    from model.tokenizer import build_bpe_tokenizer

    texts = [
        f"step {i}: run the tests, read the file, fix the bug, write it back." for i in range(200)
    ]
    tok = build_bpe_tokenizer(texts, vocab_size=1024)
    cfg = ModelConfig.preset("tiny", vocab_size=tok.vocab_size)
    net = DeepseekV4(cfg)
    net.init_weights(seed=seed)
    save_state_dict(net.state_dict(), directory)
    cfg.to_json(directory / "config.json")
    tok.save(directory / "tokenizer.json")


def workload(vocab: int, sessions: int, prefix: int, task: int, turns: int, suffix: int, seed: int):
    """(shared prefix ids, per session: [task ids, then one suffix per later turn])."""
    g = torch.Generator().manual_seed(seed)
    rand = lambda n: torch.randint(2, vocab, (n,), generator=g).tolist()  # noqa: E731 (no BOS/EOS)
    shared = rand(prefix)
    return shared, [
        [rand(task)] + [rand(suffix) for _ in range(turns - 1)] for _ in range(sessions)
    ]


def run_vllm(backend, shared, plans, gen: int) -> tuple[float, int, list[tuple[float, float]]]:
    """All sessions at once; returns (seconds, generated tokens, per-turn (queries, hits))."""
    from agent.backends.base import CancelToken, Sampling

    turns = len(plans[0])
    barrier = threading.Barrier(len(plans) + 1)
    generated = [0] * len(plans)
    per_turn: list[tuple[float, float]] = []
    errors: list[BaseException] = []

    def session(i: int) -> None:
        try:
            s = backend.open_session()
            for t, ids in enumerate(plans[i]):
                barrier.wait()  # every session's turn t starts together
                prompt = (shared if t == 0 else []) + ids
                done = s.extend_ids(prompt, gen, Sampling(), lambda _: None, CancelToken())
                generated[i] += done.generated_tokens
                barrier.wait()
        except BaseException as exc:  # noqa: BLE001 (reported below)
            errors.append(exc)
            barrier.abort()

    threads = [threading.Thread(target=session, args=(i,)) for i in range(len(plans))]
    start = time.perf_counter()
    for th in threads:
        th.start()
    try:
        for _ in range(turns):
            before = backend.prefix_cache_counters()
            barrier.wait()
            barrier.wait()
            after = backend.prefix_cache_counters()
            per_turn.append((after[0] - before[0], after[1] - before[1]))
    except threading.BrokenBarrierError:
        pass
    for th in threads:
        th.join()
    if errors:
        raise errors[0]
    return time.perf_counter() - start, sum(generated), per_turn


def run_engine(engine, shared, plans, gen: int, eos: int) -> tuple[float, int]:
    """The same sessions one after another, each turn extending its own cached session."""
    from model.sampling import SamplingParams

    greedy = SamplingParams(temperature=0.0)
    start = time.perf_counter()
    root = engine.new_session()
    engine.extend(root, shared)
    generated = 0
    for plan in plans:
        s = root.fork()
        for ids in plan:
            engine.extend(s, ids)
            generated += len(engine.generate(s, gen, greedy, stop_ids=(eos,)))
    return time.perf_counter() - start, generated


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sessions", type=int, nargs="+", default=[1, 4, 16])
    ap.add_argument("--prefix", type=int, default=1536, help="shared prefix tokens")
    ap.add_argument("--task", type=int, default=32, help="each session's own first message")
    ap.add_argument("--suffix", type=int, default=32, help="new tokens per later turn")
    ap.add_argument("--gen", type=int, default=16, help="tokens generated per turn")
    ap.add_argument("--turns", type=int, default=3)
    ap.add_argument("--model-dir", type=Path, default=None, help="default: a random tiny model")
    args = ap.parse_args()

    from agent.backends.vllm import VllmBackend
    from model.checkpoint import load_checkpoint
    from model.engine import Engine
    from model.tokenizer import Tokenizer

    tmp = None
    model_dir = args.model_dir
    if model_dir is None:
        tmp = tempfile.TemporaryDirectory(prefix="vllm-bench-")
        model_dir = Path(tmp.name)
        build_checkpoint(model_dir)
    tok = Tokenizer.from_file(model_dir / "tokenizer.json")
    net = load_checkpoint(model_dir, dtype=torch.float32)
    engine = Engine(net, tok)
    need = args.prefix + args.task + (args.turns - 1) * args.suffix + args.turns * args.gen
    backend = VllmBackend(
        model_dir, context_limit=max(1024, -(-need // 128) * 128 + 128), kv_cache_bytes=2 << 30
    )
    print(
        f"# workload: prefix {args.prefix}, task {args.task}, {args.turns} turns "
        f"(+{args.suffix} prompt, {args.gen} generated each); torch threads "
        f"{torch.get_num_threads()}, load average {os.getloadavg()[0]:.1f}"
    )
    warm_shared, warm_plans = workload(tok.vocab_size, 2, 256, args.task, 2, args.suffix, 99)
    run_vllm(backend, warm_shared, warm_plans, args.gen)
    run_engine(engine, warm_shared, warm_plans, args.gen, tok.eos_id)
    print("| sessions | vLLM tok/s | engine tok/s | ratio | prefix-cache hit % per turn |")
    print("| ---: | ---: | ---: | ---: | --- |")
    seed = 0
    for n in args.sessions:
        seed += 1  # a fresh prefix per row: turn 1 starts from an empty cache
        shared, plans = workload(
            tok.vocab_size, n, args.prefix, args.task, args.turns, args.suffix, seed
        )
        v_s, v_tokens, per_turn = run_vllm(backend, shared, plans, args.gen)
        e_s, e_tokens = run_engine(engine, shared, plans, args.gen, tok.eos_id)
        hits = " / ".join(f"{100 * h / q:.1f}" if q else "-" for q, h in per_turn)
        v_rate, e_rate = v_tokens / v_s, e_tokens / e_s
        print(f"| {n} | {v_rate:.1f} | {e_rate:.1f} | {v_rate / e_rate:.2f}x | {hits} |")
    print(f"# load average at the end {os.getloadavg()[0]:.1f}")
    backend.close()


if __name__ == "__main__":
    main()
