"""Training on token sequences with loss masks: Muon + AdamW, the MTP auxiliary loss, resumable.

The trainer knows tokens and masks only (which positions are targets); what a message is, and
which tokens belong to the assistant, was decided by whoever built the dataset.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from .muon import MuonAdamW, build_optimizer

CHECKPOINT_NAME = "trainer.pt"


class TokenDataset:
    """Variable-length token sequences, each with a 0/1 mask marking the tokens to predict."""

    def __init__(self, sequences: Sequence[np.ndarray], masks: Sequence[np.ndarray]):
        if len(sequences) != len(masks):
            raise ValueError(f"{len(sequences)} sequences but {len(masks)} masks")
        for i, (s, m) in enumerate(zip(sequences, masks, strict=True)):
            if len(s) != len(m):
                raise ValueError(f"sequence {i}: {len(s)} tokens but a mask of {len(m)}")
        self.sequences = [np.asarray(s, dtype=np.int64) for s in sequences]
        self.masks = [np.asarray(m, dtype=np.bool_) for m in masks]

    def __len__(self) -> int:
        return len(self.sequences)

    def num_tokens(self) -> int:
        return int(sum(len(s) for s in self.sequences))

    def num_targets(self) -> int:
        return int(sum(int(m.sum()) for m in self.masks))

    def save(self, path: str | Path) -> None:
        lengths = np.array([len(s) for s in self.sequences], dtype=np.int64)
        np.savez_compressed(
            path,
            tokens=np.concatenate(self.sequences).astype(np.int32),
            mask=np.concatenate(self.masks).astype(np.uint8),
            lengths=lengths,
        )

    @classmethod
    def load(cls, path: str | Path) -> TokenDataset:
        with np.load(path) as data:
            tokens, mask, lengths = data["tokens"], data["mask"], data["lengths"]
        bounds = np.concatenate([[0], np.cumsum(lengths)])
        seqs = [tokens[a:b] for a, b in zip(bounds[:-1], bounds[1:], strict=True)]
        masks = [mask[a:b] for a, b in zip(bounds[:-1], bounds[1:], strict=True)]
        return cls(seqs, masks)


class TrainConfig(BaseModel):
    """How long and how hard to train. The run stops at whichever limit comes first."""

    model_config = ConfigDict(extra="forbid")

    out_dir: Path = Field(description="where the resumable checkpoint (trainer.pt) lives")
    max_steps: int = Field(2000, description="optimiser steps at most")
    max_minutes: float = Field(60.0, description="wall-clock budget; the LR schedule follows it")
    batch_tokens: int = Field(8192, description="padded tokens per step (batch x length)")
    muon_lr: float = 0.02
    adamw_lr: float = 3e-3
    weight_decay: float = Field(0.1, description="Muon's decoupled weight decay")
    warmup_steps: int = 30
    decay_start: float = Field(0.6, description="fraction of the run after which the LR decays")
    final_lr_frac: float = 0.05
    mtp_weight: float = Field(0.3, description="weight of the MTP (token after next) loss")
    grad_clip: float = 1.0
    checkpoint_every: int = Field(50, description="steps between checkpoints")
    seed: int = 0
    pad_id: int = 0


class StepStats(BaseModel):
    step: int
    loss: float
    mtp_loss: float | None
    lr_factor: float
    tokens: int
    elapsed_s: float


def lr_factor(step: int, progress: float, cfg: TrainConfig) -> float:
    """Warm-up, then constant, then linear decay to `final_lr_frac` (progress in [0, 1])."""
    warm = min(1.0, (step + 1) / max(1, cfg.warmup_steps))
    if progress <= cfg.decay_start:
        return warm
    frac = min(1.0, (progress - cfg.decay_start) / max(1e-9, 1.0 - cfg.decay_start))
    return warm * (1.0 - frac * (1.0 - cfg.final_lr_frac))


def make_batches(
    lengths: Sequence[int], batch_tokens: int, *, seed: int = 0, pool: int = 8
) -> list[list[int]]:
    """Batches of at most `batch_tokens` padded tokens, with little padding.

    Sequences are shuffled, then taken `pool` batches' worth at a time and sorted by length
    inside that pool only: a batch holds sequences of similar length from a random sample, a
    wider mix than one global sort by length gives (there, a batch is often one task family).
    """
    order = np.random.default_rng([seed, 12345]).permutation(len(lengths)).tolist()
    mean = max(1, int(np.mean(lengths))) if len(lengths) else 1
    per_pool = max(1, pool * batch_tokens // mean)
    batches: list[list[int]] = []
    for start in range(0, len(order), per_pool):
        chunk = sorted(order[start : start + per_pool], key=lambda i: lengths[i])
        current: list[int] = []
        longest = 0
        for i in chunk:
            grown = max(longest, lengths[i])
            if current and grown * (len(current) + 1) > batch_tokens:
                batches.append(current)
                current, grown = [], lengths[i]
            current.append(i)
            longest = grown
        if current:
            batches.append(current)
    return batches


def batch_for_step(step: int, batches: list[list[int]], seed: int) -> list[int]:
    """The batch of a given step: a fresh shuffle per epoch, a pure function of (step, seed)."""
    epoch, pos = divmod(step, len(batches))
    perm = np.random.default_rng([seed, epoch]).permutation(len(batches))
    return batches[int(perm[pos])]


def collate(
    data: TokenDataset, idx: Sequence[int], pad_id: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-pad to the longest sequence; padding is never a target."""
    length = max(len(data.sequences[i]) for i in idx)
    ids = torch.full((len(idx), length), pad_id, dtype=torch.long)
    mask = torch.zeros((len(idx), length), dtype=torch.bool)
    for row, i in enumerate(idx):
        n = len(data.sequences[i])
        ids[row, :n] = torch.from_numpy(data.sequences[i])
        mask[row, :n] = torch.from_numpy(data.masks[i])
    return ids, mask


