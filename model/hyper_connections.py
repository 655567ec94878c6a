"""Manifold-constrained hyper-connections (mHC): hc residual streams mixed by Sinkhorn.

The functions take explicit tensors (the parameters live on the block under their official
names `hc_attn_fn`, `hc_attn_base`, `hc_attn_scale`, ...), so other backends can call them.
"""

from __future__ import annotations

import numpy as np
import torch

# Up to this many elements (decode steps: a few tokens' hc x hc matrices), the ~80 tiny
# Sinkhorn operations run in numpy, whose per-call overhead is a fraction of torch's.
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
    mix = (x @ fn.float().t()) * r  # [..., (2+hc)*hc]
    s = scale.float()
    b = base.float()
    pre = torch.sigmoid(mix[..., :hc] * s[0] + b[:hc]) + eps
    post = 2 * torch.sigmoid(mix[..., hc : 2 * hc] * s[1] + b[hc : 2 * hc])
    logits = (mix[..., 2 * hc :] * s[2] + b[2 * hc :]).unflatten(-1, (hc, hc))
    comb = sinkhorn(torch.softmax(logits, dim=-1) + eps, sinkhorn_iters, eps)
    return pre, post, comb


def sinkhorn(comb: torch.Tensor, iters: int, eps: float) -> torch.Tensor:
    """Column-normalise, then `iters - 1` rounds of row- then column-normalisation."""
    if comb.numel() <= _NUMPY_MAX and not comb.requires_grad and comb.device.type == "cpu":
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
    return (post.unsqueeze(-1) * out.float().unsqueeze(-2) + mixed).to(streams.dtype)


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
