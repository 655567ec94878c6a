"""Manifold-constrained hyper-connections (mHC): hc residual streams mixed by Sinkhorn.

The functions take explicit tensors (the parameters live on the block under their official
names `hc_attn_fn`, `hc_attn_base`, `hc_attn_scale`, ...), so other backends can call them.
"""

from __future__ import annotations

import array
import functools
import math
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F

from model.norm import fp32

# Up to this many tokens (a decode step), the mixing weights are computed on Python floats:
# Sinkhorn's 39 normalisations of 16 numbers cost ~25 us there, against ~150 us as numpy calls
# and more as torch calls. Up to _NUMPY_MAX elements, numpy's lower per-call overhead wins.
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
    x = fp32(streams.flatten(-2))  # [..., hc*d]
    if _scalar_path(streams, hc):
        return _mix_weights_scalar(x, fn, base, scale, hc, sinkhorn_iters, eps, norm_eps)
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


def _scalar_path(streams: torch.Tensor, hc: int) -> bool:
    """A decode step's few tokens (hc = 4, no autograd, CPU): the mixing weights are
    computed on Python floats, where each of their ~100 tiny operations costs far less."""
    return (
        hc == 4
        and 0 < streams.numel() <= _SCALAR_MAX * streams.shape[-1] * hc
        and not torch.is_grad_enabled()
        and streams.device.type == "cpu"
    )


