"""Benchmark of the model package on the CPU (tiny preset, fp32, 2 threads); prints tables.

Side by side in one run: our engine (sliding window + CSA/HCA compressed cache), the same
weights run as a dense-attention baseline (every layer attends to all raw kv), and Hugging
Face's DeepseekV4ForCausalLM at the contexts it reaches. Also: the machine's copy bandwidth and
matmul rate, the bandwidth floor of a decode step, cache bytes against the config's formula,
and the time to save / load a long session against re-prefilling it.

    .venv/bin/python bench/model_bench.py [--quick] [--max-context 1048576]

Contexts that real prefill cannot reach in reasonable time (the lightning indexer is
quadratic: 1M tokens means ~1.4e11 query-entry scores per CSA layer) are built by tiling a
real prefill's cache to the target length; decode cost depends on the cache's sizes only.
Such rows are marked "tiled".
"""

from __future__ import annotations

import argparse
import gc
import math
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from model import DeepseekV4, Engine, ModelConfig  # noqa: E402
from model.attention import sparse_attention  # noqa: E402
from model.cache import AppendBuffer, SequenceCache  # noqa: E402
from model.compressor import simulate_kv_fp8  # noqa: E402
from model.norm import rms_normalize  # noqa: E402
from model.rope import apply_rope  # noqa: E402

KB = 1024
# Wall time by default; `--clock cpu` times by this process's CPU time instead, which on a
# machine shared with other jobs is the better estimate of the unloaded wall time (use it with
# --threads 1: with more threads, time spent waiting at barriers also counts).
CLOCK = time.perf_counter


def timed(fn, repeat: int = 1) -> float:
    best = math.inf
    for _ in range(repeat):
        t = CLOCK()
        fn()
        best = min(best, CLOCK() - t)
    return best


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / KB


# ---- the machine -----------------------------------------------------------------------------


