"""Partial, interleaved rotary position embedding, with YaRN on the compressed layers."""

from __future__ import annotations

import math

import torch
from torch import nn

from model.config import ModelConfig


def yarn_inv_freq(
    dim: int,
    theta: float,
    *,
    factor: float = 1.0,
    original_seq_len: int = 0,
    beta_fast: float = 32.0,
    beta_slow: float = 1.0,
) -> torch.Tensor:
    """Inverse frequencies of the `dim // 2` rotated pairs, YaRN-blended if original_seq_len > 0."""
    freqs = 1.0 / (theta ** (torch.arange(0, dim, 2, dtype=torch.float32) / dim))
    if original_seq_len <= 0 or factor == 1.0:
        return freqs

    def correction_dim(rotations: float) -> float:
        return dim * math.log(original_seq_len / (rotations * 2 * math.pi)) / (2 * math.log(theta))

    low = max(math.floor(correction_dim(beta_fast)), 0)
    high = min(math.ceil(correction_dim(beta_slow)), dim - 1)
    if low == high:
        high += 0.001
    ramp = ((torch.arange(dim // 2, dtype=torch.float32) - low) / (high - low)).clamp(0, 1)
    smooth = 1 - ramp  # 1: keep the original frequency (fast dims), 0: interpolate by factor
    return freqs / factor * (1 - smooth) + freqs * smooth


class Rotary(nn.Module):
    """cos/sin tables for positions, for one (theta, YaRN) setting; nothing persistent."""

    def __init__(self, cfg: ModelConfig, *, compressed: bool) -> None:
        super().__init__()
        if compressed:
            inv = yarn_inv_freq(
                cfg.rope_head_dim,
                cfg.compress_rope_theta,
                factor=cfg.rope_factor,
                original_seq_len=cfg.original_seq_len,
                beta_fast=cfg.beta_fast,
                beta_slow=cfg.beta_slow,
            )
        else:
            inv = yarn_inv_freq(cfg.rope_head_dim, cfg.rope_theta)
        self.register_buffer("inv_freq", inv, persistent=False)

    def forward(self, positions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """positions [...] (int) -> (cos, sin) [..., rope_head_dim // 2] in fp32."""
        # fp64 angles: positions reach 1M, where fp32 products lose the low bits of the phase.
        angles = positions.double().unsqueeze(-1) * self.inv_freq.double()
        return angles.cos().float(), angles.sin().float()


def apply_rope(
    x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, *, inverse: bool = False
) -> torch.Tensor:
    """Rotate interleaved pairs of the LAST 2*cos.shape[-1] dims of x.

    x [..., n, (heads,) d]; cos/sin broadcastable to [..., n, (1,) rd/2]. `inverse` rotates by
    the negative angle (the attention output's de-rotation, since V = K carries RoPE).
    """
    rd = 2 * cos.shape[-1]
    nope, rope = x[..., :-rd], x[..., -rd:]
    pairs = rope.float().unflatten(-1, (-1, 2))
    a, b = pairs[..., 0], pairs[..., 1]
    if inverse:
        sin = -sin
    rotated = torch.stack((a * cos - b * sin, a * sin + b * cos), dim=-1).flatten(-2)
    return torch.cat((nope, rotated.to(x.dtype)), dim=-1)
