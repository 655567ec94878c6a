"""Mixture of experts: sqrt-softplus gate, bias-only selection or hash routing, SwiGLU experts."""

from __future__ import annotations

import functools
import math

import torch
import torch.nn.functional as F
from torch import nn

from model.config import ModelConfig
from model.fused import FusedWeight
from model.norm import fp32


class Gate(nn.Module):
    """Router: scores s = sqrt(softplus(x Wg^T)); picks experts by topk(s + bias) or tid2eid."""

    def __init__(self, cfg: ModelConfig, *, hashed: bool) -> None:
        super().__init__()
        self.topk = cfg.n_activated_experts
        self.score_func = cfg.score_func
        self.route_scale = cfg.route_scale
        self.hashed = hashed
        self.weight = nn.Parameter(torch.empty(cfg.n_routed_experts, cfg.dim))
        if hashed:
            self.register_buffer(
                "tid2eid", torch.zeros(cfg.vocab_size, self.topk, dtype=torch.int64)
            )
            self.bias = None
        else:
            self.bias = nn.Parameter(torch.zeros(cfg.n_routed_experts))

    def forward(
        self, x: torch.Tensor, ids: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """x [N, dim], ids [N] -> (weights [N, k] fp32, expert ids [N, k])."""
        logits = F.linear(x.float(), self.weight.float())
        if self.score_func == "sqrtsoftplus":
            scores = F.softplus(logits).sqrt()
        elif self.score_func == "sigmoid":
            scores = logits.sigmoid()
        else:
            scores = logits.softmax(-1)
        if self.hashed:
            if ids is None:
                raise ValueError("a hash-routed MoE layer needs the token ids")
            chosen = self.tid2eid[ids].long()
        else:
            chosen = (scores + self.bias.float()).topk(self.topk, dim=-1).indices
        weights = scores.gather(-1, chosen)
        if self.score_func != "softmax":
            weights = weights / weights.sum(-1, keepdim=True)
        return weights * self.route_scale, chosen

    def route_one(self, logits: list[float], token: int | None) -> list[tuple[int, float]]:
        """`forward` for one token on Python floats, from its logits x Wg^T (a dozen tiny
        tensor ops become none): [(expert id, weight)] in slot order."""
        if self.score_func == "sqrtsoftplus":  # softplus as torch computes it (linear above 20)
            scores = [math.sqrt(v if v > 20.0 else math.log1p(math.exp(v))) for v in logits]
        elif self.score_func == "sigmoid":
            scores = [0.5 * (1.0 + math.tanh(0.5 * v)) for v in logits]
        else:
            top = max(logits)
            exps = [math.exp(v - top) for v in logits]
            scores = [v / sum(exps) for v in exps]
        if self.hashed:
            if token is None:
                raise ValueError("a hash-routed MoE layer needs the token ids")
            chosen = self._buffers["tid2eid"][token].tolist()  # not __getattr__ (~0.5 us)
        else:
            bias = fp32(self._parameters["bias"]).tolist()
            biased = [s + b for s, b in zip(scores, bias, strict=True)]
            chosen = sorted(range(len(biased)), key=lambda e: -biased[e])[: self.topk]
        weights = [scores[e] for e in chosen]
        norm = sum(weights) if self.score_func != "softmax" else 1.0
        return [(e, w / norm * self.route_scale) for e, w in zip(chosen, weights, strict=True)]


class Expert(nn.Module):
    """SwiGLU feed-forward: w2(silu(w1 x) * w3 x), optionally clamped (in fp32)."""

    def __init__(self, dim: int, inter: int, swiglu_limit: float = 0.0) -> None:
        super().__init__()
        self.w1 = nn.Linear(dim, inter, bias=False)
        self.w2 = nn.Linear(inter, dim, bias=False)
        self.w3 = nn.Linear(dim, inter, bias=False)
        self.limit = swiglu_limit
        self._w13 = FusedWeight([self.w1.weight, self.w3.weight], torch.float32)

    def hidden_one(self, h13: torch.Tensor) -> torch.Tensor:
        """silu(w1 x) * w3 x, clamped as `forward`, from h13 = [w1 x | w3 x] [1, 2 inter]
        (outside autograd; `_w13` makes the two products as one)."""
        if self.limit > 0:
            lo, hi = _swiglu_bounds(h13.shape[-1] // 2, self.limit)
            h13 = torch.clamp(h13, lo, hi)  # both clamps of `forward` in one op
        gate, up = h13.view(2, 1, -1).unbind(0)  # [1, inter] each
        return F.silu(gate) * up

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = fp32(x)
        gate = F.linear(x, fp32(self.w1.weight))
        up = F.linear(x, fp32(self.w3.weight))
        if self.limit > 0:
            gate = gate.clamp(max=self.limit)
            up = up.clamp(-self.limit, self.limit)
        return F.linear(F.silu(gate) * up, fp32(self.w2.weight))


@functools.lru_cache(maxsize=8)
def _swiglu_bounds(inter: int, limit: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Clamp bounds of [gate | up]: gate at most limit, up within +-limit."""
    lo = torch.cat((torch.full((inter,), -math.inf), torch.full((inter,), -limit)))
    return lo, torch.full((2 * inter,), limit)


class MoE(nn.Module):
    """Routed experts (clamped SwiGLU) plus the shared expert (not clamped)."""

    def __init__(self, cfg: ModelConfig, *, hashed: bool) -> None:
        super().__init__()
        self.n_experts = cfg.n_routed_experts
        self.gate = Gate(cfg, hashed=hashed)
        self.experts = nn.ModuleList(
            Expert(cfg.dim, cfg.moe_inter_dim, cfg.swiglu_limit)
            for _ in range(cfg.n_routed_experts)
        )
        self.shared_experts = (
            Expert(cfg.dim, cfg.n_shared_experts * cfg.moe_inter_dim)
            if cfg.n_shared_experts
            else None
        )
        # The decode step's one product of x: the router's logits and the shared expert's.
        reads_x = [self.gate.weight]
        if self.shared_experts is not None:
            reads_x += [self.shared_experts.w1.weight, self.shared_experts.w3.weight]
        self._reads_x = FusedWeight(reads_x, torch.float32)

    def forward(self, x: torch.Tensor, ids: torch.Tensor | None) -> torch.Tensor:
        shape = x.shape
        flat = x.reshape(-1, shape[-1])
        if flat.shape[0] == 1 and not torch.is_grad_enabled():
            # one token (decode): routed on Python floats, its k experts in turn
            token = None if ids is None else int(ids.reshape(-1)[0])
            return self._one_token(flat, token).to(x.dtype).view(shape)
        weights, chosen = self.gate(flat, None if ids is None else ids.reshape(-1))
        k = chosen.shape[-1]
        # Group the (token, slot) pairs by expert: one matmul per expert hit, not per token.
        order = chosen.flatten().argsort(stable=True)
        counts = torch.bincount(chosen.flatten(), minlength=self.n_experts).tolist()
        token = order // k
        inputs = flat[token]
        outs = []
        start = 0
        for e, c in enumerate(counts):
            if c:
                outs.append(self.experts[e](inputs[start : start + c]))
                start += c
        routed = torch.cat(outs) * weights.flatten()[order].unsqueeze(-1)
        y = torch.zeros(flat.shape[0], shape[-1], dtype=torch.float32).index_add_(0, token, routed)
        if self.shared_experts is not None:
            y = y + self.shared_experts(flat)
        return y.to(x.dtype).view(shape)

    def _one_token(self, x: torch.Tensor, token: int | None) -> torch.Tensor:
        """x [1, dim] -> [1, dim] fp32; sums in the order of the grouped path (by expert id)."""
        x = fp32(x)
        h = self._reads_x.linear(x)  # [1, n_experts (+ 2 shared inter)]
        # Submodules and parameters read from their dicts: nn.Module's __getattr__ costs ~0.5 us
        # a name, and a step reads dozens here (None is kept outside _modules).
        m = self._modules
        routes = m["gate"].route_one(h[0, : self.n_experts].tolist(), token)
        experts = m["experts"]._modules  # ModuleList's own dict: keys "0", "1", ...
        y = None
        for e, w in sorted(routes):
            ex = experts[str(e)]
            hidden = ex.hidden_one(ex._w13.linear(x))
            w2 = fp32(ex._modules["w2"]._parameters["weight"]).t()
            # y + w * (hidden @ w2^T) as one op once there is a y
            y = torch.mm(hidden, w2) * w if y is None else torch.addmm(y, hidden, w2, alpha=w)
        shared = m.get("shared_experts")
        if shared is not None:
            hidden = shared.hidden_one(h[:, self.n_experts :])
            y = torch.addmm(y, hidden, fp32(shared._modules["w2"]._parameters["weight"]).t())
        return y
