"""The DeepSeek-V4 network: blocks with mHC residual streams, the output head, the MTP block."""

from __future__ import annotations

import torch
from torch import nn

from model.attention import Attention
from model.cache import LayerCache, SequenceCache
from model.config import ModelConfig
from model.hyper_connections import (
    hc_collapse,
    hc_collapse_one,
    hc_expand,
    hc_expand_one,
    hc_head_collapse,
    hc_mix_one,
    hc_mix_weights,
)
from model.moe import MoE
from model.norm import RMSNorm
from model.rope import StepPositions

# Tokens per internal step of a long forward: bounds activation memory (linear in length).
PREFILL_CHUNK = 1024


class Block(nn.Module):
    """One transformer block: mHC around attention, then mHC around the MoE."""

    def __init__(self, cfg: ModelConfig, ratio: int, *, hashed: bool) -> None:
        super().__init__()
        self.cfg = cfg
        hc = cfg.hc_mult
        mix = (2 + hc) * hc
        self.attn_norm = RMSNorm(cfg.dim, cfg.norm_eps)
        self.ffn_norm = RMSNorm(cfg.dim, cfg.norm_eps)
        self.attn = Attention(cfg, ratio)
        self.ffn = MoE(cfg, hashed=hashed)
        self.hc_attn_fn = nn.Parameter(torch.empty(mix, hc * cfg.dim))
        self.hc_attn_base = nn.Parameter(torch.zeros(mix))
        self.hc_attn_scale = nn.Parameter(torch.ones(3))
        self.hc_ffn_fn = nn.Parameter(torch.empty(mix, hc * cfg.dim))
        self.hc_ffn_base = nn.Parameter(torch.zeros(mix))
        self.hc_ffn_scale = nn.Parameter(torch.ones(3))

    def _mix(self, streams: torch.Tensor, which: str):
        return hc_mix_weights(
            streams,
            getattr(self, f"hc_{which}_fn"),
            getattr(self, f"hc_{which}_base"),
            getattr(self, f"hc_{which}_scale"),
            sinkhorn_iters=self.cfg.hc_sinkhorn_iters,
            eps=self.cfg.hc_eps,
            norm_eps=self.cfg.norm_eps,
        )

    def forward(
        self,
        streams: torch.Tensor,
        ids: torch.Tensor,
        starts: list[int],
        caches: list[LayerCache],
        *,
        quant_sim: bool,
        positions: StepPositions | None = None,
    ) -> torch.Tensor:
        """streams [B, n, hc, dim] -> [B, n, hc, dim]; caches advance by n tokens.

        `positions` (of these starts and n) lets the layers of one step share RoPE factors."""
        if _one_token(streams):
            return self._forward_one(streams, ids, starts, caches, quant_sim, positions)
        pre, post, comb = self._mix(streams, "attn")
        y = self.attn(
            self.attn_norm(hc_collapse(streams, pre)),
            starts,
            caches,
            quant_sim=quant_sim,
            positions=positions,
        )
        streams = hc_expand(y, streams, post, comb)
        pre, post, comb = self._mix(streams, "ffn")
        y = self.ffn(self.ffn_norm(hc_collapse(streams, pre)), ids)
        return hc_expand(y, streams, post, comb)

    def _forward_one(
        self,
        streams: torch.Tensor,
        ids: torch.Tensor,
        starts: list[int],
        caches: list[LayerCache],
        quant_sim: bool,
        positions: StepPositions | None,
    ) -> torch.Tensor:
        """`forward` of a decode step's one token: the streams as one [hc, dim] matrix, the
        mixing weights made in the shapes the products take (no reshaping between them)."""
        hc, dim = streams.shape[-2:]
        s = streams.view(hc, dim)
        cfg = self.cfg
        # Parameters and submodules read from their dicts (nn.Module's __getattr__ costs ~0.5 us
        # a name), submodules entered at their one-token methods (`__call__` costs ~1 us; the
        # decode step runs no module hooks).
        p, m = self._parameters, self._modules
        attn, ffn = m["attn"], m["ffn"]
        if positions is None:
            positions = StepPositions(starts, 1)
        mix = dict(sinkhorn_iters=cfg.hc_sinkhorn_iters, eps=cfg.hc_eps, norm_eps=cfg.norm_eps)
        pre, post, comb_t = hc_mix_one(
            s, p["hc_attn_fn"], p["hc_attn_base"], p["hc_attn_scale"], **mix
        )
        x = m["attn_norm"].forward(hc_collapse_one(s, pre)).view(1, 1, dim)
        y = attn._decode(x, starts, caches, positions, quant_sim=quant_sim)
        s = hc_expand_one(y.view(1, dim), s, post, comb_t)
        pre, post, comb_t = hc_mix_one(
            s, p["hc_ffn_fn"], p["hc_ffn_base"], p["hc_ffn_scale"], **mix
        )
        token = None if ids is None else int(ids.view(-1)[0])
        y = ffn._one_token(m["ffn_norm"].forward(hc_collapse_one(s, pre)), token)
        return hc_expand_one(y, s, post, comb_t).view(streams.shape)


