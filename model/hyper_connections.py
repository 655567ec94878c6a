"""Manifold-constrained hyper-connections (mHC): hc residual streams mixed by Sinkhorn.

The functions take explicit tensors (the parameters live on the block under their official
names `hc_attn_fn`, `hc_attn_base`, `hc_attn_scale`, ...), so other backends can call them.
"""

from __future__ import annotations

import functools

import numpy as np
import torch
import torch.nn.functional as F

# Up to this many 4x4 matrices (a decode step's few tokens), Sinkhorn runs on Python floats:
# its 39 normalisations of 16 numbers cost ~25 us there, against ~150 us as numpy calls and
# more as torch calls. Up to _NUMPY_MAX elements, numpy's lower per-call overhead wins.
_SCALAR_MAX = 8
_NUMPY_MAX = 4096


def hc_mix_weights(
    streams: torch.Tensor,
    fn: torch.Tensor,
    base: torch.Tensor,
    scale: torch.Tensor,
    *,
    sinkhorn_iters: int,
    eps: float,
    norm_eps: float,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """streams [..., hc, d] -> (pre [..., hc], post [..., hc], comb [..., hc, hc]) in fp32."""
    hc = streams.shape[-2]
    x = streams.flatten(-2).float()  # [..., hc*d]
    r = torch.rsqrt(x.square().mean(-1, keepdim=True) + norm_eps)
    mix = F.linear(x, fn.float()) * r  # [..., (2+hc)*hc]
    # scale[0], [1], [2] multiply the pre, post and comb slices: one multiply-add for all.
    a = torch.addcmul(base.float(), mix, scale.float()[_scale_index(hc, str(mix.device))])
    gates = torch.sigmoid(a[..., : 2 * hc])
    pre = gates[..., :hc] + eps
    post = 2 * gates[..., hc:]
    logits = a[..., 2 * hc :].unflatten(-1, (hc, hc))
    comb = sinkhorn(torch.softmax(logits, dim=-1) + eps, sinkhorn_iters, eps)
    return pre, post, comb


@functools.lru_cache(maxsize=8)
def _scale_index(hc: int, device: str) -> torch.Tensor:
    """Which of the 3 scales each of the (2 + hc) * hc mixing logits takes."""
    return torch.tensor([0] * hc + [1] * hc + [2] * hc * hc, device=device)


def sinkhorn(comb: torch.Tensor, iters: int, eps: float) -> torch.Tensor:
    """Column-normalise, then `iters - 1` rounds of row- then column-normalisation."""
    small = not comb.requires_grad and comb.device.type == "cpu"
    if small and comb.shape[-2:] == (4, 4) and comb.numel() <= 16 * _SCALAR_MAX:
        flat = comb.reshape(-1, 16).tolist()
        out = [_sinkhorn_4x4(m, iters, eps) for m in flat]
        return torch.tensor(out, dtype=comb.dtype).view(comb.shape)
    if small and comb.numel() <= _NUMPY_MAX:
        return torch.from_numpy(_sinkhorn_numpy(comb.numpy(), iters, eps))
    comb = comb / (comb.sum(-2, keepdim=True) + eps)
    for _ in range(iters - 1):
        comb = comb / (comb.sum(-1, keepdim=True) + eps)
        comb = comb / (comb.sum(-2, keepdim=True) + eps)
    return comb


def hc_collapse(streams: torch.Tensor, pre: torch.Tensor) -> torch.Tensor:
    """y = sum_j pre_j X_j: [..., hc, d] -> [..., d]."""
    return (pre.unsqueeze(-1) * streams.float()).sum(-2).to(streams.dtype)


def hc_expand(
    out: torch.Tensor, streams: torch.Tensor, post: torch.Tensor, comb: torch.Tensor
) -> torch.Tensor:
    """X'_k = post_k F(y) + sum_j comb[j, k] X_j (in fp32)."""
    mixed = comb.transpose(-1, -2) @ streams.float()
    return torch.addcmul(mixed, post.unsqueeze(-1), out.float().unsqueeze(-2)).to(streams.dtype)


def hc_head_collapse(
    streams: torch.Tensor,
    fn: torch.Tensor,
    base: torch.Tensor,
    scale: torch.Tensor,
    *,
    eps: float,
    norm_eps: float,
) -> torch.Tensor:
    """The final collapse before the output norm: `pre` weights only, no Sinkhorn."""
    x = streams.flatten(-2).float()
    r = torch.rsqrt(x.square().mean(-1, keepdim=True) + norm_eps)
    pre = torch.sigmoid((x @ fn.float().t()) * r * scale.float() + base.float()) + eps
    return hc_collapse(streams, pre)


def _sinkhorn_numpy(comb: np.ndarray, iters: int, eps: float) -> np.ndarray:
    eps32 = np.float32(eps)
    comb = comb / (comb.sum(-2, keepdims=True) + eps32)
    for _ in range(iters - 1):
        comb = comb / (comb.sum(-1, keepdims=True) + eps32)
        comb = comb / (comb.sum(-2, keepdims=True) + eps32)
    return comb


def _sinkhorn_4x4(m: list[float], iters: int, eps: float) -> list[float]:
    """Sinkhorn of one row-major 4x4 matrix on Python floats (double precision, then rounded
    to fp32 by the caller: within ~1e-7 of the fp32 loop)."""
    a, b, c, d, e, f, g, h, i, j, k, l_, m_, n, o, p = m
    for it in range(iters):
        if it:  # rows (the first round normalises columns only)
            s = a + b + c + d + eps
            a, b, c, d = a / s, b / s, c / s, d / s
            s = e + f + g + h + eps
            e, f, g, h = e / s, f / s, g / s, h / s
            s = i + j + k + l_ + eps
            i, j, k, l_ = i / s, j / s, k / s, l_ / s
            s = m_ + n + o + p + eps
            m_, n, o, p = m_ / s, n / s, o / s, p / s
        s = a + e + i + m_ + eps
        a, e, i, m_ = a / s, e / s, i / s, m_ / s
        s = b + f + j + n + eps
        b, f, j, n = b / s, f / s, j / s, n / s
        s = c + g + k + o + eps
        c, g, k, o = c / s, g / s, k / s, o / s
        s = d + h + l_ + p + eps
        d, h, l_, p = d / s, h / s, l_ / s, p / s
    return [a, b, c, d, e, f, g, h, i, j, k, l_, m_, n, o, p]