def machine_rates() -> tuple[float, float]:
    """(copy bandwidth in GB/s counting read + write, fp32 matmul GFLOP/s)."""
    a = torch.empty(64 * 1024 * 1024 // 4 * 4)  # 256 MiB
    a.fill_(1.0)
    b = torch.empty_like(a)
    dt = timed(lambda: b.copy_(a), repeat=5)
    bandwidth = 2 * a.numel() * 4 / dt / 1e9
    m = torch.randn(2048, 2048)
    dt = timed(lambda: m @ m, repeat=5)
    return bandwidth, 2 * 2048**3 / dt / 1e9


# ---- the dense-attention baseline ------------------------------------------------------------


def dense_attention_forward(self, x, starts, caches, *, quant_sim, positions=None):
    """Attention.forward with every layer attending to all raw kv (no window, no compression)."""
    bsz, n, _ = x.shape
    pos = torch.tensor(starts).unsqueeze(1) + torch.arange(n)
    cos, sin = self.rotary(pos)
    qr = self.q_norm(self.wq_a(x))
    q = self.wq_b(qr).float().unflatten(-1, (self.n_heads, self.head_dim))
    q = apply_rope(
        rms_normalize(q, self.cfg.norm_eps) * self.head_dim**-0.5,
        cos.unsqueeze(-2),
        sin.unsqueeze(-2),
    )
    kv = apply_rope(self.kv_norm(self.wkv(x)).float(), cos, sin)
    if quant_sim:
        kv = simulate_kv_fp8(kv, self.rotary)
    outs = []
    for b in range(bsz):
        raw = caches[b].comp
        raw.append(kv[b])
        keys = raw.view()
        outs.append(
            sparse_attention(
                q[b], pos[b], keys, torch.arange(keys.shape[0]), 1 << 40, self.attn_sink
            )
        )
    o = apply_rope(torch.stack(outs), cos.unsqueeze(-2), sin.unsqueeze(-2), inverse=True)
    return self.project_out(o)


def dense_model(model: DeepseekV4) -> DeepseekV4:
    """The same weights with dense attention in every layer; its cache keeps all raw kv."""
    dense = DeepseekV4(model.cfg)
    dense.load_state_dict(model.state_dict())
    dense.quant_sim = model.quant_sim
    for layer in dense.layers:
        attn = layer.attn
        attn.forward = dense_attention_forward.__get__(attn)
        # A decode step's block enters attention at `_decode`, not through `forward`.
        attn._decode = lambda x, starts, caches, positions, *, quant_sim, a=attn: (
            dense_attention_forward(a, x, starts, caches, quant_sim=quant_sim, positions=positions)
        )
    cfg = model.cfg

    def new_cache() -> SequenceCache:
        cache = SequenceCache.empty(cfg)
        for lc in cache.layers:
            lc.comp = AppendBuffer(cfg.head_dim)
        return cache

    dense.new_cache = new_cache
    return dense.eval()


def dense_cache_bytes(session) -> int:
    return sum(lc.comp.nbytes() for lc in session.cache.layers)


# ---- tiling a cache to a longer context (for contexts real prefill cannot reach) ------------


def tile_session(engine: Engine, src, target: int, dense: bool = False):
    """A session of `target` tokens whose cache repeats src's (sizes exact, contents tiled)."""
    cfg = engine.model.cfg
    reps = math.ceil(target / src.num_tokens)
    s = engine.new_session()
    for lc, sl in zip(s.cache.layers, src.cache.layers, strict=True):
        lc.window = sl.window
        lc.comp_state, lc.index_state = sl.comp_state, sl.index_state
        if dense:
            rows = sl.comp.view().repeat(reps, 1)[:target]
            lc.comp = AppendBuffer.from_tensor(rows.clone())
            continue
        if lc.comp is not None:
            n = target // lc.ratio
            lc.comp = AppendBuffer.from_tensor(sl.comp.view().repeat(reps, 1)[:n].clone())
        if lc.index_keys is not None:
            n = target // 4
            lc.index_keys = AppendBuffer.from_tensor(
                sl.index_keys.view().repeat(reps, 1)[:n].clone()
            )
        # The tails must hold target % ratio rows: take them from a position with that phase.
        if lc.comp_state is not None and lc.comp_state.tail_kv.shape[0] != target % lc.ratio:
            raise ValueError("tile_session needs src.num_tokens % ratio == target % ratio")
    s.cache.length = target
    s._token_ids = (src._token_ids * reps)[:target]
    s.last_logits = src.last_logits
    del cfg
    return s


# ---- Hugging Face ----------------------------------------------------------------------------


def hf_reference(model: DeepseekV4):
    try:
        from model.hf_reference import load_hf_reference
    except ImportError:
        return None
    return load_hf_reference(model)


def hf_cache_bytes(cache) -> int:
    total = 0
    for layer in cache.layers:
        for value in vars(layer).values():
            items = value.values() if isinstance(value, dict) else [value]
            for t in items:
                if isinstance(t, torch.Tensor):
                    total += t.numel() * t.element_size()
    return total


# ---- floors ----------------------------------------------------------------------------------


def decode_bytes(cfg: ModelConfig, context: int, *, dense: bool) -> tuple[int, int]:
    """(weight bytes, cache bytes) one decode step must read at `context` tokens."""
    with torch.device("meta"):
        net = DeepseekV4(cfg)
    per_expert = 3 * cfg.dim * cfg.moe_inter_dim
    weights = 0
    for name, t in net.state_dict().items():
        if name.startswith("mtp.") or name == "embed.weight" or "tid2eid" in name:
            continue
        if ".ffn.experts." in name:
            continue
        weights += t.numel()
    weights += cfg.dim + cfg.n_layers * cfg.n_activated_experts * per_expert
    cache = 0
    for r in cfg.layer_ratios:
        if dense:
            cache += context * cfg.head_dim
            continue
        cache += min(context, cfg.window_size) * cfg.head_dim
        if r == 4:
            cache += (context // 4) * cfg.index_head_dim  # every indexer key is scored
            cache += min(cfg.index_topk, context // 4) * cfg.head_dim  # the gathered entries
        elif r:
            cache += (context // r) * cfg.head_dim
    return 4 * weights, 4 * cache


# ---- runs ------------------------------------------------------------------------------------


def prefill_rate(engine: Engine, ids: list[int]) -> tuple[float, object]:
    """Best of two prefills for short inputs (one for long ones), after a warm-up."""
    engine.extend(engine.new_session(), ids[:256])
    best, session = math.inf, None
    for _ in range(2 if len(ids) <= 4 * KB else 1):
        s = engine.new_session()
        dt = timed(lambda s=s: engine.extend(s, ids))
        if dt < best:
            best, session = dt, s
    return len(ids) / best, session


def decode_ms(engine: Engine, session, steps: int, warmup: int = 1) -> float:
    """Steady-state ms per decoded token on a fork of the session.

    The warm-up tokens are not timed: the fork's first append to each compressed buffer copies
    the buffer it shares with the session (copy-on-write; at 1M tokens ~100 MB, once per
    fork), so `warmup` should reach every compressed layer's first new entry (its ratio).
    """
    fork = session.fork()
    for i in range(warmup):
        engine.extend(fork, [(i * 104729) % engine.model.cfg.vocab_size])
    t = CLOCK()
    for i in range(steps):
        engine.extend(fork, [(i * 7919) % engine.model.cfg.vocab_size])
    return (CLOCK() - t) / steps * 1e3


def hf_prefill(hf, ids: torch.Tensor, chunk: int):
    out = None
    with torch.no_grad():
        for i in range(0, ids.shape[1], chunk):
            out = hf(
                ids[:, i : i + chunk],
                past_key_values=None if out is None else out.past_key_values,
                use_cache=True,
                logits_to_keep=1,
            )
    return out


def hf_decode_ms(hf, past, steps: int) -> float:
    out = past
    with torch.no_grad():
        out = hf(torch.tensor([[3]]), past_key_values=out.past_key_values, use_cache=True)
        t = CLOCK()
        for i in range(steps):
            out = hf(
                torch.tensor([[(i * 7919) % 8192]]),
                past_key_values=out.past_key_values,
                use_cache=True,
            )
    return (CLOCK() - t) / steps * 1e3


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small contexts only (smoke run)")
    ap.add_argument("--max-context", type=int, default=1 << 20)
    ap.add_argument(
        "--real-prefill",
        type=int,
        default=128 * KB,
        help="longest context reached by real prefill; longer ones are tiled",
    )
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--no-hf", action="store_true")
    ap.add_argument("--clock", choices=("wall", "cpu"), default="wall")
    ap.add_argument(
        "--prefill-only",
        type=int,
        default=0,
        metavar="N",
        help="only prefill N tokens in one extend call; print rate and peak RSS",
    )
    ap.add_argument(
        "--hf-contexts",
        default="1024,16384,32768",
        help="contexts at which Hugging Face's decode is timed (real prefill)",
    )
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    global CLOCK
    CLOCK = time.process_time if args.clock == "cpu" else time.perf_counter
    hf_contexts = [int(x) for x in args.hf_contexts.split(",") if x]
    torch.manual_seed(0)

    cfg = ModelConfig.preset("tiny")
    model = DeepseekV4(cfg).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape) * 0.02)
    engine = Engine(model)
    if args.prefill_only:
        ids = torch.randint(0, cfg.vocab_size, (args.prefill_only,)).tolist()
        rss0 = peak_rss_mb()
        s = engine.new_session()
        dt = timed(lambda: engine.extend(s, ids))
        print(
            f"prefill {args.prefill_only} tokens in one call: {args.prefill_only / dt:,.0f} "
            f"tokens/s ({args.clock} clock, {args.threads} threads); peak RSS "
            f"{peak_rss_mb():,.0f} MB (before: {rss0:,.0f} MB); cache {s.cache_bytes / 1e6:.1f}"
            f" MB = formula {cfg.cache_bytes(s.num_tokens) / 1e6:.1f} MB"
        )
        return
    dense_engine = Engine(dense_model(model))
    hf = None if args.no_hf else hf_reference(model)
    bandwidth, gflops = machine_rates()
    print(
        f"# machine: copy {bandwidth:.1f} GB/s (read+write), fp32 matmul {gflops:.0f} GFLOP/s,"
        f" {args.threads} threads, {args.clock} clock; torch {torch.__version__}"
    )
    print(
        f"# tiny preset: {cfg.num_parameters() / 1e6:.1f} M parameters, layers "
        f"{list(cfg.layer_ratios)}, window {cfg.window_size}, index_topk {cfg.index_topk},"
        f" quant_sim {model.quant_sim}"
    )

    gen = torch.Generator().manual_seed(1)
    longest = min(args.real_prefill, args.max_context)
    all_ids = torch.randint(0, cfg.vocab_size, (longest + 8,), generator=gen).tolist()

    # ---- prefill ----
    print("\n## Prefill (tokens/s, one extend call from an empty session)")
    print("| tokens | ours | dense baseline | Hugging Face | ours / HF | ours peak RSS |")
    print("| ---: | ---: | ---: | ---: | ---: | ---: |")
    prefill_points = [1 * KB, 4 * KB] if args.quick else [1 * KB, 4 * KB, 16 * KB, longest]
    prefill_points = [p for p in prefill_points if p <= longest]
    sessions = {}
    for n in sorted(set(prefill_points)):
        gc.collect()
        rss0 = peak_rss_mb()
        ours, sessions[n] = prefill_rate(engine, all_ids[:n])
        rss = peak_rss_mb()
        dense = prefill_rate(dense_engine, all_ids[:n])[0] if n <= 4 * KB else None
        theirs = None
        if hf is not None and n <= 4 * KB:
            ids = torch.tensor([all_ids[:n]])
            with torch.no_grad():
                hf(ids[:, :256], logits_to_keep=1)  # warm-up
                dt = timed(lambda ids=ids: hf(ids, logits_to_keep=1), repeat=2)
            theirs = n / dt
        print(
            f"| {n} | {ours:,.0f} | {fmt(dense)} | {fmt(theirs)} | "
            f"{fmt(ours / theirs if theirs else None, '.2f')}x | "
            f"{rss:,.0f} MB (+{rss - rss0:,.0f}) |"
        )

    # ---- decode ----
    print("\n## Decode (ms/token) and cache (bytes per context token)")
    print(
        "| context | ours | dense | HF | ours floor | ours/floor | dense/ours | "
        "ours cache B/tok | formula B/tok | dense B/tok | HF B/tok |"
    )
    print("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    contexts = [1 * KB, 4 * KB] if args.quick else [1 * KB, 16 * KB, 32 * KB, 128 * KB, 1 << 20]
    contexts = [c for c in contexts if c <= args.max_context]
    base = sessions[max(sessions)]
    contexts = sorted(set(contexts) | {c for c in hf_contexts if c <= args.max_context})
    hf_state = {}
    if hf is not None:
        # Hugging Face prefills in chunks (one 16K call does not fit: dense masked scores).
        for c in hf_contexts:
            ids = torch.tensor([(all_ids * math.ceil(c / len(all_ids)))[:c]])
            hf_state[c] = hf_prefill(hf, ids, 2048)
    one_m = None
    dense_src = None
    for c in contexts:
        tiled = c > longest
        if c in sessions:
            s = sessions[c]
        elif tiled or c > longest:
            tiled = True
            s = tile_session(engine, base, c)
        else:
            s = engine.new_session()
            engine.extend(s, all_ids[:c])
        if c == (1 << 20):
            one_m = s
        steps = 20 if c <= 128 * KB else 10
        ours = decode_ms(engine, s, steps, warmup=max(cfg.compress_ratios))
        cache_bt = s.cache_bytes / c
        formula_bt = cfg.cache_bytes(c) / c
        w, cb = decode_bytes(cfg, c, dense=False)
        floor = (w + cb) / (bandwidth / 2 * 1e9) * 1e3  # bytes are read once: read bandwidth
        # the dense baseline: real prefill up to 16K, tiled beyond (its prefill is quadratic)
        if c <= min(16 * KB, longest):
            ds = dense_engine.new_session()
            dense_engine.extend(ds, all_ids[:c])
        else:
            if dense_src is None:
                dense_src = dense_engine.new_session()
                dense_engine.extend(dense_src, all_ids[: min(4 * KB, longest)])
            ds = tile_session(dense_engine, dense_src, c, dense=True)
        dense = decode_ms(dense_engine, ds, 5 if c > 128 * KB else 10)
        dense_bt = dense_cache_bytes(ds) / c
        del ds
        theirs = hf_bt = None
        if c in hf_state:
            theirs = hf_decode_ms(hf, hf_state[c], 10)
            hf_bt = hf_cache_bytes(hf_state[c].past_key_values) / c
        tag = " (tiled)" if tiled else ""
        print(
            f"| {c}{tag} | {ours:.2f} | {dense:.2f} | {fmt(theirs, '.2f')} | {floor:.2f} | "
            f"{ours / floor:.2f} | {dense / ours:.1f}x | {cache_bt:.0f} | {formula_bt:.0f} | "
            f"{dense_bt:.0f} | {fmt(hf_bt, '.0f')} |"
        )
        gc.collect()

    # ---- floor arithmetic ----
    c = contexts[-1]
    w, cb = decode_bytes(cfg, c, dense=False)
    print(
        f"\n## Bandwidth floor at {c} tokens: weights read {w / 1e6:.1f} MB (all but the "
        f"unchosen experts, embedding row only) + cache read {cb / 1e6:.1f} MB (every indexer "
        f"key, every HCA entry, top-k CSA entries, windows) = {(w + cb) / 1e6:.1f} MB at "
        f"{bandwidth / 2:.1f} GB/s read = {(w + cb) / (bandwidth / 2 * 1e9) * 1e3:.2f} ms"
    )

    # ---- save / load ----
    if one_m is None:
        one_m = base
    n = one_m.num_tokens
    tmp = Path(tempfile.mkdtemp(prefix="dsv4-bench-"))
    try:
        t_save = timed(lambda: one_m.save(tmp / "s"))
        size = sum(f.stat().st_size for f in (tmp / "s").iterdir())
        loaded = None

        def load():
            nonlocal loaded
            loaded = engine.load_session(tmp / "s")

        t_load = timed(load)
        same = torch.equal(loaded.last_logits, one_m.last_logits)
        a = engine.extend(loaded, [5])
        b = engine.extend(one_m.fork(), [5])
        # re-prefill: measured when it was done here; else estimated from two measured
        # 1024-token extends, at position 0 and at position n: a chunk's cost grows linearly
        # with its position (the indexer scores every earlier entry), so the whole prefill
        # costs n/1024 chunks times the mean of the two.
        if n <= longest:
            t_prefill, how = n / prefill_rate(engine, all_ids[:n])[0], "measured"
        else:
            chunk = all_ids[:1024]
            t_first = timed(lambda: engine.extend(engine.new_session(), chunk))
            t_last = timed(lambda: engine.extend(one_m.fork(), chunk))
            t_prefill = n / 1024 * (t_first + t_last) / 2
            how = (
                f"estimated: a 1024-token extend takes {t_first:.1f} s at position 0 and "
                f"{t_last:.1f} s at position {n}"
            )
        print(
            f"\n## Session of {n} tokens: {size / 1e6:.0f} MB on disk; save {t_save:.2f} s, "
            f"load {t_load:.2f} s; re-prefill {t_prefill:.0f} s ({how}); load is "
            f"{t_prefill / t_load:,.0f}x faster; identical next logits: {same}, "
            f"continued logits max |diff| {(a - b).abs().max().item():.1e}"
        )
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def fmt(x, spec: str = ",.0f") -> str:
    return "—" if x is None else format(x, spec)


if __name__ == "__main__":
    main()