def _one_token(streams: torch.Tensor) -> bool:
    """A decode step of one sequence in fp32 on the CPU, outside autograd (`hc_mix_one`)."""
    return (
        streams.shape[0] * streams.shape[1] == 1
        and streams.shape[2] == 4
        and streams.dtype == torch.float32
        and not torch.is_grad_enabled()
        and streams.device.type == "cpu"
    )


class MTPBlock(Block):
    """Multi-token prediction: a block fed embed(next token) and the main model's streams."""

    def __init__(self, cfg: ModelConfig, ratio: int) -> None:
        super().__init__(cfg, ratio, hashed=False)
        hc = cfg.hc_mult
        self.e_proj = nn.Linear(cfg.dim, cfg.dim, bias=False)
        self.h_proj = nn.Linear(cfg.dim, cfg.dim, bias=False)
        self.enorm = RMSNorm(cfg.dim, cfg.norm_eps)
        self.hnorm = RMSNorm(cfg.dim, cfg.norm_eps)
        self.norm = RMSNorm(cfg.dim, cfg.norm_eps)
        self.hc_head_fn = nn.Parameter(torch.empty(hc, hc * cfg.dim))
        self.hc_head_base = nn.Parameter(torch.zeros(hc))
        self.hc_head_scale = nn.Parameter(torch.ones(1))


