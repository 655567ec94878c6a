"""`dsv4 model train`: expert data -> tokenizer -> dsv4-tiny trained with Muon -> checkpoint.

Every stage keeps its output in the work directory and is skipped when that output exists, so
an interrupted run resumes where it stopped (the trainer itself resumes from its checkpoint).
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path

DEFAULT_WORK = Path("~/.cache/dsv4/tiny-train")
SHIPPED_DIR = Path(__file__).resolve().parents[2] / "model" / "default"


def tiny_model_config(vocab_size: int):
    """dsv4-tiny: every V4 feature (mHC, CSA and HCA layers, hash and routed MoE, MTP) at a
    size one CPU core trains in an hour. The window covers a whole task (<= 512 tokens), so
    copying a name from the instruction never depends on the compressed entries alone."""
    from model import ModelConfig

    return ModelConfig.preset(
        "tiny",
        vocab_size=vocab_size,
        dim=128,
        n_layers=4,
        n_heads=4,
        head_dim=96,
        rope_head_dim=32,
        q_lora_rank=64,
        o_groups=2,
        o_lora_rank=64,
        window_size=512,
        compress_ratios=[0, 4, 128, 0, 0],
        index_n_heads=2,
        index_head_dim=32,
        index_topk=8,
        n_routed_experts=4,
        n_shared_experts=1,
        n_activated_experts=2,
        moe_inter_dim=192,
        n_hash_layers=1,
        quant_sim=True,
    )


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", type=Path, default=SHIPPED_DIR, help="checkpoint directory to write")
    p.add_argument("--work", type=Path, default=DEFAULT_WORK, help="data and trainer state")
    p.add_argument("--tasks", type=int, default=8000, help="expert demonstrations to record")
    p.add_argument("--workers", type=int, default=4, help="processes recording demonstrations")
    p.add_argument(
        "--drills",
        type=int,
        default=None,
        help="copy drills mixed into the data (default: half the number of tasks)",
    )
    p.add_argument("--vocab", type=int, default=2048, help="tokenizer vocabulary size")
    p.add_argument("--minutes", type=float, default=60.0, help="training wall-clock budget")
    p.add_argument("--max-steps", type=int, default=100_000)
    p.add_argument("--batch-tokens", type=int, default=1536)
    p.add_argument("--muon-lr", type=float, default=0.01)
    p.add_argument("--adamw-lr", type=float, default=0.005)
    p.add_argument(
        "--copy-steps",
        type=int,
        default=800,
        help="copy pretraining steps at most before the task data (0: none; it stops early "
        "once held-out copy accuracy reaches 95%%)",
    )
    p.add_argument("--threads", type=int, default=1, help="torch threads (1: best on a busy CPU)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--export-only",
        action="store_true",
        help="write the checkpoint from the trainer's last saved state, without training",
    )


def main(args: argparse.Namespace) -> int:
    import torch

    from agent.tiny_tasks.dataset import (
        load_recordings,
        record_parallel,
        save_recordings,
        system_text,
        tokenize,
    )
    from agent.tiny_tasks.drills import copy_drills
    from agent.tiny_tasks.tokenizer_build import build_tokenizer, fixed_strings_for
    from model import DeepseekV4, Tokenizer, save_checkpoint
    from model.training import (
        TokenDataset,
        TrainConfig,
        Trainer,
        V4ForTraining,
    )
    from tools import default_tools

    torch.set_num_threads(args.threads)
    work = args.work.expanduser()
    work.mkdir(parents=True, exist_ok=True)
    log = lambda msg: print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)  # noqa: E731

    rec_path = work / "recordings.jsonl"
    if not rec_path.exists():
        log(f"recording {args.tasks} expert demonstrations with {args.workers} workers")
        save_recordings(record_parallel(args.tasks, args.seed, args.workers), rec_path)
    recordings = load_recordings(rec_path)
    log(f"{len(recordings)} demonstrations in {rec_path}")

    tok_path = work / "tokenizer.json"
    if not tok_path.exists():
        tools = default_tools()
        fixed = fixed_strings_for(system_text(tools), [t.spec() for t in tools])
        build_tokenizer([r.text for r in recordings], args.vocab, fixed).save(str(tok_path))
    tokenizer = Tokenizer.from_file(tok_path)

    data_path = work / "data.npz"
    if not data_path.exists():
        n_drills = len(recordings) // 2 if args.drills is None else args.drills
        drills = copy_drills(n_drills, args.seed)
        log(f"{n_drills} copy drills added")
        pairs = [tokenize(r, tokenizer) for r in [*recordings, *drills]]
        TokenDataset([p[0] for p in pairs], [p[1] for p in pairs]).save(data_path)
    data = TokenDataset.load(data_path)
    log(f"{len(data)} sequences, {data.num_tokens()} tokens, {data.num_targets()} targets")

    cfg = tiny_model_config(tokenizer.vocab_size)
    torch.manual_seed(args.seed)
    model = DeepseekV4(cfg)
    model.init_weights(seed=args.seed)
    log(f"model: {sum(p.numel() for p in model.parameters()) / 1e6:.2f} M parameters")
    wrapped = V4ForTraining(model)
    copy_minutes = (
        0.0 if args.export_only else copy_phase(args, work, wrapped, tokenizer, data, log)
    )
    train_cfg = TrainConfig(
        out_dir=work / "trainer",
        max_steps=args.max_steps,
        max_minutes=max(1.0, args.minutes - copy_minutes),
        batch_tokens=args.batch_tokens,
        muon_lr=args.muon_lr,
        adamw_lr=args.adamw_lr,
        seed=args.seed,
        pad_id=tokenizer.eos_id,
    )
    trainer = Trainer(wrapped, data, train_cfg)
    if args.export_only:
        if not trainer.resume():
            log(f"no trainer state in {train_cfg.out_dir}: nothing to export")
            return 2
        log(f"exporting the state of step {trainer.step}")
    else:
        trainer.run(show_progress=True)
    last = trainer.history[-5:] if trainer.history else []
    if last:
        log(f"done at step {trainer.step}: loss {sum(s.loss for s in last) / len(last):.4f}")

    out = args.out.expanduser()
    out.mkdir(parents=True, exist_ok=True)
    model.eval()
    save_checkpoint(model, out)
    shutil.copyfile(tok_path, out / "tokenizer.json")
    log(f"saved {out}")
    return 0


def copy_phase(args: argparse.Namespace, work: Path, model, tokenizer, data, log) -> float:
    """Copy pretraining (model.training.copy_pretrain) over the tokens the task data copies,
    unless the task phase has already begun (its checkpoint then holds the weights). Returns
    the minutes it took, which come out of the run's budget; recorded in copy_pretrain.json."""
    import json

    import numpy as np

    from model.training import CHECKPOINT_NAME, CopyPretrainConfig, copy_pretrain

    record = work / "copy_pretrain.json"
    if (work / "trainer" / CHECKPOINT_NAME).exists():
        return json.loads(record.read_text())["minutes"] if record.exists() else 0.0
    if args.copy_steps <= 0:
        return 0.0
    # The tokens to copy: ordinary BPE tokens (not the added V4 specials and fixed prompt
    # strings) as often as the task data's instructions and tool results hold them, flattened
    # by a square root. Uniform over all ~2000 ordinary tokens, each is a rare target and the
    # head's rows slow to learn: the loss was still ln(vocab) at step 300; weighted, held-out
    # copy accuracy passes 0.77 at step 350 and 0.95 at 550 (as 256 uniform synthetic items
    # do by ~300 steps in bench/tiny_copy_probe.py).
    added = np.array(sorted(tokenizer.backend.get_added_tokens_decoder()), dtype=np.int64)
    context = np.concatenate([s[~m] for s, m in zip(data.sequences, data.masks, strict=True)])
    counts = np.bincount(context, minlength=tokenizer.vocab_size).astype(np.float64)
    counts[added] = 0.0
    items = np.flatnonzero(counts)
    weights = np.sqrt(counts[items])
    weights /= weights.sum()
    cfg = CopyPretrainConfig(max_steps=args.copy_steps, seed=args.seed)
    log(f"copy pretraining: up to {cfg.max_steps} steps over {len(items)} tokens")
    t0 = time.perf_counter()
    curve = copy_pretrain(
        model,
        items,
        cfg,
        bos=tokenizer.bos_id,
        sep=tokenizer.eos_id,
        pad=tokenizer.eos_id,
        weights=weights,
        on_eval=lambda step, loss, acc: log(
            f"copy step {step}: loss {loss:.3f}, held-out copy accuracy {acc:.3f}"
        ),
    )
    minutes = (time.perf_counter() - t0) / 60
    record.write_text(json.dumps({"curve": curve, "minutes": minutes}))
    return minutes