def masked_ce(logits: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy over the masked positions."""
    ce = F.cross_entropy(
        logits.reshape(-1, logits.shape[-1]).float(), targets.reshape(-1), reduction="none"
    )
    m = mask.reshape(-1).float()
    return (ce * m).sum() / m.sum().clamp_min(1.0)


def compute_losses(
    model: nn.Module, ids: torch.Tensor, mask: torch.Tensor, mtp_weight: float
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """(total, next-token loss, MTP loss or None). mask[t] = 1 means token t is a target."""
    if mtp_weight > 0:
        logits, mtp_logits = model(ids, return_mtp=True)
    else:
        logits, mtp_logits = model(ids), None
    main = masked_ce(logits[:, :-1], ids[:, 1:], mask[:, 1:])
    if mtp_logits is None:
        return main, main, None
    # mtp_logits[:, t] drafts token t + 2 (its length may be T or T - 1).
    t = ids.shape[1]
    mtp = masked_ce(mtp_logits[:, : t - 2], ids[:, 2:], mask[:, 2:])
    return main + mtp_weight * mtp, main, mtp


class V4ForTraining(nn.Module):
    """A DeepseekV4 seen by the trainer: `forward(ids, return_mtp)` with gradients everywhere.

    The whole sequence goes through the model in one step from empty caches (the inference
    `forward` works under no_grad in chunks). Parameter names get the prefix `model.`;
    `model.muon.uses_muon` matches by suffix, so the Muon/AdamW split is unchanged.
    """

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, ids: torch.Tensor, return_mtp: bool = False):
        m = self.model
        streams = m.forward_streams(ids, [m.new_cache() for _ in range(ids.shape[0])])
        logits = m.logits_from_streams(streams)
        if not return_mtp:
            return logits
        return logits, self._mtp_logits(streams[:, :-1], ids[:, 1:])

    def _mtp_logits(self, streams: torch.Tensor, next_ids: torch.Tensor) -> torch.Tensor:
        """The MTP draft as `DeepseekV4.mtp_logits` computes it, with gradients."""
        from model.cache import SequenceCache
        from model.hyper_connections import hc_head_collapse

        m, cfg = self.model, self.model.cfg
        mtp = m.mtp[0]
        x = mtp.e_proj(mtp.enorm(m.embed(next_ids))).unsqueeze(-2) + mtp.h_proj(mtp.hnorm(streams))
        one = cfg.model_copy(update={"compress_ratios": cfg.mtp_ratios, "n_layers": 1})
        caches = [SequenceCache.empty(one).layers[0] for _ in range(x.shape[0])]
        x = mtp(x, next_ids, [0] * x.shape[0], caches, quant_sim=m.quant_sim)
        y = hc_head_collapse(
            x,
            mtp.hc_head_fn,
            mtp.hc_head_base,
            mtp.hc_head_scale,
            eps=cfg.hc_eps,
            norm_eps=cfg.norm_eps,
        )
        return m.head(mtp.norm(y)).float()


class Trainer:
    """Runs the optimisation loop; `run()` resumes from `out_dir/trainer.pt` when it exists."""

    def __init__(self, model: nn.Module, data: TokenDataset, cfg: TrainConfig):
        self.model, self.data, self.cfg = model, data, cfg
        self.optimizer: MuonAdamW = build_optimizer(
            model.named_parameters(),
            muon_lr=cfg.muon_lr,
            adamw_lr=cfg.adamw_lr,
            weight_decay=cfg.weight_decay,
        )
        self.batches = make_batches(
            [len(s) for s in data.sequences], cfg.batch_tokens, seed=cfg.seed
        )
        self.step = 0
        self.elapsed = 0.0
        self.history: list[StepStats] = []

    @property
    def checkpoint_path(self) -> Path:
        return self.cfg.out_dir / CHECKPOINT_NAME

    def save(self) -> None:
        self.cfg.out_dir.mkdir(parents=True, exist_ok=True)
        tmp = self.checkpoint_path.with_suffix(".tmp")
        torch.save(
            {
                "model": self.model.state_dict(),
                "optimizer": self.optimizer.state_dict(),
                "step": self.step,
                "elapsed": self.elapsed,
                "config": self.cfg.model_dump(mode="json"),
            },
            tmp,
        )
        os.replace(tmp, self.checkpoint_path)  # a crash mid-write never leaves half a file

    def resume(self) -> bool:
        if not self.checkpoint_path.exists():
            return False
        state = torch.load(self.checkpoint_path, map_location="cpu", weights_only=False)
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.step, self.elapsed = int(state["step"]), float(state["elapsed"])
        return True

    def progress(self) -> float:
        return max(self.step / self.cfg.max_steps, self.elapsed / (60.0 * self.cfg.max_minutes))

    def run(self, *, show_progress: bool = True, on_step: Callable | None = None) -> Trainer:
        from tqdm import tqdm

        cfg = self.cfg
        self.resume()
        torch.manual_seed(cfg.seed + self.step)
        self.model.train()
        bar = tqdm(total=cfg.max_steps, initial=self.step, disable=not show_progress, unit="step")
        while self.progress() < 1.0:
            t0 = time.perf_counter()
            factor = lr_factor(self.step, self.progress(), cfg)
            for group in self.optimizer.param_groups:
                group["lr"] = group["base_lr"] * factor
            ids, mask = collate(
                self.data, batch_for_step(self.step, self.batches, cfg.seed), cfg.pad_id
            )
            loss, main, mtp = compute_losses(self.model, ids, mask, cfg.mtp_weight)
            if not math.isfinite(loss.item()):
                raise FloatingPointError(
                    f"loss became {loss.item()} at step {self.step}; lower the learning rates "
                    f"(muon_lr={cfg.muon_lr}, adamw_lr={cfg.adamw_lr}) and resume"
                )
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(self.model.parameters(), cfg.grad_clip)
            self.optimizer.step()
            self.step += 1
            self.elapsed += time.perf_counter() - t0
            stats = StepStats(
                step=self.step,
                loss=main.item(),
                mtp_loss=None if mtp is None else mtp.item(),
                lr_factor=factor,
                tokens=int(ids.numel()),
                elapsed_s=self.elapsed,
            )
            self.history.append(stats)
            bar.update(1)
            bar.set_postfix(
                loss=f"{stats.loss:.3f}", lr=f"{factor:.2f}", min=f"{self.elapsed / 60:.1f}"
            )
            if on_step is not None:
                on_step(stats)
            if self.step % cfg.checkpoint_every == 0:
                self.save()
        bar.close()
        self.save()
        return self


def copy_sequences(
    rng: np.random.Generator,
    batch: int,
    items: np.ndarray,
    *,
    bos: int,
    sep: int,
    pad: int,
    len_min: int = 8,
    len_max: int = 24,
    weights: np.ndarray | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """A batch of `bos x_1 .. x_L sep x_1 .. x_L`, the x distinct tokens drawn from `items`
    (with probabilities `weights` when given, else uniformly).

    Returns (ids [B, T] right-padded with `pad`, mask [B, T] marking the repeat as targets,
    induction [B, T] marking x_2 .. x_L of the repeat: the tokens only an induction head, one
    that finds the earlier x_i and reads the token after it, can predict)."""
    lengths = rng.integers(len_min, len_max + 1, size=batch)
    t = 2 * int(lengths.max()) + 2
    ids = np.full((batch, t), pad, dtype=np.int64)
    mask = np.zeros((batch, t), dtype=np.bool_)
    induction = np.zeros((batch, t), dtype=np.bool_)
    for b, n in enumerate(lengths):
        x = rng.choice(items, size=n, replace=False, p=weights)
        ids[b, : 2 * n + 2] = np.concatenate([[bos], x, [sep], x])
        mask[b, n + 2 : 2 * n + 2] = True
        induction[b, n + 3 : 2 * n + 2] = True
    return torch.from_numpy(ids), torch.from_numpy(mask), torch.from_numpy(induction)


class CopyPretrainConfig(BaseModel):
    """Copy pretraining: synthetic repeat-the-list sequences until induction is learnt.

    dsv4-tiny trained on the task data alone learns the fixed structure (DSML, thoughts) but
    not to copy names from the instruction: copied tokens are a few among many targets, and
    the induction mechanism sits on a long plateau. On sequences that are nothing but copies
    it is learnt in a few hundred steps (bench/tiny_copy_probe.py); the task data then starts
    from a model that already copies."""

    model_config = ConfigDict(extra="forbid")

    max_steps: int = Field(800, description="steps at most (0: no copy pretraining)")
    batch: int = Field(16, description="sequences per step")
    len_min: int = 8
    len_max: int = 24
    muon_lr: float = 0.01
    adamw_lr: float = 0.01
    weight_decay: float = 0.1
    warmup_steps: int = 30
    mtp_weight: float = 0.3
    target_accuracy: float = Field(0.95, description="stop once held-out copy accuracy reaches it")
    eval_every: int = 50
    seed: int = 0


def _copy_batch(
    rng: np.random.Generator,
    batch: int,
    items: np.ndarray,
    cfg: CopyPretrainConfig,
    specials: tuple[int, int, int],
    weights: np.ndarray | None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """`copy_sequences` with the config's lengths; specials = (bos, sep, pad)."""
    bos, sep, pad = specials
    return copy_sequences(
        rng,
        batch,
        items,
        bos=bos,
        sep=sep,
        pad=pad,
        len_min=cfg.len_min,
        len_max=cfg.len_max,
        weights=weights,
    )


def copy_accuracy(
    model: nn.Module,
    items: np.ndarray,
    cfg: CopyPretrainConfig,
    *,
    bos: int,
    sep: int,
    pad: int,
    weights: np.ndarray | None = None,
) -> float:
    """Teacher-forced argmax accuracy on the induction tokens of 64 fresh sequences (a fixed
    seed apart from training's): held-out, since every sequence is new."""
    rng = np.random.default_rng([cfg.seed, 777])
    ids, _, induction = _copy_batch(rng, 64, items, cfg, (bos, sep, pad), weights)
    was_training = model.training
    model.eval()
    with torch.no_grad():
        logits = model(ids)
    model.train(was_training)
    hits = (logits[:, :-1].argmax(-1) == ids[:, 1:]) & induction[:, 1:]
    return hits.sum().item() / max(1, int(induction[:, 1:].sum()))


def copy_pretrain(
    model: nn.Module,
    items: np.ndarray,
    cfg: CopyPretrainConfig,
    *,
    bos: int,
    sep: int,
    pad: int,
    weights: np.ndarray | None = None,
    on_eval: Callable[[int, float, float], None] | None = None,
) -> list[tuple[int, float]]:
    """Train `model` (a `V4ForTraining`-like module) on copy sequences over `items`; returns
    the curve [(step, held-out copy accuracy)]. Its own optimiser: the task phase starts fresh."""
    optimizer = build_optimizer(
        model.named_parameters(),
        muon_lr=cfg.muon_lr,
        adamw_lr=cfg.adamw_lr,
        weight_decay=cfg.weight_decay,
    )
    rng = np.random.default_rng(cfg.seed)
    model.train()
    curve: list[tuple[int, float]] = []
    loss_value = math.nan
    for step in range(cfg.max_steps + 1):
        if step % cfg.eval_every == 0 or step == cfg.max_steps:
            acc = copy_accuracy(model, items, cfg, bos=bos, sep=sep, pad=pad, weights=weights)
            curve.append((step, acc))
            if on_eval is not None:
                on_eval(step, loss_value, acc)
            if acc >= cfg.target_accuracy or step == cfg.max_steps:
                break
        factor = min(1.0, (step + 1) / max(1, cfg.warmup_steps))
        for group in optimizer.param_groups:
            group["lr"] = group["base_lr"] * factor
        ids, mask, _ = _copy_batch(rng, cfg.batch, items, cfg, (bos, sep, pad), weights)
        loss, main, _ = compute_losses(model, ids, mask, cfg.mtp_weight)
        if not math.isfinite(loss.item()):
            raise FloatingPointError(f"copy pretraining: loss became {loss.item()} at {step}")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        loss_value = main.item()
    return curve
