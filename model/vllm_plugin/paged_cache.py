"""The model's caches as vLLM cache layers, and the backend that hands them their metadata.

Each DeepSeek-V4 layer owns up to five paged caches, each registered with vLLM as its own
"attention layer" so that vLLM's block manager allocates, frees, shares and prefix-caches it:

- ``window``: the sliding-window kv vectors, one per token.
- ``state``: the compressor's raw rows (kv and raw gate score per token) of the incomplete
  block and, for the overlapping ratio-4 compressor, the block before it.
- ``compressed``: one compressed entry per ``ratio`` tokens (``MLAAttentionSpec`` whose
  ``tokens_per_state`` is the ratio).
- ``index_state`` / ``index_keys``: the same two for the lightning indexer's own compressor.

Two kinds of spec, so that vLLM keeps two cache groups (two block tables, one set of metadata
each) whatever the number of layers:

- every per-token cache (window, state, index_state) is a ``SlidingWindowMLASpec`` with ONE
  retention window, the longest any of them needs (see `token_retention`); with 128-token
  blocks, keeping 128 tokens instead of 33 costs at most one block per sequence;
- every compressed cache is an ``MLAAttentionSpec`` (full attention type, whatever its ratio).

The pages differ in size (a ratio-128 page holds one entry), so the backend asks for a
block-outermost layout (``BLHNC``): vLLM then packs each group's pages side by side in a block
instead of padding every page to the largest one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import nn
from vllm.config import VllmConfig, get_current_vllm_config
from vllm.model_executor.layers.attention_layer_base import AttentionLayerBase
from vllm.v1.attention.backend import (
    AttentionBackend,
    AttentionCGSupport,
    AttentionMetadataBuilder,
    CommonAttentionMetadata,
    MultipleOf,
)
from vllm.v1.kv_cache_interface import KVCacheSpec, MLAAttentionSpec, SlidingWindowMLASpec
from vllm.v1.kv_cache_layout import KVCacheLayout

__all__ = [
    "PagedCache",
    "PagedCacheBackend",
    "PagedCacheMetadata",
    "entry_slots",
    "token_slots",
]


@dataclass(eq=False)
class PagedCacheMetadata:
    """What one forward pass needs to address one cache group (all tensors on the CPU).

    One object per cache group and step, shared by all the group's layers; `memo` holds the
    index tensors the layers derive from it (slots, masks), computed by the first layer.
    """

    block_table: torch.Tensor  # [num_reqs, max_blocks] int32
    block_size: int  # tokens per block
    query_start_loc: torch.Tensor  # [num_reqs + 1] int64
    seq_lens: torch.Tensor  # [num_reqs] tokens in context after this step
    num_actual_tokens: int
    memo: dict[str, Any] = field(default_factory=dict)


class PagedCacheBuilder(AttentionMetadataBuilder[PagedCacheMetadata]):
    _cudagraph_support: ClassVar[AttentionCGSupport] = AttentionCGSupport.NEVER
    # vLLM builds metadata once per (group, spec); the caches of one group share a block
    # table, so every builder of the group returns the first one's object (and its memo).
    _last: ClassVar[tuple[CommonAttentionMetadata, PagedCacheMetadata] | None] = None

    def __init__(
        self,
        kv_cache_spec: KVCacheSpec,
        layer_names: list[str],
        vllm_config: VllmConfig,
        device: torch.device,
    ):
        super().__init__(kv_cache_spec, layer_names, vllm_config, device)

    def build(
        self,
        common_prefix_len: int,
        common_attn_metadata: CommonAttentionMetadata,
        fast_build: bool = False,
    ) -> PagedCacheMetadata:
        m = common_attn_metadata
        last = PagedCacheBuilder._last
        if last is not None and last[0] is m:
            return last[1]
        md = PagedCacheMetadata(
            block_table=m.block_table_tensor[: m.num_reqs],
            block_size=self.kv_cache_spec.block_size,
            query_start_loc=m.query_start_loc_cpu[: m.num_reqs + 1].to(torch.int64),
            seq_lens=m.seq_lens[: m.num_reqs].to(torch.int64),
            num_actual_tokens=m.num_actual_tokens,
        )
        PagedCacheBuilder._last = (m, md)
        return md


class PagedCacheBackend(AttentionBackend):
    """The backend of every cache layer: metadata only; the maths run in the model's layers."""

    supported_dtypes: ClassVar[list[torch.dtype]] = [torch.float32, torch.bfloat16, torch.float16]
    supported_kv_cache_dtypes: ClassVar[list] = ["auto", "float32", "bfloat16", "float16"]

    @staticmethod
    def get_name() -> str:
        return "DSV4_TORCH_PAGED"

    @staticmethod
    def get_impl_cls():
        raise NotImplementedError("the DeepSeek-V4 caches compute in the model's own layers")

    @staticmethod
    def get_builder_cls() -> type[PagedCacheBuilder]:
        return PagedCacheBuilder

    @staticmethod
    def get_supported_kernel_block_sizes(kv_cache_spec=None) -> list[int | MultipleOf]:
        return [MultipleOf(1)]

    @classmethod
    def get_supported_head_sizes(cls) -> list[int]:
        return []

    @classmethod
    def supports_head_size(cls, head_size: int) -> bool:
        return True

    @classmethod
    def supported_kv_cache_layouts(cls) -> tuple[KVCacheLayout, ...]:
        # Pages of different sizes packed side by side in each block (see the module doc).
        return (KVCacheLayout.BLHNC,)


