"""One DeepSeek-V4 attention layer on vLLM's paged caches (CPU, PyTorch).

The maths are `model.attention` / `model.compressor` / `model.indexer`'s own functions
(`sparse_attention`, `compress_blocks` + `finish_entries`, `Indexer.queries`, `select_topk`);
this module only moves rows between them and vLLM's caches. Per step, for the flat batch of
new tokens of all scheduled sequences:

1. project q and kv for all tokens at once and scatter kv into the window cache;
2. scatter the compressors' per-token rows (kv and raw gate score) into their state caches;
3. per sequence, rebuild the compressor state (incomplete block, previous block) from the state
   cache, pool the blocks that this step completes, and scatter the entries into the
   compressed caches;
4. per sequence, gather its window and compressed entries from the caches and attend.

Steps 3-4 loop over sequences (each vectorised over that sequence's tokens), never over tokens.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from model.attention import Attention, sparse_attention
from model.cache import CompressorState
from model.compressor import Compressor, compress_blocks, finish_entries, simulate_kv_fp8
from model.indexer import select_topk, topk_earliest
from model.norm import rms_normalize
from model.rope import apply_rope
from model.vllm_plugin.paged_cache import (
    PagedCache,
    PagedCacheMetadata,
    entry_slots,
    token_slots,
)

__all__ = ["BatchLayout", "PagedAttention", "cache_widths", "retention_windows"]


@dataclass
class BatchLayout:
    """Where each scheduled sequence's new tokens sit in the flat batch."""

    starts: list[int]  # first new position of each sequence
    offsets: list[int]  # first row of each sequence in the batch (len = sequences + 1)
    token_to_req: torch.Tensor  # [N] int64

    @classmethod
    def from_metadata(cls, md: PagedCacheMetadata) -> BatchLayout:
        qsl = md.query_start_loc.tolist()
        lens = [b - a for a, b in zip(qsl, qsl[1:], strict=False)]
        starts = [s - n for s, n in zip(md.seq_lens.tolist(), lens, strict=True)]
        return cls(starts=starts, offsets=qsl, token_to_req=md.token_to_req)

    def rows(self, b: int) -> slice:
        return slice(self.offsets[b], self.offsets[b + 1])

    def length(self, b: int) -> int:
        return self.offsets[b + 1] - self.offsets[b]


def cache_widths(head_dim: int, index_head_dim: int, ratio: int) -> dict[str, tuple[str, int]]:
    """The caches of one layer: name -> (kind, row width in elements)."""
    widths = {"window": ("token", head_dim)}
    if ratio:
        coff = 2 if ratio == 4 else 1
        widths["state"] = ("token", 2 * coff * head_dim)  # kv rows then raw score rows
        widths["compressed"] = ("compressed", head_dim)
    if ratio == 4:
        widths["index_state"] = ("token", 2 * 2 * index_head_dim)
        widths["index_keys"] = ("compressed", index_head_dim)
    return widths


def retention_windows(
    window: int, head_dim: int, index_head_dim: int, ratios: tuple[int, ...]
) -> dict[tuple[str, int], int]:
    """Tokens each per-token cache keeps, by (cache name, layer ratio).

    - window: one row more than the attention window, since the model's attention reads the
      `window` rows before a step's first token (the oldest one masked), as its own cache holds;
    - state: the incomplete block and, for overlap, the block before it (coff * ratio);
    - index_state: the same for the indexer's ratio-4 overlap compressor.
    vLLM merges sliding-window caches of equal window into one group whatever their widths,
    so caches of different widths get distinct windows (one token more where two collide).
    """
    wanted: dict[tuple[str, int], tuple[int, int]] = {}
    for r in sorted(set(ratios)):
        widths = cache_widths(head_dim, index_head_dim, r)
        wanted[("window", r)] = (window + 1, widths["window"][1])
        if r:
            wanted[("state", r)] = ((2 if r == 4 else 1) * r, widths["state"][1])
        if r == 4:
            wanted[("index_state", r)] = (8, widths["index_state"][1])
    taken: dict[int, int] = {}  # window -> width
    out = {}
    for key, (win, width) in wanted.items():
        while taken.get(win, width) != width:
            win += 1
        taken[win] = width
        out[key] = win
    return out


