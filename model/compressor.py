"""The KV compressor: one softmax-gated entry per `ratio` tokens (overlapping for ratio 4)."""

from __future__ import annotations

import torch
from torch import nn

from model.cache import CompressorState
from model.fp_formats import fp4_simulate, fp8_simulate, fp8_simulate_, hadamard
from model.norm import RMSNorm, fp32
from model.rope import Rotary
from model.rope import rotate as rotate_pairs


def compress_blocks(
    kv: torch.Tensor,
    score: torch.Tensor,
    ape: torch.Tensor,
    state: CompressorState,
    *,
    ratio: int,
    width: int,
) -> tuple[torch.Tensor, CompressorState]:
    """Pool the complete blocks of [state tail + new rows] into entries (before norm/RoPE).

    kv, score [n, coff*width] are the new tokens' projections (score raw, fp32). Returns
    (pooled [nb, width], new state).
    Overlap (coff = 2): entry i pools the second halves of block i's rows and the first halves
    of block i-1's rows; before block 0 the first halves are kv = 0, score = -inf.
    """
    overlap = kv.shape[-1] == 2 * width
    m = state.tail_kv.shape[0]
    if m + kv.shape[0] < ratio:  # no block completes (most decode steps): the tail grows
        tail_kv = torch.cat((state.tail_kv, kv)) if m else kv.clone()
        tail_sc = torch.cat((state.tail_score, score)) if m else score.clone()
        return kv.new_empty(0, width), CompressorState(
            tail_kv, tail_sc, state.prev_kv, state.prev_score
        )
    rows_kv = torch.cat((state.tail_kv, kv)) if m else kv
    rows_sc = torch.cat((state.tail_score, score)) if m else score
    nb = rows_kv.shape[0] // ratio
    used = nb * ratio
    new_state = CompressorState(
        rows_kv[used:].clone(), rows_sc[used:].clone(), state.prev_kv, state.prev_score
    )
    blk_kv = rows_kv[:used].view(nb, ratio, -1)
    blk_sc = rows_sc[:used].view(nb, ratio, -1) + ape.float()
    if overlap:
        if state.prev_kv is None:
            prev_kv = kv.new_zeros(1, ratio, width)
            prev_sc = kv.new_full((1, ratio, width), float("-inf"))
        else:
            prev_kv, prev_sc = state.prev_kv.unsqueeze(0), state.prev_score.unsqueeze(0)
        first_kv = torch.cat((prev_kv, blk_kv[:-1, :, :width]))
        first_sc = torch.cat((prev_sc, blk_sc[:-1, :, :width]))
        win_kv = torch.cat((first_kv, blk_kv[:, :, width:]), dim=1)  # [nb, 2r, width]
        win_sc = torch.cat((first_sc, blk_sc[:, :, width:]), dim=1)
        new_state.prev_kv = blk_kv[-1, :, :width].clone()
        new_state.prev_score = blk_sc[-1, :, :width].clone()
    else:
        win_kv, win_sc = blk_kv, blk_sc
    pooled = (win_kv.float() * torch.softmax(win_sc, dim=1)).sum(1)
    return pooled, new_state


class Compressor(nn.Module):
    """Compresses every `ratio` tokens' kv into one entry (CSA: ratio 4 with overlap; HCA)."""

    def __init__(self, dim: int, width: int, ratio: int, norm_eps: float, *, rotate: bool) -> None:
        super().__init__()
        self.ratio = ratio
        self.width = width
        self.overlap = ratio == 4
        self.rotate = rotate  # the indexer's keys: Hadamard + FP4 simulation
        coff = 2 if self.overlap else 1
        self.wkv = nn.Linear(dim, coff * width, bias=False)
        self.wgate = nn.Linear(dim, coff * width, bias=False)
        self.ape = nn.Parameter(torch.zeros(ratio, coff * width))
        self.norm = RMSNorm(width, norm_eps)

    def forward(
        self,
        x: torch.Tensor,
        start: int,
        state: CompressorState,
        rotary: Rotary,
        *,
        quant_sim: bool,
    ) -> tuple[torch.Tensor, CompressorState]:
        """x [n, dim] at positions start.. -> (new entries [nb, width], new state)."""
        return self.compress(
            fp32(self.wkv(x)), fp32(self.wgate(x)), start, state, rotary, quant_sim=quant_sim
        )

    def compress(
        self,
        kv: torch.Tensor,
        score: torch.Tensor,
        start: int,
        state: CompressorState,
        rotary: Rotary,
        *,
        quant_sim: bool,
    ) -> tuple[torch.Tensor, CompressorState]:
        """`forward` from the projections kv = wkv(x), score = wgate(x) [n, coff*width] (fp32)."""
        m = state.tail_kv.shape[0]
        if (start - m) % self.ratio:
            raise ValueError(
                f"compressor state holds {m} tail rows but the new tokens start at {start}; "
                f"the tail must begin on a multiple of {self.ratio}"
            )
        pooled, new_state = compress_blocks(
            kv, score, self._parameters["ape"], state, ratio=self.ratio, width=self.width
        )
        if pooled.shape[0] == 0:
            return pooled, new_state
        first_block = (start - m) // self.ratio
        positions = (torch.arange(pooled.shape[0]) + first_block) * self.ratio
        entries = finish_entries(
            self.norm(pooled),
            positions,
            rotary,
            self.rotate,
            quant_sim,
            inplace=not torch.is_grad_enabled(),
        )
        return entries, new_state


def finish_entries(
    entries: torch.Tensor,
    positions: torch.Tensor,
    rotary: Rotary,
    rotate: bool,
    quant_sim: bool,
    *,
    inplace: bool = False,
) -> torch.Tensor:
    """RoPE at each entry's first token position, then the reference's storage rounding.

    inplace: entries is a fresh fp32 tensor outside autograd, rotated and rounded in place."""
    entries = rotate_pairs(entries, rotary.cis(positions), inplace=inplace)
    if quant_sim:
        if rotate:
            return simulate_index_fp4(entries)
        return simulate_kv_fp8(entries, rotary, inplace=inplace)
    return entries


def simulate_kv_fp8(kv: torch.Tensor, rotary: Rotary, *, inplace: bool = False) -> torch.Tensor:
    """FP8 (block 64) rounding of the non-rope dims; the rope dims stay exact.

    inplace: round kv's own fp32 storage (a fresh tensor outside autograd) and return it.
    """
    rd = 2 * rotary.inv_freq.shape[0]
    if inplace and kv.dtype == torch.float32:
        fp8_simulate_(kv[..., :-rd], 64)
        return kv
    return torch.cat((fp8_simulate(kv[..., :-rd], 64), kv[..., -rd:]), dim=-1)


def simulate_index_fp4(x: torch.Tensor) -> torch.Tensor:
    """The indexer's Hadamard rotation then FP4 (block 32) rounding."""
    return fp4_simulate(hadamard(x), 32)
