"""The model's caches as vLLM cache layers, and the backend that hands them their metadata.

Each DeepSeek-V4 layer owns up to five paged caches, each registered with vLLM as its own
"attention layer" so that vLLM's block manager allocates, frees, shares and prefix-caches it:

- ``window``: the sliding-window kv vectors, one per token (``SlidingWindowMLASpec``).
- ``state``: the compressor's raw rows (kv and gate score per token, ape added) of the last
  ``coff * ratio`` tokens: the incomplete block plus, for the overlapping ratio-4 compressor, the
  block before it (``SlidingWindowMLASpec`` with that window).
- ``compressed``: one compressed entry per ``ratio`` tokens (``MLAAttentionSpec`` whose
  ``tokens_per_state`` is the ratio).
- ``index_state`` / ``index_keys``: the same two for the lightning indexer's own compressor.

All caches use the same block size (a multiple of every compression ratio, so a block always
holds whole compressed entries) and the same page size (smaller pages are padded), which keeps
vLLM's hybrid allocator on its simplest path: one block table per cache group, every block
hash-aligned, prefix hits at any block boundary.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

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

__all__ = [
    "PagedCache",
    "PagedCacheBackend",
    "PagedCacheMetadata",
    "entry_slots",
    "token_slots",
]


@dataclass
class PagedCacheMetadata:
    """What one forward pass needs to address one cache group (all tensors on the CPU)."""

    block_table: torch.Tensor  # [num_reqs, max_blocks] int32
    block_size: int  # tokens per block
    query_start_loc: torch.Tensor  # [num_reqs + 1] int64
    seq_lens: torch.Tensor  # [num_reqs] tokens in context after this step
    num_actual_tokens: int

    @property
    def token_to_req(self) -> torch.Tensor:
        """[num_tokens] int64: the request of each new token (built on first use: the groups
        all share it and only one is asked)."""
        if self._token_to_req is None:
            lens = self.query_start_loc[1:] - self.query_start_loc[:-1]
            reqs = torch.arange(lens.shape[0])
            self._token_to_req = torch.repeat_interleave(reqs, lens)[: self.num_actual_tokens]
        return self._token_to_req

    _token_to_req: torch.Tensor | None = None


class PagedCacheBuilder(AttentionMetadataBuilder[PagedCacheMetadata]):
    _cudagraph_support: ClassVar[AttentionCGSupport] = AttentionCGSupport.NEVER

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
        return PagedCacheMetadata(
            block_table=m.block_table_tensor[: m.num_reqs],
            block_size=self.kv_cache_spec.block_size,
            query_start_loc=m.query_start_loc_cpu[: m.num_reqs + 1].to(torch.int64),
            seq_lens=m.seq_lens[: m.num_reqs].to(torch.int64),
            num_actual_tokens=m.num_actual_tokens,
        )


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
        page_bytes: int,
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
        self.page_bytes = page_bytes
        self.window = window
        self.ratio = ratio
        self.kv_cache = torch.tensor([])
        context = get_current_vllm_config().compilation_config.static_forward_context
        if prefix in context:
            raise ValueError(f"duplicate vLLM layer name {prefix!r}")
        context[prefix] = self

    def bind_kv_cache(self, kv_cache: torch.Tensor) -> None:
        # vLLM hands a [blocks, heads=1, rows per block, width] view (block stride = the page).
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
            alignment=self.page_bytes,
        )
        if self.kind == "token":
            return SlidingWindowMLASpec(sliding_window=self.window, **common)
        return MLAAttentionSpec(tokens_per_state=self.ratio, **common)

    def rows_per_block(self) -> int:
        return self.block_size // self.ratio if self.kind == "compressed" else self.block_size

    def real_page_bytes(self) -> int:
        return self.rows_per_block() * self.width * torch.finfo(self.dtype).bits // 8

    def write(self, blocks: torch.Tensor, rows: torch.Tensor, values: torch.Tensor) -> None:
        """Stores ``values[i]`` at (block, row) ``(blocks[i], rows[i])``."""
        self.kv_cache[blocks, rows] = values.to(self.kv_cache.dtype)

    def read(self, blocks: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        return self.kv_cache[blocks, rows]


def token_slots(
    positions: torch.Tensor, req: torch.Tensor, block_table: torch.Tensor, block_size: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """(block, row) of token ``positions`` (any shape; negatives clamp to 0) of requests ``req``.

    ``req`` broadcasts against ``positions``.
    """
    pos = positions.clamp(min=0)
    req = req.reshape(req.shape + (1,) * (pos.dim() - req.dim())).expand_as(pos)
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
