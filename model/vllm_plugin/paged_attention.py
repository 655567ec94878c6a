"""One DeepSeek-V4 attention layer on vLLM's paged caches (CPU, PyTorch).

The maths are `model.attention` / `model.compressor` / `model.indexer`'s own functions and
formulas (`sparse_attention`, the pooling of `compress_blocks` + `finish_entries`,
`Indexer.queries`, `select_topk` / `topk_earliest`); this module moves rows between them and
vLLM's caches. Per step, for the flat batch of new tokens of all scheduled sequences:

1. project q and kv for all tokens at once and scatter kv into the window cache;
2. scatter the compressors' per-token rows (kv and raw gate score) into their state caches;
3. pool every block that this step completes, of all sequences at once: each block's rows
   (and the block before it, for the overlapping compressor) are read back from the state
   cache, so a chunk may start anywhere; scatter the entries into the compressed caches;
4. attend. Sequences with few new tokens (decode steps, short suffixes) form one padded batch
   in which every query gathers its own keys from the caches (its window as a band of the
   sequence's rows, the indexer's top-k entries or every visible HCA entry), all sequences in
   a few batched products; long prefill chunks take `sparse_attention` per sequence.

`StepPlan` holds what all layers share in a step (which sequence is where, RoPE factors);
the index tensors derived from a cache group's block table are made once per step by the
first layer that needs them and kept in that group's metadata (`PagedCacheMetadata.memo`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from model.attention import Attention, sparse_attention
from model.compressor import Compressor, finish_entries, simulate_kv_fp8
from model.indexer import select_topk, topk_earliest
from model.norm import fp32, rms_normalize
from model.rope import Rotary, rotate
from model.vllm_plugin.paged_cache import (
    PagedCache,
    PagedCacheMetadata,
    entry_slots,
    token_slots,
)

__all__ = ["PagedAttention", "ShortBatch", "StepPlan", "cache_widths", "token_retention"]

# Index scores (query, head, entry) of the short batch materialised at once, at most.
_SCORE_BUDGET = 1 << 23
# The short batch pads every sequence to the longest one's new tokens: a sequence joins it
# while the padded total stays within twice the real tokens plus this slack.
_PAD_SLACK = 64


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


def token_retention(window: int, ratios: tuple[int, ...]) -> int:
    """Tokens every per-token cache keeps (one sliding window for all of them, so that vLLM
    keeps them in one cache group): the longest need of

    - the window cache: the `window` rows before a step's first token, one more than the
      attention window (as the model's own cache holds);
    - a compressor's state: its incomplete block and, for the overlapping ratio-4 compressor
      (the indexer's too), the block before it (coff * ratio rows).
    """
    need = window + 1
    for r in ratios:
        if r:
            need = max(need, (2 if r == 4 else 1) * r)
    return need


@dataclass
class ShortBatch:
    """Sequences with few new tokens (decode steps, short suffixes), padded to n tokens each.

    Padding queries repeat their sequence's last token (every gather stays in range); their
    outputs are dropped.
    """

    seqs: torch.Tensor  # [B] index of each sequence in the step
    n: int  # a multiple of `group`
    group: int  # queries whose windows are scored together (min(new tokens, window))
    rows: torch.Tensor  # [B, n] row of each query in the flat batch
    pos: torch.Tensor  # [B, n] its position
    starts: torch.Tensor  # [B] first new position
    ends: torch.Tensor  # [B] tokens in context after the step
    keep: torch.Tensor  # [V] the real queries among the B * n
    keep_rows: torch.Tensor  # [V] their rows in the flat batch
    chunks: list[slice] = field(default_factory=list)  # sequences attended together


@dataclass
class StepPlan:
    """Where each scheduled sequence's new tokens sit in the flat batch, for one step."""

    positions: torch.Tensor  # [N] int64
    token_to_req: torch.Tensor  # [N] int64
    starts: list[int]  # first new position of each sequence
    offsets: list[int]  # first row of each sequence (len = sequences + 1)
    short: ShortBatch | None
    long: list[int]  # sequences attended one by one (long prefill chunks)
    memo: dict[Any, Any] = field(default_factory=dict)

    @classmethod
    def from_metadata(
        cls, md: PagedCacheMetadata, positions: torch.Tensor, *, window: int, index_heads: int
    ) -> StepPlan:
        qsl = md.query_start_loc
        offsets = qsl.tolist()
        lens = [b - a for a, b in zip(offsets, offsets[1:], strict=False)]
        ends = md.seq_lens.tolist()
        starts = [e - n for e, n in zip(ends, lens, strict=True)]
        n_tokens = md.num_actual_tokens
        token_to_req = torch.repeat_interleave(torch.arange(len(lens)), qsl.diff())[:n_tokens]
        # The short batch: the most sequences (fewest tokens first) whose padding stays small.
        order = sorted(range(len(lens)), key=lens.__getitem__)
        count = total = 0
        for i, b in enumerate(order):
            if (i + 1) * lens[b] > 2 * (total + lens[b]) + _PAD_SLACK:
                break
            count, total = i + 1, total + lens[b]
        chosen = sorted(order[:count])
        long = sorted(order[count:])
        short = None
        if chosen:
            seqs = torch.tensor(chosen)
            longest = max(lens[b] for b in chosen)
            group = min(longest, window)
            n = -(-longest // group) * group
            t_lens = torch.tensor([lens[b] for b in chosen])
            t_starts = torch.tensor([starts[b] for b in chosen])
            t_ends = t_starts + t_lens
            steps = torch.minimum(torch.arange(n), (t_lens - 1).unsqueeze(1))  # [B, n]
            rows = qsl[seqs].unsqueeze(1) + steps
            pos = t_starts.unsqueeze(1) + steps
            keep = (torch.arange(n) < t_lens.unsqueeze(1)).flatten().nonzero().squeeze(1)
            short = ShortBatch(
                seqs=seqs,
                n=n,
                group=group,
                rows=rows,
                pos=pos,
                starts=t_starts,
                ends=t_ends,
                keep=keep,
                keep_rows=rows.flatten()[keep],
            )
            # Index scores [c, n, heads, entries] of c sequences at once stay within budget.
            per_seq = n * max(1, index_heads) * (max(ends) // 4 + 1)
            c = max(1, _SCORE_BUDGET // per_seq)
            short.chunks = [slice(i, i + c) for i in range(0, len(chosen), c)]
        return cls(
            positions=positions,
            token_to_req=token_to_req,
            starts=starts,
            offsets=offsets,
            short=short,
            long=long,
        )

    def cis(self, rotary: Rotary) -> torch.Tensor:
        """[N, rd/2] RoPE factors of the step's positions (one per rotary setting)."""
        key = ("cis", rotary.compressed)
        if key not in self.memo:
            self.memo[key] = rotary.cis(self.positions)
        return self.memo[key]

    def blocks_completed(self, ratio: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(sequence [P], block index [P]) of every compression block of `ratio` tokens that
        this step's tokens complete."""
        key = ("blocks", ratio)
        if key not in self.memo:
            starts = torch.tensor(self.starts)
            ends = starts + torch.tensor(self.offsets).diff()
            first = starts // ratio
            count = ends // ratio - first
            seq = torch.repeat_interleave(torch.arange(len(self.starts)), count)
            before = torch.cumsum(count, 0) - count  # pairs of earlier sequences
            block = torch.arange(seq.shape[0]) - before[seq] + first[seq]
            self.memo[key] = (seq, block)
        return self.memo[key]


def _topk(scores: torch.Tensor, k: int) -> torch.Tensor:
    """`topk_earliest`'s choice (ties to the earlier entry), as `select_topk` makes it: a plain
    top-k, redone canonically only for the rows where the k-th score ties an unchosen one."""
    vals, idx = scores.topk(k, dim=-1)
    tied = (scores >= vals[..., -1:]).sum(-1) > k
    if bool(tied.any()):
        idx[tied] = topk_earliest(scores[tied], k)
    return idx


def _memo(md: PagedCacheMetadata, key: Any, make) -> Any:
    value = md.memo.get(key)
    if value is None:
        value = md.memo[key] = make()
    return value


class PagedAttention(nn.Module):
    """Attention of one block, reading and writing vLLM's paged caches."""

    def __init__(
        self,
        attn: Attention,
        prefix: str,
        *,
        block_size: int,
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
        retention = token_retention(cfg.window_size, tuple(cfg.layer_ratios))
        self.caches = nn.ModuleDict()
        for name, (kind, width) in cache_widths(cfg.head_dim, cfg.index_head_dim, r).items():
            dtype = cache_dtype if name in ("window", "compressed") else torch.float32
            self.caches[name] = PagedCache(
                f"{prefix}.{name}",
                kind=kind,
                width=width,
                dtype=dtype,
                block_size=block_size,
                window=retention if kind == "token" else 0,
                ratio=4 if name == "index_keys" else r,
            )

    @property
    def attn(self) -> Attention:
        return self._attn[0]

    def forward(self, x: torch.Tensor, metadata: dict, plan: StepPlan) -> torch.Tensor:
        """x [N, dim] (normed) of the step's tokens -> [N, dim]."""
        attn = self.attn
        md = {name: metadata[cache.prefix] for name, cache in self.caches.items()}
        cis = plan.cis(attn.rotary)
        qr = attn.q_norm(attn.wq_a(x))
        q = fp32(attn.wq_b(qr)).unflatten(-1, (attn.n_heads, attn.head_dim))
        q = rms_normalize(q, attn.cfg.norm_eps) * attn.head_dim**-0.5
        fresh = not torch.is_grad_enabled()  # new tensors may be rotated in place
        q = rotate(q, cis.unsqueeze(-2), inplace=fresh)
        kv = rotate(fp32(attn.kv_norm(attn.wkv(x))), cis, inplace=fresh)
        if self.quant_sim:
            kv = simulate_kv_fp8(kv, attn.rotary, inplace=fresh)
        self._write_tokens("window", md["window"], plan, kv)

        iq = iw = None
        if attn.compressor is not None:
            rows = torch.cat(self._project_rows(attn.compressor, x), -1)
            self._write_tokens("state", md["state"], plan, rows)
        if attn.indexer is not None:
            rows = torch.cat(self._project_rows(attn.indexer.compressor, x), -1)
            self._write_tokens("index_state", md["index_state"], plan, rows)
            iq, iw = attn.indexer.queries(x, qr, cis, quant_sim=self.quant_sim)

        # Compressed entries first: a query may attend to the block its own token completes.
        if attn.compressor is not None:
            self._compress(attn.compressor, "state", "compressed", md, plan)
        if attn.indexer is not None:
            self._compress(attn.indexer.compressor, "index_state", "index_keys", md, plan)

        o = q.new_empty(q.shape)
        if plan.short is not None:
            o[plan.short.keep_rows] = self._attend_short(q, iq, iw, md, plan.short)
        for b in plan.long:
            rows = slice(plan.offsets[b], plan.offsets[b + 1])
            o[rows] = self._attend_sequence(q, plan.positions, b, plan.starts[b], rows, md, iq, iw)
        o = rotate(o, cis.conj().unsqueeze(-2), inplace=fresh)
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
        """Many new tokens of sequence b (a prefill chunk): the model's own functions, the
        window scored as a band as the engine's prefill does."""
        attn = self.attn
        end = rows.stop - rows.start + start
        first = max(0, start - attn.window)
        win_pos = torch.arange(first, end)
        win_kv = self._read_rows("window", md["window"], b, win_pos)
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
            band_start=first,
        )

    def _attend_short(
        self,
        q: torch.Tensor,
        iq: torch.Tensor | None,
        iw: torch.Tensor | None,
        md: dict[str, PagedCacheMetadata],
        sb: ShortBatch,
    ) -> torch.Tensor:
        """The short batch's queries, each over its own keys gathered from the caches:
        `sparse_attention`'s maths on [sequences, n, ...] tensors. Returns [V, H, hd]."""
        attn = self.attn
        w = attn.window
        win = self._short_window(md["window"], sb)
        hca = csa = None
        if attn.indexer is not None:
            csa = self._short_entries(md["index_keys"], sb, 4)
        elif attn.ratio:
            hca = self._short_entries(md["compressed"], sb, attn.ratio)
        sink = fp32(attn.attn_sink).view(1, 1, -1, 1)
        outs = []
        for sl in sb.chunks:
            qb = q[sb.rows[sl]]  # [c, n, H, hd]
            c, n, n_heads, hd = qb.shape
            # The window as groups of g consecutive queries, each group against the g + w - 1
            # rows its queries see, in one product; each query's band of w keys is then a
            # view (query j of a group: keys j .. j + w - 1). Much faster than c * n tiny
            # products, and at most ~2x the needed scores.
            rows = self.caches["window"].read(win["slots"][sl])  # [c, n + w - 1, hd]
            g, span = sb.group, sb.group + w - 1
            groups = n // g
            keys = rows.unfold(1, span, g)  # [c, groups, hd, span]
            s_win = torch.matmul(qb.view(c, groups, g * n_heads, hd), keys)
            band = (
                (c, groups, g, n_heads, w),
                (groups * g * n_heads * span, g * n_heads * span, n_heads * span + 1, span, 1),
            )
            s_win = s_win.as_strided(*band).reshape(c, n, n_heads, w)
            parts = [s_win.masked_fill_(win["hidden"][sl], float("-inf"))]
            comp = per_query = None
            if csa is not None and csa["count"]:
                index_keys = self.caches["index_keys"].read(csa["slots"][sl])  # [c, E, id]
                iqb, iwb = iq[sb.rows[sl]], iw[sb.rows[sl]]  # [c, n, ih, id], [c, n, ih]
                ih = iqb.shape[2]
                scores = torch.bmm(iqb.flatten(1, 2), index_keys.transpose(1, 2)).relu_()
                scores = torch.matmul(iwb.unsqueeze(-2), scores.view(c, n, ih, -1)).squeeze(-2)
                scores.masked_fill_(csa["hidden"][sl], float("-inf"))  # [c, n, E]
                chosen = _topk(scores, min(attn.indexer.topk, csa["count"]))
                per_query = True
                comp = self.caches["compressed"].read(
                    entry_slots(
                        chosen,
                        sb.seqs[sl],
                        md["compressed"].block_table,
                        md["compressed"].block_size,
                        attn.ratio,
                    )
                )  # [c, n, k, hd]
                hidden = (chosen >= csa["visible"][sl].unsqueeze(-1)).unsqueeze(-2)
                s = torch.matmul(qb, comp.transpose(-1, -2))  # [c, n, H, k]
                parts.append(s.masked_fill_(hidden, float("-inf")))
            elif hca is not None and hca["count"]:
                comp = self.caches["compressed"].read(hca["slots"][sl])  # [c, E, hd]
                s = torch.bmm(qb.flatten(1, 2), comp.transpose(1, 2)).view(c, n, n_heads, -1)
                parts.append(s.masked_fill_(hca["hidden"][sl], float("-inf")))
            parts.append(sink.expand(c, n, n_heads, 1))
            probs = torch.softmax(torch.cat(parts, dim=-1), dim=-1)
            spread = probs.new_zeros(c, groups, g * n_heads, span)  # band weights in place
            spread.as_strided(*band).copy_(probs[..., :w].unflatten(1, (groups, g)))
            out = torch.matmul(spread, keys.transpose(-1, -2)).view(c, n, n_heads, hd)
            if per_query:  # CSA: each query's own entries
                out += torch.matmul(probs[..., w:-1], comp)
            elif comp is not None:  # HCA: the sequence's entries
                pc = probs[..., w:-1].reshape(c, n * n_heads, -1)
                out += torch.bmm(pc, comp).view(c, n, n_heads, hd)
            outs.append(out)
        out = outs[0] if len(outs) == 1 else torch.cat(outs)
        return out.flatten(0, 1)[sb.keep]

    def _short_window(self, md: PagedCacheMetadata, sb: ShortBatch) -> dict[str, torch.Tensor]:
        """Each short sequence's rows from `window - 1` before its first new token to its last
        (clamped into the sequence: never-read rows stay in range), and which keys of each
        query's band lie before position 0."""
        w = self.attn.window

        def make() -> dict[str, torch.Tensor]:
            pos = (sb.starts - w + 1).unsqueeze(1) + torch.arange(w - 1 + sb.n)
            pos = torch.minimum(pos, (sb.ends - 1).unsqueeze(1))
            key_pos = sb.pos.unsqueeze(-1) - (w - 1) + torch.arange(w)  # [B, n, w]
            return {
                "slots": token_slots(pos, sb.seqs, md.block_table, md.block_size),
                "hidden": (key_pos < 0).unsqueeze(-2),  # [B, n, 1, w]
            }

        return _memo(md, ("short_window", w), make)

    def _short_entries(self, md: PagedCacheMetadata, sb: ShortBatch, ratio: int) -> dict:
        """Slots of the compressed entries the short sequences may see (0 .. the most any of
        them sees), and which ones each query may not."""

        def make() -> dict[str, Any]:
            count = int(sb.ends.max()) // ratio
            entries = torch.arange(count)
            visible = (sb.pos + 1) // ratio  # [B, n]
            hidden = entries >= visible.unsqueeze(-1)  # [B, n, E]
            return {
                "count": count,
                "visible": visible,
                "slots": entry_slots(
                    entries.expand(len(sb.seqs), -1), sb.seqs, md.block_table, md.block_size, ratio
                ),
                # CSA masks scores [B, n, E]; HCA masks [B, n, H, E]
                "hidden": hidden if ratio == 4 else hidden.unsqueeze(-2),
            }

        return _memo(md, ("short_entries", ratio), make)

    # ---- compression ----------------------------------------------------------------------

    def _compress(
        self,
        comp: Compressor,
        state_name: str,
        out_name: str,
        md: dict[str, PagedCacheMetadata],
        plan: StepPlan,
    ) -> None:
        """Pools every block this step completes (all sequences at once) into its entry.

        `compress_blocks`' maths: each entry pools its block's rows (for the overlapping
        compressor, the second halves of its block and the first halves of the block before,
        none before block 0) with softmax weights of score + ape; the rows come back from the
        state cache, where this step's rows were just written."""
        r = comp.ratio
        seq, block = plan.blocks_completed(r)
        if seq.shape[0] == 0:
            return
        state_md = md[state_name]

        def make_rows() -> tuple:
            pos = (block * r).unsqueeze(1) + torch.arange(r)  # [P, r]
            current = token_slots(pos, seq, state_md.block_table, state_md.block_size)
            previous = token_slots(pos - r, seq, state_md.block_table, state_md.block_size)
            return current, previous, (block == 0).view(-1, 1, 1)

        current, previous, first = _memo(state_md, ("compress_rows", r), make_rows)
        state = self.caches[state_name]
        rows = state.read(current)  # [P, r, 2 * coff * width]
        cw = rows.shape[-1] // 2
        ape = comp.ape.float()
        kv, score = rows[..., :cw], rows[..., cw:] + ape
        if comp.overlap:
            width = comp.width
            prev = state.read(previous)
            prev_kv = prev[..., :width].masked_fill(first, 0.0)
            prev_sc = (prev[..., cw : cw + width] + ape[:, :width]).masked_fill(
                first, float("-inf")
            )
            kv = torch.cat((prev_kv, kv[..., width:]), dim=1)  # [P, 2r, width]
            score = torch.cat((prev_sc, score[..., width:]), dim=1)
        pooled = (kv * torch.softmax(score, dim=1)).sum(1)
        entries = finish_entries(
            comp.norm(pooled), block * r, self.attn.rotary, comp.rotate, self.quant_sim
        )
        out_md = md[out_name]
        slots = _memo(
            out_md,
            ("entry_slots", r),
            lambda: entry_slots(block, seq, out_md.block_table, out_md.block_size, r),
        )
        self.caches[out_name].write(slots, entries)

    # ---- cache traffic -------------------------------------------------------------------

    @staticmethod
    def _project_rows(comp: Compressor, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return fp32(comp.wkv(x)), fp32(comp.wgate(x))

    def _write_tokens(
        self, name: str, md: PagedCacheMetadata, plan: StepPlan, rows: torch.Tensor
    ) -> None:
        """Stores one row per new token of the step."""
        slots = _memo(
            md,
            "token_slots",
            lambda: token_slots(plan.positions, plan.token_to_req, md.block_table, md.block_size),
        )
        self.caches[name].write(slots, rows)

    def _read_rows(
        self, name: str, md: PagedCacheMetadata, b: int, positions: torch.Tensor
    ) -> torch.Tensor:
        return self.caches[name].read(
            token_slots(positions, torch.tensor(b), md.block_table, md.block_size)
        )

    def _read_entries(self, name: str, md: PagedCacheMetadata, b: int, count: int) -> torch.Tensor:
        cache = self.caches[name]
        return cache.read(
            entry_slots(
                torch.arange(count), torch.tensor(b), md.block_table, md.block_size, cache.ratio
            )
        )
