"""Hugging Face's `DeepseekV4ForCausalLM` with the same weights: an independent reference.

transformers is a test/bench-only dependency, imported only when a reference is built. The
weights reach it through an official-format checkpoint and transformers' own renaming
(`conversion_mapping.py`), so the name mapping under test is theirs, not ours.
"""

from __future__ import annotations

import json
import math
import tempfile
from pathlib import Path
from typing import Any

import torch

from model.checkpoint import save_checkpoint
from model.config import ModelConfig
from model.transformer import DeepseekV4


def hf_config_dict(cfg: ModelConfig) -> dict[str, Any]:
    """The Hugging Face `config.json` (transformers 5.x names) of the same model."""
    hca = sorted({r for r in cfg.layer_ratios if r not in (0, 4)})
    if len(hca) > 1:
        raise ValueError(f"Hugging Face's config has one HCA ratio; this config has {hca}")
    return {
        "architectures": ["DeepseekV4ForCausalLM"],
        "model_type": "deepseek_v4",
        "vocab_size": cfg.vocab_size,
        "hidden_size": cfg.dim,
        "moe_intermediate_size": cfg.moe_inter_dim,
        "num_hidden_layers": cfg.n_layers,
        "num_attention_heads": cfg.n_heads,
        "num_key_value_heads": 1,
        "head_dim": cfg.head_dim,
        "qk_rope_head_dim": cfg.rope_head_dim,
        "q_lora_rank": cfg.q_lora_rank,
        "o_groups": cfg.o_groups,
        "o_lora_rank": cfg.o_lora_rank,
        "n_routed_experts": cfg.n_routed_experts,
        "n_shared_experts": cfg.n_shared_experts,
        "num_experts_per_tok": cfg.n_activated_experts,
        "num_hash_layers": cfg.n_hash_layers,
        "scoring_func": cfg.score_func,
        "routed_scaling_factor": cfg.route_scale,
        "norm_topk_prob": True,
        "swiglu_limit": cfg.swiglu_limit,
        "sliding_window": cfg.window_size,
        "compress_ratios": list(cfg.compress_ratios),  # layers, then the MTP block
        "compress_rates": {
            "compressed_sparse_attention": 4,
            "heavily_compressed_attention": hca[0] if hca else 128,
        },
        "index_n_heads": cfg.index_n_heads,
        "index_head_dim": cfg.index_head_dim,
        "index_topk": cfg.index_topk,
        "hc_mult": cfg.hc_mult,
        "hc_sinkhorn_iters": cfg.hc_sinkhorn_iters,
        "hc_eps": cfg.hc_eps,
        "rope_theta": cfg.rope_theta,
        "compress_rope_theta": cfg.compress_rope_theta,
        "rope_scaling": {
            "type": "yarn",
            "factor": cfg.rope_factor,
            "original_max_position_embeddings": cfg.original_seq_len,
            "beta_fast": cfg.beta_fast,
            "beta_slow": cfg.beta_slow,
        },
        "rms_norm_eps": cfg.norm_eps,
        "num_nextn_predict_layers": cfg.n_mtp_layers,
        "tie_word_embeddings": False,
        "bos_token_id": 0,
        "eos_token_id": 1,
        "torch_dtype": "float32",
    }


def load_hf_reference(model: DeepseekV4, *, clamp_shared_expert: bool = False) -> torch.nn.Module:
    """Hugging Face's DeepseekV4ForCausalLM holding `model`'s weights, in fp32, eval mode.

    Hugging Face also clamps the shared expert's SwiGLU, which the official code does not;
    `clamp_shared_expert=False` (the default) removes that difference.
    """
    from transformers import DeepseekV4ForCausalLM  # test/bench-only dependency

    with tempfile.TemporaryDirectory(prefix="dsv4-hf-") as tmp:
        save_checkpoint(model, tmp, dtype=torch.float32)
        (Path(tmp) / "config.json").write_text(json.dumps(hf_config_dict(model.cfg), indent=2))
        hf, info = DeepseekV4ForCausalLM.from_pretrained(
            tmp, dtype=torch.float32, output_loading_info=True
        )
    if info["missing_keys"] or info["mismatched_keys"] or info["unexpected_keys"]:
        raise RuntimeError(f"transformers did not take every weight: {info}")
    if not clamp_shared_expert:
        for layer in hf.model.layers:
            layer.mlp.shared_experts.limit = math.inf
    return hf.eval()