class PagedAttention(nn.Module):
    """Attention of one block, reading and writing vLLM's paged caches."""

    def __init__(
        self,
        attn: Attention,
        prefix: str,
        *,
        block_size: int,
        page_bytes: int,
        cache_dtype: torch.dtype,
        quant_sim: bool,
    ) -> None:
        super().__init__()
        # The model's module owns the weights (under their official names); keep it out of
        # this module's parameters.
        self._attn = [attn]
        self.quant_sim = quant_sim
        cfg = attn.cfg
        r = attn.ratio
        windows = retention_windows(
            cfg.window_size, cfg.head_dim, cfg.index_head_dim, cfg.layer_ratios
        )
        self.caches = nn.ModuleDict()
        for name, (kind, width) in cache_widths(cfg.head_dim, cfg.index_head_dim, r).items():
            dtype = cache_dtype if name in ("window", "compressed") else torch.float32
            self.caches[name] = PagedCache(
                f"{prefix}.{name}",
                kind=kind,
                width=width,
                dtype=dtype,
                block_size=block_size,
                page_bytes=page_bytes,
                window=windows.get((name, r), 0),
                ratio=4 if name == "index_keys" else r,
            )

    @property
    def attn(self) -> Attention:
        return self._attn[0]

    def forward(
        self, x: torch.Tensor, positions: torch.Tensor, metadata: dict, layout: BatchLayout
    ) -> torch.Tensor:
        """x [N, dim] (normed) at positions [N] -> [N, dim]."""
        attn = self.attn
        md = {name: metadata[cache.prefix] for name, cache in self.caches.items()}
        req = layout.token_to_req
        cos, sin = attn.rotary(positions)
        qr = attn.q_norm(attn.wq_a(x))
        q = attn.wq_b(qr).float().unflatten(-1, (attn.n_heads, attn.head_dim))
        q = rms_normalize(q, attn.cfg.norm_eps) * attn.head_dim**-0.5
        q = apply_rope(q, cos.unsqueeze(-2), sin.unsqueeze(-2))
        kv = apply_rope(attn.kv_norm(attn.wkv(x)).float(), cos, sin)
        if self.quant_sim:
            kv = simulate_kv_fp8(kv, attn.rotary)
        self._write_rows("window", md["window"], positions, req, kv)

        comp_rows = index_rows = None
        if attn.compressor is not None:
            comp_rows = self._project_rows(attn.compressor, x)
            self._write_rows("state", md["state"], positions, req, torch.cat(comp_rows, -1))
        if attn.indexer is not None:
            index_rows = self._project_rows(attn.indexer.compressor, x)
            self._write_rows(
                "index_state", md["index_state"], positions, req, torch.cat(index_rows, -1)
            )

        iq = iw = None
        if attn.indexer is not None:
            iq, iw = attn.indexer.queries(x, qr, torch.complex(cos, sin), quant_sim=self.quant_sim)

        # Compressed entries first: a query may attend to the block its own token completes.
        for b, start in enumerate(layout.starts):
            rows = layout.rows(b)
            if comp_rows is not None:
                self._compress(
                    "state", "compressed", attn.compressor, md, b, start, comp_rows, rows
                )
            if index_rows is not None:
                comp = attn.indexer.compressor
                self._compress("index_state", "index_keys", comp, md, b, start, index_rows, rows)

        o = q.new_empty(q.shape)
        decode = [b for b in range(len(layout.starts)) if layout.length(b) == 1]
        if decode:
            rows = torch.tensor([layout.offsets[b] for b in decode])
            o[rows] = self._attend_decode(
                q[rows],
                positions[rows],
                torch.tensor(decode),
                md,
                None if iq is None else (iq[rows], iw[rows]),
            )
        for b, start in enumerate(layout.starts):
            rows = layout.rows(b)
            if layout.length(b) > 1:
                o[rows] = self._attend_sequence(q, positions, b, start, rows, md, iq, iw)
        o = apply_rope(o, cos.unsqueeze(-2), sin.unsqueeze(-2), inverse=True)
        return attn.project_out(o.to(x.dtype))

    # ---- attention ------------------------------------------------------------------------

    def _attend_sequence(
        self,
        q: torch.Tensor,
        positions: torch.Tensor,
        b: int,
        start: int,
        rows: slice,
        md: dict[str, PagedCacheMetadata],
        iq: torch.Tensor | None,
        iw: torch.Tensor | None,
    ) -> torch.Tensor:
        """Several new tokens of sequence b (a prefill chunk): the model's own functions."""
        attn = self.attn
        end = rows.stop - rows.start + start
        win_pos = torch.arange(max(0, start - attn.window), end)
        win_kv = self._read_tokens("window", md["window"], b, win_pos)
        comp_kv = comp_idx = None
        if attn.ratio:
            comp_kv = self._read_entries("compressed", md["compressed"], b, end // attn.ratio)
        if iq is not None:
            keys = self._read_entries("index_keys", md["index_keys"], b, end // 4)
            comp_idx = select_topk(
                iq[rows], iw[rows], keys, positions[rows], ratio=4, topk=attn.indexer.topk
            )
        return sparse_attention(
            q[rows],
            positions[rows],
            win_kv,
            win_pos,
            attn.window,
            attn.attn_sink,
            comp_kv=comp_kv,
            comp_idx=comp_idx,
            ratio=attn.ratio,
        )

    def _attend_decode(
        self,
        q: torch.Tensor,
        positions: torch.Tensor,
        reqs: torch.Tensor,
        md: dict[str, PagedCacheMetadata],
        index_queries: tuple[torch.Tensor, torch.Tensor] | None,
    ) -> torch.Tensor:
        """One new token of each of M sequences, all at once: `sparse_attention`'s maths with
        every query's own keys gathered from the caches ([M, keys, hd], masked)."""
        attn = self.attn
        m, n_heads, _ = q.shape
        win_pos = positions.unsqueeze(1) - torch.arange(attn.window - 1, -1, -1)  # [M, W]
        keys = [self._gather("window", md["window"], win_pos, reqs)]
        valid = [win_pos >= 0]
        if attn.ratio:
            visible = (positions + 1) // attn.ratio  # entries each query may see
            entries = torch.arange(int(visible.max())).expand(m, -1)
            if index_queries is not None:
                iq, iw = index_queries
                index_keys = self._gather("index_keys", md["index_keys"], entries, reqs)
                scores = torch.relu(torch.einsum("mhd,med->mhe", iq, index_keys))
                scores = (scores * iw.unsqueeze(-1)).sum(1)  # [M, E]
                hidden = entries >= visible.unsqueeze(1)
                k = min(attn.indexer.topk, entries.shape[1])
                entries = topk_earliest(scores.masked_fill(hidden, float("-inf")), k)
            keys.append(self._gather("compressed", md["compressed"], entries, reqs))
            valid.append(entries < visible.unsqueeze(1))
        kv = torch.cat(keys, dim=1)  # [M, K, hd]; K = V
        s = torch.einsum("mhd,mkd->mhk", q, kv)
        s = s.masked_fill(~torch.cat(valid, dim=1).unsqueeze(1), float("-inf"))
        sink = attn.attn_sink.float().view(1, n_heads, 1).expand(m, n_heads, 1)
        probs = torch.softmax(torch.cat((s, sink), dim=-1), dim=-1)[..., :-1]
        return torch.einsum("mhk,mkd->mhd", probs, kv)

    # ---- cache traffic -------------------------------------------------------------------

    def _gather(
        self, name: str, md: PagedCacheMetadata, index: torch.Tensor, reqs: torch.Tensor
    ) -> torch.Tensor:
        """Rows `index` [M, K] (token positions, or entry ids of a compressed cache) of the
        sequences `reqs` [M] -> [M, K, width]; negative or unwritten ones read harmless rows."""
        cache = self.caches[name]
        if cache.kind == "compressed":
            blocks, offs = entry_slots(index, reqs, md.block_table, md.block_size, cache.ratio)
        else:
            blocks, offs = token_slots(index, reqs, md.block_table, md.block_size)
        return cache.read(blocks, offs).float()

    @staticmethod
    def _project_rows(comp: Compressor, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return comp.wkv(x).float(), comp.wgate(x).float()

    def _write_rows(
        self,
        name: str,
        md: PagedCacheMetadata,
        positions: torch.Tensor,
        req: torch.Tensor,
        rows: torch.Tensor,
    ) -> None:
        blocks, offs = token_slots(positions, req, md.block_table, md.block_size)
        self.caches[name].write(blocks, offs, rows)

    def _read_tokens(
        self, name: str, md: PagedCacheMetadata, b: int, positions: torch.Tensor
    ) -> torch.Tensor:
        req = torch.full_like(positions, b)
        blocks, offs = token_slots(positions, req, md.block_table, md.block_size)
        return self.caches[name].read(blocks, offs).float()

    def _read_entries(self, name: str, md: PagedCacheMetadata, b: int, count: int) -> torch.Tensor:
        cache = self.caches[name]
        entries = torch.arange(count)
        req = torch.full_like(entries, b)
        blocks, offs = entry_slots(entries, req, md.block_table, md.block_size, cache.ratio)
        return cache.read(blocks, offs).float()

    def _compress(
        self,
        state_name: str,
        out_name: str,
        comp: Compressor,
        md: dict[str, PagedCacheMetadata],
        b: int,
        start: int,
        new_rows: tuple[torch.Tensor, torch.Tensor],
        rows: slice,
    ) -> None:
        """Pools the blocks completed by sequence b's new tokens into its compressed cache."""
        r = comp.ratio
        n = rows.stop - rows.start
        first_block = start // r
        if (start + n) // r == first_block:
            return  # no block completes in this step; the rows wait in the state cache
        kv, score = new_rows[0][rows], new_rows[1][rows]
        coff_width = kv.shape[-1]
        state = self._state_before(state_name, md[state_name], b, start, comp, coff_width)
        pooled, _ = compress_blocks(kv, score, comp.ape, state, ratio=r, width=comp.width)
        entry_ids = torch.arange(pooled.shape[0]) + first_block
        entries = finish_entries(
            comp.norm(pooled), entry_ids * r, self.attn.rotary, comp.rotate, self.quant_sim
        )
        out = self.caches[out_name]
        blocks, offs = entry_slots(
            entry_ids,
            torch.full_like(entry_ids, b),
            md[out_name].block_table,
            md[out_name].block_size,
            r,
        )
        out.write(blocks, offs, entries)

    def _state_before(
        self,
        name: str,
        md: PagedCacheMetadata,
        b: int,
        start: int,
        comp: Compressor,
        coff_width: int,
    ) -> CompressorState:
        """The compressor state at `start`, rebuilt from the per-token rows in the state cache."""
        r, width = comp.ratio, comp.width
        block_start = (start // r) * r
        tail = self._read_tokens(name, md, b, torch.arange(block_start, start))
        state = CompressorState(tail[:, :coff_width], tail[:, coff_width:])
        if comp.overlap and block_start > 0:
            prev = self._read_tokens(name, md, b, torch.arange(block_start - r, block_start))
            state.prev_kv = prev[:, :width]
            state.prev_score = (
                prev[:, coff_width : coff_width + width] + comp.ape[:, :width].float()
            )
        return state