class PagedCache(nn.Module, AttentionLayerBase):
    """One paged cache: registers itself with vLLM and holds the bound tensor.

    ``kind`` is ``"token"`` (one row per token, kept for the last ``window`` tokens) or
    ``"compressed"`` (one row per ``ratio`` tokens, kept for the whole context).
    """

    def __init__(
        self,
        prefix: str,
        *,
        kind: str,
        width: int,
        dtype: torch.dtype,
        block_size: int,
        window: int = 0,
        ratio: int = 1,
    ):
        super().__init__()
        if kind not in ("token", "compressed"):
            raise ValueError(f"PagedCache {prefix}: kind must be token or compressed, not {kind!r}")
        self.prefix = prefix
        self.kind = kind
        self.width = width
        self.dtype = dtype
        self.block_size = block_size
        self.window = window
        self.ratio = ratio
        self.kv_cache = torch.tensor([])
        context = get_current_vllm_config().compilation_config.static_forward_context
        if prefix in context:
            raise ValueError(f"duplicate vLLM layer name {prefix!r}")
        context[prefix] = self

    def bind_kv_cache(self, kv_cache: torch.Tensor) -> None:
        # vLLM hands a [blocks, heads=1, rows per block, width] view (block stride = the
        # group's block, in which this page is one slice).
        self.kv_cache = kv_cache.squeeze(1)

    def get_attn_backend(self) -> type[AttentionBackend]:
        return PagedCacheBackend

    def get_kv_cache_spec(self, vllm_config: VllmConfig) -> KVCacheSpec:
        common = dict(
            block_size=self.block_size,
            num_kv_heads=1,
            max_tp_shards=1,
            head_size=self.width,
            dtype=self.dtype,
        )
        if self.kind == "token":
            return SlidingWindowMLASpec(sliding_window=self.window, **common)
        return MLAAttentionSpec(tokens_per_state=self.ratio, **common)

    def rows_per_block(self) -> int:
        return self.block_size // self.ratio if self.kind == "compressed" else self.block_size

    def write(self, slots: tuple[torch.Tensor, torch.Tensor], values: torch.Tensor) -> None:
        """Stores ``values[i]`` at (block, row) ``slots[0][i], slots[1][i]``."""
        self.kv_cache[slots] = values.to(self.kv_cache.dtype)

    def read(self, slots: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        """Rows at (block, row) ``slots`` (any shape), as fp32."""
        return self.kv_cache[slots].float()


def token_slots(
    positions: torch.Tensor, req: torch.Tensor, block_table: torch.Tensor, block_size: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """(block, row) of token ``positions`` (any shape; negatives clamp to 0) of requests ``req``.

    ``req`` broadcasts against ``positions``.
    """
    pos = positions.clamp(min=0)
    req = req.reshape(req.shape + (1,) * (pos.dim() - req.dim()))
    blocks = block_table[req, pos // block_size].to(torch.int64)
    return blocks, pos % block_size


def entry_slots(
    entries: torch.Tensor,
    req: torch.Tensor,
    block_table: torch.Tensor,
    block_size: int,
    ratio: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(block, row) of compressed entries ``entries`` (entry e covers tokens e*ratio ...)."""
    return token_slots(entries, req, block_table, block_size // ratio)
