"""`DeepseekV4DsvForCausalLM`: `model.DeepseekV4` run by vLLM on its paged caches.

The network, its parameters (official names) and its weight loading are `model/`'s: this class
builds a `DeepseekV4`, loads the checkpoint with `model.checkpoint.load_state_into` (FP8/FP4
dequantisation included), and runs its blocks, replacing only the attention's cache handling by
`PagedAttention`. The residual streams (hc x dim per token) are what vLLM sees as hidden states.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch
from torch import nn
from vllm.config import VllmConfig
from vllm.forward_context import get_forward_context

from model.checkpoint import load_state_into
from model.config import ModelConfig
from model.hyper_connections import hc_collapse, hc_expand
from model.transformer import DeepseekV4
from model.vllm_plugin.paged_attention import PagedAttention, StepPlan

__all__ = ["DeepseekV4DsvForCausalLM"]


class DeepseekV4DsvForCausalLM(nn.Module):
    """DeepSeek-V4 (our implementation) as a vLLM model."""

    def __init__(self, *, vllm_config: VllmConfig, prefix: str = "") -> None:
        super().__init__()
        hf = vllm_config.model_config.hf_config
        self.cfg = ModelConfig.from_dict(hf.dsv4)
        self.model_dir = vllm_config.model_config.model
        block_size = vllm_config.cache_config.block_size
        ratios = [r for r in self.cfg.layer_ratios if r] + [4]
        need = math.lcm(*ratios)
        if block_size % need:
            raise ValueError(
                f"DeepseekV4DsvForCausalLM: KV-cache block size {block_size} must be a multiple "
                f"of every compression ratio ({sorted(set(ratios))}); pass block_size={need} "
                f"(--block-size {need})"
            )
        self.net = DeepseekV4(self.cfg)
        cache_dtype = vllm_config.model_config.dtype
        self.attn = nn.ModuleList(
            PagedAttention(
                block.attn,
                f"{prefix}.layers.{i}.attn" if prefix else f"layers.{i}.attn",
                block_size=block_size,
                cache_dtype=cache_dtype,
                quant_sim=self.cfg.quant_sim,
            )
            for i, block in enumerate(self.net.layers)
        )

    def embed_input_ids(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self.net.embed(input_ids)

    def forward(
        self,
        input_ids: torch.Tensor,
        positions: torch.Tensor,
        intermediate_tensors=None,
        inputs_embeds: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """New tokens of all scheduled sequences [N] -> their residual streams [N, hc*dim]."""
        x = self.net.embed(input_ids) if inputs_embeds is None else inputs_embeds
        hc = self.cfg.hc_mult
        streams = x.unsqueeze(-2).expand(*x.shape[:-1], hc, x.shape[-1])
        metadata = get_forward_context().attn_metadata
        if not isinstance(metadata, dict) or not metadata:
            # vLLM's memory-profiling run: no caches yet, nothing to attend to.
            return streams.flatten(-2)
        first = metadata[self.attn[0].caches["window"].prefix]
        n = first.num_actual_tokens
        plan = StepPlan.from_metadata(
            first, positions[:n], window=self.cfg.window_size, index_heads=self.cfg.index_n_heads
        )
        ids, streams = input_ids[:n], streams[:n]
        for block, attn in zip(self.net.layers, self.attn, strict=True):
            pre, post, comb = block._mix(streams, "attn")
            y = attn(block.attn_norm(hc_collapse(streams, pre)), metadata, plan)
            streams = hc_expand(y, streams, post, comb)
            pre, post, comb = block._mix(streams, "ffn")
            y = block.ffn(block.ffn_norm(hc_collapse(streams, pre)), ids)
            streams = hc_expand(y, streams, post, comb)
        out = streams.flatten(-2)
        if out.shape[0] < input_ids.shape[0]:  # padded batch: the padding rows are never read
            out = torch.cat((out, out.new_zeros(input_ids.shape[0] - n, out.shape[1])))
        return out

    def compute_logits(self, hidden_states: torch.Tensor) -> torch.Tensor:
        streams = hidden_states.unflatten(-1, (self.cfg.hc_mult, self.cfg.dim))
        return self.net.logits_from_streams(streams)

    def load_weights(self, weights: Iterable[tuple[str, torch.Tensor]]) -> set[str]:
        """Loads the checkpoint directory with `model/`'s loader (not vLLM's tensor stream)."""
        load_state_into(self.net.state_dict(), self.model_dir)
        return {name for name, _ in self.named_parameters()}