def _mix_weights_scalar(
    x: torch.Tensor,
    fn: torch.Tensor,
    base: torch.Tensor,
    scale: torch.Tensor,
    hc: int,
    iters: int,
    eps: float,
    norm_eps: float,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """`hc_mix_weights` after the projection, in double precision on Python floats (within
    ~1e-7 of the fp32 tensor path). x [..., hc*d] fp32."""
    s0, s1, s2 = fp32(scale).tolist()
    scales = [s0] * hc + [s1] * hc + [s2] * hc * hc
    out = array.array("f")  # fp32, made into a tensor without a copy (torch.tensor: ~4x)
    for a in _scaled_mix(x, fn, base, scales, norm_eps):
        out.extend(_token_weights(a, iters, eps, sinkhorn=_sinkhorn_4x4))
    weights = torch.frombuffer(out, dtype=torch.float32).view(*x.shape[:-1], -1)
    pre, post, comb = weights.split_with_sizes([hc, hc, hc * hc], -1)
    return pre, post, comb.view(*x.shape[:-1], hc, hc)


def hc_mix_one(
    streams: torch.Tensor,
    fn: torch.Tensor,
    base: torch.Tensor,
    scale: torch.Tensor,
    *,
    sinkhorn_iters: int,
    eps: float,
    norm_eps: float,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """`hc_mix_weights` of one token's streams [hc, d] (fp32, hc = 4, outside autograd), shaped
    for `hc_collapse_one` / `hc_expand_one`: (pre [1, hc], post [hc, 1], comb^T [hc, hc])."""
    hc = streams.shape[0]  # 4: the weights below are written out for it (no inner loops)
    x = streams.reshape(-1)
    # fn x as one matrix-vector product and |x|^2 as a dot product: each cheaper to call than
    # linear and vector_norm of a [1, hc*d] row.
    mix = torch.mv(fp32(fn), x).tolist()
    r = 1.0 / math.sqrt(torch.dot(x, x).item() / x.shape[0] + norm_eps)
    s0, s1, s2 = fp32(scale).tolist()
    scales = [r * s0] * 4 + [r * s1] * 4 + [r * s2] * 16
    a = [v * q + c for v, q, c in zip(mix, scales, fp32(base).tolist(), strict=True)]
    # column-major comb: comb^T, the shape `hc_expand_one` takes
    out = array.array("f", _token_weights(a, sinkhorn_iters, eps, sinkhorn=_sinkhorn_4x4_cols))
    w = torch.frombuffer(out, dtype=torch.float32)
    pre, post, comb_t = w.split_with_sizes([hc, hc, hc * hc])
    return pre.view(1, hc), post.view(hc, 1), comb_t.view(hc, hc)


def _token_weights(
    a: list[float], iters: int, eps: float, *, sinkhorn: Callable[..., list[float]]
) -> list[float]:
    """One token's mixing weights (hc = 4) from its 24 scaled logits `a`: pre (4), post (4) and
    comb (16, Sinkhorn-normalised; its layout is `sinkhorn`'s), written out for hc = 4."""
    tanh, exp = math.tanh, math.exp
    # sigmoid(v) = (1 + tanh(v / 2)) / 2, written out (no overflow for large |v|)
    out = [
        0.5 + 0.5 * tanh(0.5 * a[0]) + eps,
        0.5 + 0.5 * tanh(0.5 * a[1]) + eps,
        0.5 + 0.5 * tanh(0.5 * a[2]) + eps,
        0.5 + 0.5 * tanh(0.5 * a[3]) + eps,
        1.0 + tanh(0.5 * a[4]),
        1.0 + tanh(0.5 * a[5]),
        1.0 + tanh(0.5 * a[6]),
        1.0 + tanh(0.5 * a[7]),
    ]
    comb: list[float] = []
    for k in (8, 12, 16, 20):  # each row's softmax
        l0, l1, l2, l3 = a[k : k + 4]
        top = max(l0, l1, l2, l3)
        e0, e1, e2, e3 = exp(l0 - top), exp(l1 - top), exp(l2 - top), exp(l3 - top)
        t = 1.0 / (e0 + e1 + e2 + e3)
        comb += (e0 * t + eps, e1 * t + eps, e2 * t + eps, e3 * t + eps)
    return out + sinkhorn(comb, iters, eps)


def hc_collapse_one(streams: torch.Tensor, pre: torch.Tensor) -> torch.Tensor:
    """`hc_collapse` of one token: streams [hc, d], pre [1, hc] -> [1, d]."""
    return torch.mm(pre, streams)


def hc_expand_one(
    out: torch.Tensor, streams: torch.Tensor, post: torch.Tensor, comb_t: torch.Tensor
) -> torch.Tensor:
    """`hc_expand` of one token: out [1, d], streams [hc, d], post [hc, 1], comb^T [hc, hc]."""
    return torch.addmm(torch.mm(comb_t, streams), post, out)


def _scaled_mix(
    streams: torch.Tensor,
    fn: torch.Tensor,
    base: torch.Tensor,
    scales: list[float],
    norm_eps: float,
) -> list[list[float]]:
    """Per token, fn x / rms(x) * scales + base as Python floats (x: the flattened streams)."""
    rows = fp32(streams).reshape(-1, fn.shape[-1])
    mix = F.linear(rows, fp32(fn)).tolist()
    norms = torch.linalg.vector_norm(rows, dim=-1).tolist()  # one op where mean(x^2) is three
    b = fp32(base).tolist()
    out = []
    for m, norm in zip(mix, norms, strict=True):
        r = 1.0 / math.sqrt(norm * norm / rows.shape[-1] + norm_eps)
        out.append([v * r * s + bi for v, s, bi in zip(m, scales, b, strict=True)])
    return out


def _sigmoid(v: float) -> float:
    return 0.5 * (1.0 + math.tanh(0.5 * v))  # no overflow for large |v|


def sinkhorn(comb: torch.Tensor, iters: int, eps: float) -> torch.Tensor:
    """Column-normalise, then `iters - 1` rounds of row- then column-normalisation."""
    small = not comb.requires_grad and comb.device.type == "cpu"
    if small and comb.numel() <= _NUMPY_MAX:
        return torch.from_numpy(_sinkhorn_numpy(comb.numpy(), iters, eps))
    comb = comb / (comb.sum(-2, keepdim=True) + eps)
    for _ in range(iters - 1):
        comb = comb / (comb.sum(-1, keepdim=True) + eps)
        comb = comb / (comb.sum(-2, keepdim=True) + eps)
    return comb


def hc_collapse(streams: torch.Tensor, pre: torch.Tensor) -> torch.Tensor:
    """y = sum_j pre_j X_j: [..., hc, d] -> [..., d]."""
    hc, d = streams.shape[-2:]
    if streams.numel() == hc * d and streams.dtype == torch.float32:  # one token: one product
        return torch.mm(pre.reshape(1, hc), streams.view(hc, d)).view(*streams.shape[:-2], d)
    return (pre.unsqueeze(-1) * fp32(streams)).sum(-2).to(streams.dtype)


def hc_expand(
    out: torch.Tensor, streams: torch.Tensor, post: torch.Tensor, comb: torch.Tensor
) -> torch.Tensor:
    """X'_k = post_k F(y) + sum_j comb[j, k] X_j (in fp32)."""
    hc, d = streams.shape[-2:]
    if streams.numel() == hc * d and streams.dtype == out.dtype == torch.float32:
        # one token: two plain matrix products on 2-D views
        mixed = torch.mm(comb.view(hc, hc).t(), streams.view(hc, d))
        return torch.addmm(mixed, post.view(hc, 1), out.view(1, d)).view(streams.shape)
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
    hc = streams.shape[-2]
    if _scalar_path(streams, hc):
        pre = [
            [_sigmoid(v) + eps for v in m]
            for m in _scaled_mix(streams, fn, base, [float(scale)] * hc, norm_eps)
        ]
        return hc_collapse(streams, torch.tensor(pre).view(*streams.shape[:-1]))
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
    to fp32 by the caller: within ~1e-7 of the fp32 loop), row-major."""
    t = _sinkhorn_4x4_cols(m, iters, eps)
    return t[0::4] + t[1::4] + t[2::4] + t[3::4]


def _sinkhorn_4x4_cols(m: list[float], iters: int, eps: float) -> list[float]:
    """`_sinkhorn_4x4`, the result column-major (the transpose `hc_mix_one` wants). Written
    out: per row or column one reciprocal and four products, one statement each (assigning
    four quotients as a tuple builds and unpacks it: ~25% slower in all)."""
    a, b, c, d, e, f, g, h, i, j, k, l_, m_, n, o, p = m
    for it in range(iters):
        if it:  # rows (the first round normalises columns only)
            s = 1.0 / (a + b + c + d + eps)
            a *= s
            b *= s
            c *= s
            d *= s
            s = 1.0 / (e + f + g + h + eps)
            e *= s
            f *= s
            g *= s
            h *= s
            s = 1.0 / (i + j + k + l_ + eps)
            i *= s
            j *= s
            k *= s
            l_ *= s
            s = 1.0 / (m_ + n + o + p + eps)
            m_ *= s
            n *= s
            o *= s
            p *= s
        s = 1.0 / (a + e + i + m_ + eps)
        a *= s
        e *= s
        i *= s
        m_ *= s
        s = 1.0 / (b + f + j + n + eps)
        b *= s
        f *= s
        j *= s
        n *= s
        s = 1.0 / (c + g + k + o + eps)
        c *= s
        g *= s
        k *= s
        o *= s
        s = 1.0 / (d + h + l_ + p + eps)
        d *= s
        h *= s
        l_ *= s
        p *= s
    return [a, e, i, m_, b, f, j, n, c, g, k, o, d, h, l_, p]
