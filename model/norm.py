"""RMSNorm, computed in fp32 as the reference does."""

from __future__ import annotations

import functools
import math

import torch
from torch import nn


class RMSNorm(nn.Module):
    """Root-mean-square normalisation with a learned per-channel weight."""

    def __init__(self, dim: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self._parameters["weight"]  # not nn.Module.__getattr__ (~0.5 us; ~20 calls a step)
        if x.dtype == w.dtype == torch.float32:  # no conversions (decode calls this ~30 times)
            if x.numel() == x.shape[-1] and not torch.is_grad_enabled():
                # One row (a decode step): |x|^2 as a dot product and 1 / rms(x) as a Python
                # float, three small ops where `rms_normalize` and the weight make five.
                flat = x.view(-1)
                r = 1.0 / math.sqrt(torch.dot(flat, flat).item() / flat.shape[0] + self.eps)
                return torch.mul(x, w).mul_(r)
            return rms_normalize(x, self.eps) * w
        return (rms_normalize(x.float(), self.eps) * w.float()).to(x.dtype)


def fp32(t: torch.Tensor) -> torch.Tensor:
    """t in float32; returns t itself when it already is (skips a ~1 us no-op dispatch,
    of which a decode step would make a few hundred)."""
    return t if t.dtype is torch.float32 else t.float()


def rms_normalize(x: torch.Tensor, eps: float) -> torch.Tensor:
    """x / rms(x) over the last dim, no weight (used per query head and by mHC)."""
    # Spelled out: in a decode step these five small ops cost less than the fused rms_norm;
    # a sum scaled by add's alpha is one op where mean(x^2) + eps is three, and x * x is
    # square() without its pow dispatch (the same products).
    ms = torch.add(scalar(eps), (x * x).sum(-1, keepdim=True), alpha=1.0 / x.shape[-1])
    return x * torch.rsqrt(ms)


@functools.lru_cache(maxsize=64)
def scalar(value: float, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """`value` as a 0-dim tensor, made once (do not write into it). An op given a Python number
    first turns it into a tensor (~1.5 us, a decode step's tiny ops take ~1 us), and a 0-dim
    tensor takes part in type promotion as the number would."""
    return torch.tensor(value, dtype=dtype)
