"""`ModelConfig`: the shape of a DeepSeek-V4 model, read from either config.json style.

Field names follow DeepSeek's reference `ModelArgs` (`inference/config.json`); Hugging Face's
names (`hidden_size`, `num_hidden_layers`, `rope_scaling`, ...) are mapped onto them on input.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

# Hugging Face config.json name -> reference name.
_HF_NAMES: dict[str, str] = {
    "hidden_size": "dim",
    "moe_intermediate_size": "moe_inter_dim",
    "num_hidden_layers": "n_layers",
    "num_hash_layers": "n_hash_layers",
    "num_attention_heads": "n_heads",
    "num_experts_per_tok": "n_activated_experts",
    "scoring_func": "score_func",
    "routed_scaling_factor": "route_scale",
    "qk_rope_head_dim": "rope_head_dim",
    "sliding_window": "window_size",
    "rms_norm_eps": "norm_eps",
    "num_nextn_predict_layers": "n_mtp_layers",
}
_HF_ROPE_NAMES: dict[str, str] = {
    "factor": "rope_factor",
    "original_max_position_embeddings": "original_seq_len",
    "beta_fast": "beta_fast",
    "beta_slow": "beta_slow",
}


class ModelConfig(BaseModel):
    """Every shape and constant of a DeepSeek-V4 network (reference `ModelArgs` names)."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    vocab_size: int = Field(gt=0, description="Number of token ids.")
    dim: int = Field(gt=0, description="Width of the residual stream (one hc stream).")
    n_layers: int = Field(gt=0, description="Transformer blocks, not counting the MTP block.")
    n_heads: int = Field(gt=0, description="Query heads; all share one KV head (MQA).")
    head_dim: int = Field(gt=0, description="K = V width per head.")
    rope_head_dim: int = Field(gt=0, description="Trailing dims of a head that get RoPE.")
    q_lora_rank: int = Field(gt=0, description="Width of the low-rank query bottleneck.")
    o_groups: int = Field(gt=0, description="Head groups of the grouped low-rank output.")
    o_lora_rank: int = Field(gt=0, description="Width of each group's output projection.")
    window_size: int = Field(gt=0, description="Sliding-window length, the query included.")
    compress_ratios: tuple[int, ...] = Field(
        description="Per layer, then per MTP block: 0 sliding only, 4 CSA, 128 HCA."
    )
    index_n_heads: int = Field(gt=0, description="Lightning-indexer heads.")
    index_head_dim: int = Field(gt=0, description="Lightning-indexer head width.")
    index_topk: int = Field(gt=0, description="Compressed entries each CSA query attends to.")
    n_routed_experts: int = Field(gt=0)
    n_shared_experts: int = Field(ge=0)
    n_activated_experts: int = Field(gt=0, description="Routed experts per token.")
    moe_inter_dim: int = Field(gt=0, description="Hidden width of every expert.")
    n_hash_layers: int = Field(ge=0, description="First layers routed by `tid2eid`.")
    score_func: Literal["sqrtsoftplus", "softmax", "sigmoid"] = "sqrtsoftplus"
    route_scale: float = Field(gt=0, default=1.0)
    swiglu_limit: float = Field(ge=0, default=0.0, description="0 disables the clamp.")
    hc_mult: int = Field(gt=0, default=4, description="Residual streams of mHC.")
    hc_sinkhorn_iters: int = Field(gt=0, default=20)
    hc_eps: float = Field(gt=0, default=1e-6)
    rope_theta: float = Field(gt=0, default=10000.0, description="RoPE base, ratio-0 layers.")
    compress_rope_theta: float = Field(gt=0, default=160000.0, description="RoPE base, ratio>0.")
    rope_factor: float = Field(ge=1, default=16.0, description="YaRN factor (ratio>0 layers).")
    original_seq_len: int = Field(gt=0, default=65536, description="YaRN original length.")
    beta_fast: float = Field(gt=0, default=32.0)
    beta_slow: float = Field(gt=0, default=1.0)
    norm_eps: float = Field(gt=0, default=1e-6)
    n_mtp_layers: int = Field(ge=0, default=1, description="Multi-token-prediction blocks.")
    dtype: Literal["fp8", "bf16", "fp32"] = Field(
        default="bf16", description="Storage of the released non-expert weights."
    )
    expert_dtype: Literal["fp4", "fp8", "bf16", "fp32"] | None = Field(
        default=None, description="Storage of the routed experts' weights (None: as dtype)."
    )
    scale_fmt: Literal["ue8m0"] | None = None
    quant_sim: bool = Field(
        default=True,
        description="Simulate the reference's FP8 kv (non-rope dims) and Hadamard+FP4 indexer.",
    )

    # ---- derived --------------------------------------------------------------------------

    @property
    def layer_ratios(self) -> tuple[int, ...]:
        """Compress ratio of each of the n_layers blocks."""
        return self.compress_ratios[: self.n_layers]

    @property
    def mtp_ratios(self) -> tuple[int, ...]:
        return self.compress_ratios[self.n_layers : self.n_layers + self.n_mtp_layers]

    def cache_bytes_per_token(self, element_bytes: int = 4) -> float:
        """Asymptotic cache bytes per context token: compressed entries and indexer keys.

        The sliding windows and the compressors' incomplete blocks are a constant that
        `cache_constant_bytes` gives; the MTP block keeps no cache in the engine.
        """
        per_token = 0.0
        for r in self.layer_ratios:
            if r:
                per_token += self.head_dim / r
            if r == 4:
                per_token += self.index_head_dim / r
        return per_token * element_bytes

    def cache_bytes(self, num_tokens: int, element_bytes: int = 4) -> int:
        """Exact bytes of a session's cache after num_tokens tokens (what `Session` holds).

        Per layer: the window's last min(T, window) kv vectors; for ratio r > 0 the T // r
        compressed entries, the T % r tail rows (kv and score, coff * width each) and, for the
        overlapping ratio 4 once a block is complete, the previous block's r first-half rows
        (kv and score); for CSA the same again for the indexer at index_head_dim.
        """
        t = num_tokens
        total = 0
        for r in self.layer_ratios:
            total += min(t, self.window_size) * self.head_dim
            widths = [self.head_dim] + ([self.index_head_dim] if r == 4 else [])
            for w in widths if r else []:
                coff = 2 if r == 4 else 1
                total += (t // r) * w + 2 * (t % r) * coff * w
                if r == 4 and t >= r:
                    total += 2 * r * w
        return total * element_bytes

    def cache_constant_bytes(self, element_bytes: int = 4) -> int:
        """Upper bound of the length-independent part of the cache (windows and tails)."""
        total = 0
        for r in self.layer_ratios:
            total += self.window_size * self.head_dim
            coff = 2 if r == 4 else 1
            if r:  # tail (< r rows) + previous block (overlap), kv and score
                total += 2 * (2 * r) * coff * self.head_dim
            if r == 4:
                total += 2 * (2 * r) * 2 * self.index_head_dim
        return total * element_bytes

    # ---- validation -----------------------------------------------------------------------

    @model_validator(mode="after")
    def _check(self) -> ModelConfig:
        def bad(field: str, why: str) -> ValueError:
            return ValueError(f"config field `{field}`: {why}")

        n_ratios = self.n_layers + self.n_mtp_layers
        if len(self.compress_ratios) not in (self.n_layers, n_ratios):
            raise bad(
                "compress_ratios",
                f"has {len(self.compress_ratios)} entries; expected n_layers + n_mtp_layers "
                f"= {n_ratios} (one per block, then one per MTP block)",
            )
        wrong = sorted({r for r in self.compress_ratios if r not in (0, 4) and r < 8})
        if wrong:
            raise bad("compress_ratios", f"values {wrong}: use 0 (sliding), 4 (CSA) or >= 8 (HCA)")
        if any(r and r != 4 and r & (r - 1) for r in self.compress_ratios):
            raise bad("compress_ratios", "HCA ratios must be powers of two")
        if self.rope_head_dim > self.head_dim or self.rope_head_dim % 2:
            raise bad("rope_head_dim", f"{self.rope_head_dim} must be even and <= head_dim")
        if self.rope_head_dim > self.index_head_dim:
            raise bad("index_head_dim", "must be >= rope_head_dim (the indexer rotates its keys)")
        if (self.n_heads * self.head_dim) % self.o_groups:
            raise bad("o_groups", f"{self.o_groups} must divide n_heads * head_dim")
        if self.n_activated_experts > self.n_routed_experts:
            raise bad("n_activated_experts", "exceeds n_routed_experts")
        if self.n_hash_layers > self.n_layers:
            raise bad("n_hash_layers", "exceeds n_layers")
        if self.quant_sim:
            nope = self.head_dim - self.rope_head_dim
            if nope % 64:
                raise bad(
                    "head_dim",
                    f"head_dim - rope_head_dim = {nope} must be a multiple of 64 for the FP8 "
                    "kv simulation (set quant_sim false to run such a config)",
                )
            if self.index_head_dim % 32 or self.index_head_dim & (self.index_head_dim - 1):
                raise bad(
                    "index_head_dim",
                    "must be a power of two and a multiple of 32 for the Hadamard + FP4 "
                    "indexer simulation (set quant_sim false to run such a config)",
                )
        return self

    # ---- construction ---------------------------------------------------------------------

    @classmethod
    def from_dict(cls, raw: dict[str, Any], **overrides: Any) -> ModelConfig:
        """From reference (`dim`, `n_layers`, ...) or Hugging Face (`hidden_size`, ...) names."""
        data = dict(raw)
        for hf, ref in _HF_NAMES.items():
            if hf in data and ref not in data:
                data[ref] = data.pop(hf)
        rope = data.pop("rope_scaling", None) or data.pop("rope_parameters", None)
        if isinstance(rope, dict):
            rope = rope.get("compress", rope)  # HF 5.x nests per rope type
            for hf, ref in _HF_ROPE_NAMES.items():
                if hf in rope and ref not in data:
                    data[ref] = rope[hf]
        quant = data.pop("quantization_config", None)
        if isinstance(quant, dict) and "dtype" not in data:
            if quant.get("quant_method") == "fp8":
                data["dtype"] = "fp8"
                # The released checkpoints ship FP4 routed experts under this same entry.
                data.setdefault("expert_dtype", "fp4")
            data.setdefault("scale_fmt", quant.get("scale_fmt"))
        if "compress_ratios" in data:
            data["compress_ratios"] = tuple(data["compress_ratios"])
        data.update(overrides)
        try:
            return cls.model_validate(data)
        except ValidationError as e:
            problems = "; ".join(
                f"`{'.'.join(str(p) for p in err['loc']) or 'config'}`: {err['msg']}"
                for err in e.errors()
            )
            raise ValueError(f"invalid DeepSeek-V4 config: {problems}") from None

    @classmethod
    def from_json(cls, path: str | Path, **overrides: Any) -> ModelConfig:
        path = Path(path)
        try:
            raw = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise ValueError(f"cannot read model config {path}: {e}") from None
        if not isinstance(raw, dict):
            raise ValueError(f"model config {path} holds {type(raw).__name__}, not an object")
        try:
            return cls.from_dict(raw, **overrides)
        except ValueError as e:
            raise ValueError(f"{path}: {e}") from None

    def to_dict(self) -> dict[str, Any]:
        out = self.model_dump()
        out["compress_ratios"] = list(self.compress_ratios)
        return out

    def to_json(self, path: str | Path | None = None) -> str:
        """The reference-style config.json text; written to `path` when given."""
        text = json.dumps(self.to_dict(), indent=2) + "\n"
        if path is not None:
            Path(path).write_text(text)
        return text

    @classmethod
    def preset(cls, name: str, **overrides: Any) -> ModelConfig:
        """`flash` / `pro`: the released shapes; `tiny`: every feature in a few M parameters."""
        try:
            base = _PRESETS[name]
        except KeyError:
            raise ValueError(f"unknown preset {name!r}; choose one of {sorted(_PRESETS)}") from None
        return cls.from_dict({**base, **overrides})

    def num_parameters(self) -> int:
        """Parameter count of `DeepseekV4(self)` (MTP included), from the shapes alone."""
        import torch  # local: config stays importable without building a module

        from model.transformer import DeepseekV4

        with torch.device("meta"):
            net = DeepseekV4(self)
        return sum(math.prod(t.shape) for t in net.state_dict().values())


def _flash_like(n_layers: int, first: list[int]) -> list[int]:
    rest = [4 if i % 2 == 0 else 128 for i in range(n_layers - len(first))]
    return first + rest + [0]


_RELEASED: dict[str, Any] = dict(
    vocab_size=129280,
    head_dim=512,
    rope_head_dim=64,
    o_lora_rank=1024,
    window_size=128,
    index_n_heads=64,
    index_head_dim=128,
    n_shared_experts=1,
    n_activated_experts=6,
    n_hash_layers=3,
    score_func="sqrtsoftplus",
    swiglu_limit=10.0,
    hc_mult=4,
    hc_sinkhorn_iters=20,
    hc_eps=1e-6,
    rope_theta=10000.0,
    compress_rope_theta=160000.0,
    rope_factor=16.0,
    original_seq_len=65536,
    beta_fast=32.0,
    beta_slow=1.0,
    norm_eps=1e-6,
    n_mtp_layers=1,
    dtype="fp8",
    expert_dtype="fp4",
    scale_fmt="ue8m0",
)

_PRESETS: dict[str, dict[str, Any]] = {
    "flash": dict(
        _RELEASED,
        dim=4096,
        n_layers=43,
        n_heads=64,
        q_lora_rank=1024,
        o_groups=8,
        n_routed_experts=256,
        moe_inter_dim=2048,
        route_scale=1.5,
        index_topk=512,
        compress_ratios=_flash_like(43, [0, 0]),
    ),
    "pro": dict(
        _RELEASED,
        dim=7168,
        n_layers=61,
        n_heads=128,
        q_lora_rank=1536,
        o_groups=16,
        n_routed_experts=384,
        moe_inter_dim=3072,
        route_scale=2.5,
        index_topk=1024,
        compress_ratios=[128, 128] + _flash_like(59, []),
    ),
    # Every feature at toy scale, layer mix as V4-Flash (two sliding-window layers, then CSA
    # and HCA alternating, sliding-window MTP). head_dim 128 is a size vLLM's CPU attention
    # supports; head_dim - rope_head_dim = 64 is one FP8 block; the window and index_topk are
    # small so that short test sequences already slide and select.
    "tiny": dict(
        vocab_size=8192,
        dim=256,
        n_layers=6,
        n_heads=4,
        head_dim=128,
        rope_head_dim=64,
        q_lora_rank=128,
        o_groups=2,
        o_lora_rank=64,
        window_size=32,
        compress_ratios=[0, 0, 4, 128, 4, 128, 0],
        index_n_heads=2,
        index_head_dim=64,
        index_topk=8,
        n_routed_experts=8,
        n_shared_experts=1,
        n_activated_experts=2,
        moe_inter_dim=128,
        n_hash_layers=2,
        score_func="sqrtsoftplus",
        route_scale=1.5,
        swiglu_limit=10.0,
        hc_mult=4,
        hc_sinkhorn_iters=20,
        hc_eps=1e-6,
        rope_theta=10000.0,
        compress_rope_theta=160000.0,
        rope_factor=16.0,
        original_seq_len=65536,
        beta_fast=32.0,
        beta_slow=1.0,
        norm_eps=1e-6,
        n_mtp_layers=1,
        dtype="fp32",
    ),
}