class DeepseekV4(nn.Module):
    """DeepSeek-V4; `state_dict()` keys are the official checkpoint tensor names."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.quant_sim = cfg.quant_sim
        hc = cfg.hc_mult
        self.embed = nn.Embedding(cfg.vocab_size, cfg.dim)
        self.layers = nn.ModuleList(
            Block(cfg, r, hashed=i < cfg.n_hash_layers) for i, r in enumerate(cfg.layer_ratios)
        )
        self.norm = RMSNorm(cfg.dim, cfg.norm_eps)
        self.head = nn.Linear(cfg.dim, cfg.vocab_size, bias=False)
        self.hc_head_fn = nn.Parameter(torch.empty(hc, hc * cfg.dim))
        self.hc_head_base = nn.Parameter(torch.zeros(hc))
        self.hc_head_scale = nn.Parameter(torch.ones(1))
        self.mtp = nn.ModuleList(MTPBlock(cfg, r) for r in cfg.mtp_ratios)
        if self.embed.weight.device.type != "meta":
            self.init_weights()

    @torch.no_grad()
    def init_weights(self, seed: int | None = None, std: float = 0.02) -> None:
        """Random weights of a plausible scale (tests and benchmarks; checkpoints overwrite)."""
        gen = torch.Generator().manual_seed(seed) if seed is not None else None
        for name, p in self.named_parameters():
            leaf = name.rsplit(".", 1)[-1]
            if leaf in ("weight",) and p.dim() == 1 or leaf.endswith("_scale"):
                p.fill_(1.0)
            elif leaf in ("bias", "attn_sink", "ape") or leaf.endswith("_base"):
                p.zero_()
            else:
                p.copy_(torch.randn(p.shape, generator=gen) * std)
        for name, buf in self.named_buffers():
            if name.endswith("tid2eid"):
                buf.copy_(
                    torch.randint(0, self.cfg.n_routed_experts, buf.shape, generator=gen)
                    if self.cfg.n_activated_experts == 1
                    else torch.stack(
                        [
                            torch.randperm(self.cfg.n_routed_experts, generator=gen)[: buf.shape[1]]
                            for _ in range(buf.shape[0])
                        ]
                    )
                )

    def new_cache(self) -> SequenceCache:
        return SequenceCache.empty(self.cfg)

    def forward_streams(self, ids: torch.Tensor, caches: list[SequenceCache]) -> torch.Tensor:
        """ids [B, n], each sequence continuing its cache -> final streams [B, n, hc, dim].

        One step: the caches advance by n tokens (callers chunk long inputs)."""
        if len(caches) != ids.shape[0]:
            raise ValueError(f"{ids.shape[0]} sequences but {len(caches)} caches")
        starts = [c.length for c in caches]
        x = self.embed(ids)
        streams = x.unsqueeze(-2).expand(*x.shape[:-1], self.cfg.hc_mult, x.shape[-1])
        positions = StepPositions(starts, ids.shape[1])
        for i, layer in enumerate(self.layers):
            streams = layer(
                streams,
                ids,
                starts,
                [c.layers[i] for c in caches],
                quant_sim=self.quant_sim,
                positions=positions,
            )
        for c in caches:
            c.length += ids.shape[1]
        return streams

    def logits_from_streams(self, streams: torch.Tensor) -> torch.Tensor:
        y = hc_head_collapse(
            streams,
            self.hc_head_fn,
            self.hc_head_base,
            self.hc_head_scale,
            eps=self.cfg.hc_eps,
            norm_eps=self.cfg.norm_eps,
        )
        return self.head(self.norm(y)).float()

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        """Token ids [B, T] from position 0 -> logits [B, T, vocab] (fp32)."""
        caches = [self.new_cache() for _ in range(ids.shape[0])]
        out = []
        with torch.no_grad():
            for i in range(0, ids.shape[1], PREFILL_CHUNK):
                chunk = ids[:, i : i + PREFILL_CHUNK]
                out.append(self.logits_from_streams(self.forward_streams(chunk, caches)))
        return torch.cat(out, dim=1)

    def mtp_logits(self, streams: torch.Tensor, next_ids: torch.Tensor) -> torch.Tensor:
        """Draft logits for the token after next: streams [B, T, hc, dim] of the main model at
        positions 0.., next_ids [B, T] the tokens at positions 1.. -> [B, T, vocab]."""
        if not len(self.mtp):
            raise ValueError("this config has no MTP block (n_mtp_layers = 0)")
        mtp = self.mtp[0]
        e = mtp.e_proj(mtp.enorm(self.embed(next_ids)))
        x = e.unsqueeze(-2) + mtp.h_proj(mtp.hnorm(streams))
        caches = [
            SequenceCache.empty(
                self.cfg.model_copy(update={"compress_ratios": self.cfg.mtp_ratios, "n_layers": 1})
            )
            for _ in range(x.shape[0])
        ]
        with torch.no_grad():
            x = mtp(
                x,
                next_ids,
                [0] * x.shape[0],
                [c.layers[0] for c in caches],
                quant_sim=self.quant_sim,
            )
        y = hc_head_collapse(
            x,
            mtp.hc_head_fn,
            mtp.hc_head_base,
            mtp.hc_head_scale,
            eps=self.cfg.hc_eps,
            norm_eps=self.cfg.norm_eps,
        )
        return self.head(mtp.norm(y)).float()
