"""Muon for matrix weights, AdamW for the rest: the optimiser DeepSeek-V4 was trained with.

Muon (V4 schedule): momentum 0.95 with Nesterov-style input, the update orthogonalised by a
hybrid Newton-Schulz iteration (8 steps with (3.4445, -4.7750, 2.0315) that push every singular
value quickly towards 1, then 2 steps with (2, -1.5, 0.5) that settle them at 1), rescaled by
sqrt(max(n, m)) * 0.18 so that its RMS matches a typical AdamW update, and decoupled weight decay.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch
from torch import nn

# (a, b, c) of X <- a X + (b A + c A^2) X with A = X X^T, and how many steps of each.
NS_SCHEDULE: tuple[tuple[tuple[float, float, float], int], ...] = (
    ((3.4445, -4.7750, 2.0315), 8),
    ((2.0, -1.5, 0.5), 2),
)
RMS_SCALE = 0.18


def newton_schulz(g: torch.Tensor, eps: float = 1e-7) -> torch.Tensor:
    """The orthogonal factor U V^T of g = U S V^T, approximately, for a 2-D g (in fp32)."""
    if g.ndim != 2:
        raise ValueError(f"newton_schulz needs a matrix, got shape {tuple(g.shape)}")
    x = g.float()
    transposed = x.shape[0] > x.shape[1]
    if transposed:  # iterate on the short side: A = X X^T is then the small Gram matrix
        x = x.T
    x = x / (x.norm() + eps)
    for (a, b, c), steps in NS_SCHEDULE:
        for _ in range(steps):
            gram = x @ x.T
            x = a * x + (b * gram + c * (gram @ gram)) @ x
    return x.T if transposed else x


def muon_update(grad: torch.Tensor, buf: torch.Tensor, momentum: float) -> torch.Tensor:
    """Advance the momentum buffer in place and return the scaled, orthogonalised update."""
    buf.mul_(momentum).add_(grad)
    nesterov = grad.add(buf, alpha=momentum)  # look ahead: g + mu * (mu * m_prev + g)
    shape = nesterov.shape
    mat = nesterov.reshape(shape[0], -1)
    update = newton_schulz(mat) * (math.sqrt(max(mat.shape)) * RMS_SCALE)
    return update.reshape(shape).to(grad.dtype)


class MuonAdamW(torch.optim.Optimizer):
    """One optimiser, two rules: groups with `use_muon=True` get Muon, the others AdamW.

    Keeping both in one object gives one state_dict to checkpoint and one set of groups for the
    learning-rate schedule. Every group has an `lr`; the schedule scales each group's
    `base_lr` (set here) by the same factor.
    """

    def __init__(self, groups: list[dict]):
        for group in groups:
            if group.get("use_muon"):
                group.setdefault("momentum", 0.95)
                group.setdefault("weight_decay", 0.1)
            else:
                group.setdefault("betas", (0.9, 0.95))
                group.setdefault("eps", 1e-8)
                group.setdefault("weight_decay", 0.0)
            group["use_muon"] = bool(group.get("use_muon"))
            group.setdefault("base_lr", group["lr"])
        super().__init__(groups, {})

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            lr, wd = group["lr"], group["weight_decay"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if group["use_muon"]:
                    if "momentum_buffer" not in state:
                        state["momentum_buffer"] = torch.zeros_like(p)
                    update = muon_update(p.grad, state["momentum_buffer"], group["momentum"])
                    p.mul_(1 - lr * wd)
                    p.add_(update, alpha=-lr)
                else:
                    self._adamw(p, state, group)
        return loss

    @staticmethod
    def _adamw(p: torch.Tensor, state: dict, group: dict) -> None:
        if "step" not in state:
            state["step"] = 0
            state["exp_avg"] = torch.zeros_like(p)
            state["exp_avg_sq"] = torch.zeros_like(p)
        state["step"] += 1
        beta1, beta2 = group["betas"]
        state["exp_avg"].lerp_(p.grad, 1 - beta1)
        state["exp_avg_sq"].mul_(beta2).addcmul_(p.grad, p.grad, value=1 - beta2)
        bias1 = 1 - beta1 ** state["step"]
        bias2 = 1 - beta2 ** state["step"]
        denom = (state["exp_avg_sq"] / bias2).sqrt_().add_(group["eps"])
        p.mul_(1 - group["lr"] * group["weight_decay"])
        p.addcdiv_(state["exp_avg"], denom, value=-group["lr"] / bias1)


# 2-D parameters that stay with AdamW: the token embedding and the output head (their rows are
# looked up one token at a time, not mixed as a matrix) and the compressors' position biases.
_ADAMW_MATRICES = ("embed.weight", "head.weight")


def uses_muon(name: str, p: torch.Tensor) -> bool:
    """Whether parameter `name` (an official V4 tensor name) is a matrix weight for Muon.

    AdamW takes the embedding, the head, the compressors' `ape`, and all 1-D tensors: every norm
    weight, the mHC biases and scales (`hc_*_base`, `hc_*_scale`), attention sinks, gate biases.
    """
    if p.ndim < 2:
        return False
    # By suffix: a wrapper module may prefix the official names (e.g. `model.embed.weight`).
    return not any(name == n or name.endswith("." + n) for n in (*_ADAMW_MATRICES, "ape"))


def build_optimizer(
    named_params: Iterable[tuple[str, nn.Parameter]],
    *,
    muon_lr: float = 0.02,
    adamw_lr: float = 3e-3,
    weight_decay: float = 0.1,
    adamw_weight_decay: float = 0.0,
) -> MuonAdamW:
    """Split parameters by `uses_muon` into a Muon group and an AdamW group."""
    muon, adamw = [], []
    for name, p in named_params:
        if p.requires_grad:
            (muon if uses_muon(name, p) else adamw).append(p)
    groups = []
    if muon:
        groups.append(
            {"params": muon, "use_muon": True, "lr": muon_lr, "weight_decay": weight_decay}
        )
    if adamw:
        groups.append(
            {
                "params": adamw,
                "use_muon": False,
                "lr": adamw_lr,
                "weight_decay": adamw_weight_decay,
            }
        )
    return MuonAdamW(groups)
