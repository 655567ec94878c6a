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
        self.compressed = compressed
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

    def cis(self, positions: torch.Tensor) -> torch.Tensor:
        """positions [...] -> cos + i sin [..., rope_head_dim // 2] (complex64), for `rotate`."""
        return torch.complex(*self(positions))


class StepPositions:
    """Positions of one forward step's tokens and their RoPE factors, made once per step.

    Every layer of one kind (compressed or not) has the same rotary setting, since all are
    built from one config, so each kind's factors are computed by its first layer only.
    """

    def __init__(self, starts: list[int], n: int) -> None:
        self.starts = starts
        # [B, n] absolute positions; a decode step (n == 1) needs no arange
        base = torch.tensor(starts).unsqueeze(1)
        self.pos = base if n == 1 else base + torch.arange(n)
        self._cis: dict[object, torch.Tensor] = {}

    def cis(self, rotary: Rotary) -> torch.Tensor:
        """[B, n, rd/2] complex RoPE factors of these positions under `rotary`."""
        factors = self._cis.get(rotary.compressed)
        if factors is None:
            factors = self._cis[rotary.compressed] = rotary.cis(self.pos)
        return factors

    def cis_conj(self, rotary: Rotary) -> torch.Tensor:
        """The conjugate factors (undoing the rotation), as a tensor of its own."""
        key = (rotary.compressed, True)
        factors = self._cis.get(key)
        if factors is None:
            factors = self._cis[key] = self.cis(rotary).conj().resolve_conj()
        return factors


def apply_rope(
    x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, *, inverse: bool = False
) -> torch.Tensor:
    """Rotate interleaved pairs of the LAST 2*cos.shape[-1] dims of x.

    x [..., n, (heads,) d]; cos/sin broadcastable to [..., n, (1,) rd/2]. `inverse` rotates by
    the negative angle (the attention output's de-rotation, since V = K carries RoPE).
    """
    cis = torch.complex(cos, sin)
    return rotate(x, cis.conj() if inverse else cis)


def rotate(x: torch.Tensor, cis: torch.Tensor, *, inplace: bool = False) -> torch.Tensor:
    """`apply_rope` with the factors as one complex tensor (cos + i sin, or its conjugate to
    undo the rotation): the pairs (a, b) become (a cos - b sin, a sin + b cos).

    inplace: rotate x's own fp32 storage (a fresh tensor outside autograd) and return it.
    """
    rd = 2 * cis.shape[-1]
    if inplace and x.dtype == torch.float32:
        try:
            torch.view_as_complex(torch.unflatten(x[..., -rd:], -1, (-1, 2))).mul_(cis)
            return x
        except RuntimeError:  # a layout complex numbers cannot view: rotate a copy
            pass
    rope = x[..., -rd:].float()
    try:
        pairs = torch.view_as_complex(rope.unflatten(-1, (-1, 2)))
    except RuntimeError:  # a layout complex numbers cannot view (odd strides or offset)
        pairs = torch.view_as_complex(rope.contiguous().unflatten(-1, (-1, 2)))
    rotated = torch.view_as_real(pairs * cis).flatten(-2)
    return torch.cat((x[..., :-rd], rotated.to(x.dtype)), dim=-1)
