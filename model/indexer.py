"""The lightning indexer of CSA: scores compressed entries per query and keeps the top-k."""

from __future__ import annotations

import torch
from torch import nn

from model.compressor import Compressor, simulate_index_fp4
from model.config import ModelConfig
from model.norm import fp32, scalar
from model.rope import rotate

# Scores of at most this many (query, entry) pairs are materialised at once.
_SCORE_BLOCK = 1 << 22
# A decode step's top-k over many entries looks at chunks of this many first (`_topk_by_chunks`).
_TOPK_CHUNK = 1024


class Indexer(nn.Module):
    """I[t, s] = sum_h w[t, h] * ReLU(q_I[t, h] . K_I[s]); keys from its own overlap compressor."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.n_heads = cfg.index_n_heads
        self.head_dim = cfg.index_head_dim
        self.topk = cfg.index_topk
        self.wq_b = nn.Linear(cfg.q_lora_rank, cfg.index_n_heads * cfg.index_head_dim, bias=False)
        self.weights_proj = nn.Linear(cfg.dim, cfg.index_n_heads, bias=False)
        self.compressor = Compressor(cfg.dim, cfg.index_head_dim, 4, cfg.norm_eps, rotate=True)

    def queries(
        self,
        x: torch.Tensor,
        qr: torch.Tensor,
        cis: torch.Tensor,
        *,
        quant_sim: bool,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(q_I [n, ih, id], head weights [n, ih]) for the new tokens; cis [n, rd/2] their
        RoPE factors (`Rotary.cis`)."""
        return self.finish_queries(self.wq_b(qr), self.weights_proj(x), cis, quant_sim=quant_sim)

    def finish_queries(
        self, q: torch.Tensor, w: torch.Tensor, cis: torch.Tensor, *, quant_sim: bool
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """`queries` from the projections q = wq_b(qr) [n, ih*id] and w = weights_proj(x)."""
        q = fp32(q).unflatten(-1, (self.n_heads, self.head_dim))
        q = rotate(q, cis.unsqueeze(-2), inplace=not torch.is_grad_enabled())
        if quant_sim:
            q = simulate_index_fp4(q)
        w = fp32(w) * scalar(self.head_dim**-0.5 * self.n_heads**-0.5)
        return q, w


def select_topk(
    q: torch.Tensor,
    w: torch.Tensor,
    keys: torch.Tensor,
    positions: torch.Tensor,
    *,
    ratio: int,
    topk: int,
) -> torch.Tensor:
    """Top-`topk` visible entries per query: [n, k] entry ids, -1 where fewer are visible.

    q [n, ih, id], w [n, ih], keys [E, id], positions [n] (absolute). Entry s is visible to
    query t when s < (t + 1) // ratio. Scores are computed in blocks of queries so that at
    most ~_SCORE_BLOCK scores exist at once, whatever the context length.
    """
    n, ih, _ = q.shape
    n_entries = keys.shape[0]
    k = min(topk, n_entries)
    if k == 0:
        return torch.full((n, 0), -1, dtype=torch.long)
    visible = (positions + 1) // ratio  # [n]
    step = max(1, _SCORE_BLOCK // max(1, n_entries * ih))
    out = []
    for i in range(0, n, step):
        qi, wi, vi = q[i : i + step], w[i : i + step], visible[i : i + step]
        # Queries earlier in the block see fewer entries: score only up to the last one's.
        e = min(n_entries, int(vi.max()))
        scores = (qi.flatten(0, 1) @ keys[:e].t()).relu_().view(qi.shape[0], ih, e)
        scores = torch.bmm(wi.unsqueeze(1), scores).squeeze(1)  # sum_h w_h relu(.) [b, e]
        if e < k:
            scores = torch.cat((scores, scores.new_full((scores.shape[0], k - e), -1.0)), dim=1)
        scores.masked_fill_(torch.arange(scores.shape[1]) >= vi.unsqueeze(-1), float("-inf"))
        vals, idx = scores.topk(k, dim=-1)
        # Rows where the k-th score is tied with an unchosen entry: choose canonically.
        tied = (scores >= vals[:, -1:]).sum(-1) > k
        if bool(tied.any()):
            rows = tied.nonzero().squeeze(1)
            idx[rows] = topk_earliest(scores[rows], k)
        out.append(torch.where(idx < vi.unsqueeze(-1), idx, -1))
    return torch.cat(out)


def select_topk_one(
    q: torch.Tensor, w: torch.Tensor, keys: torch.Tensor, topk: int
) -> torch.Tensor:
    """`select_topk` for one query that sees every key (a decode step): q [ih, id], w [ih],
    keys [E, id] -> entry ids [min(topk, E)], chosen and tie-broken as `select_topk` does.

    The keys are read once, as q @ keys^T (the orientation of `select_topk`'s products; here
    keys @ q^T costs ~4x at 1M tokens, MKL's kernel for a 2-column result being slow), and the
    canonical tie-break looks only at the entries tied with the k-th score.
    """
    n_entries = keys.shape[0]
    k = min(topk, n_entries)
    if k == 0:
        return torch.zeros(0, dtype=torch.long)
    scores = torch.mv(torch.mm(q, keys.t()).relu_().t(), w)  # [E]: sum_h w_h relu(q_h . K_s)
    if k == n_entries:
        return scores.topk(k).indices
    # One more than needed: the k-th score is tied with an unchosen entry iff the next equals it.
    vals, idx = _topk_by_chunks(scores, k + 1)
    kth, next_ = vals[k - 1 :].tolist()
    if kth != next_:
        return idx[:k]
    ids = (scores >= kth).nonzero().squeeze(1)  # the tied and better ones, earliest first
    return ids[topk_earliest(scores[ids], k)]


def _topk_by_chunks(scores: torch.Tensor, m: int) -> tuple[torch.Tensor, torch.Tensor]:
    """scores.topk(m) for a long 1-D scores: the same values, and the same entries wherever
    the values are not tied (callers redo tied rows canonically).

    torch.topk over 256K scores costs ~10 passes over them. The m best entries all lie in the
    m chunks with the highest maxima, or in the tail after the last whole chunk: a chunk
    outside those has m chunks whose maxima are at least its own maximum, m entries that no
    entry of it can beat. So: one pass for the chunk maxima, then top-m of m chunks + tail.
    """
    n_chunks = scores.shape[0] // _TOPK_CHUNK
    if n_chunks <= 4 * m:
        return scores.topk(m)
    whole = n_chunks * _TOPK_CHUNK
    chunks = scores[:whole].view(n_chunks, _TOPK_CHUNK)
    best = chunks.amax(1).topk(m).indices  # [m] chunk ids
    vals, pos = torch.cat((chunks[best].flatten(), scores[whole:])).topk(m)
    # Candidate j * C + i is entry best[j] * C + i; the tail (j = m) starts at entry `whole`.
    region_start = torch.cat((best * _TOPK_CHUNK, best.new_tensor([whole])))
    region = pos // _TOPK_CHUNK
    return vals, region_start[region] + (pos - region * _TOPK_CHUNK)


def topk_earliest(scores: torch.Tensor, k: int) -> torch.Tensor:
    """Indices of the k largest scores per row; equal scores go to the earlier entry.

    torch.topk breaks ties in ways that depend on the row length, and exact ties are common
    here (an entry every head's ReLU zeroes scores exactly 0). Ranking by (score, -index)
    makes the choice independent of how a sequence was split into calls.
    """
    bits = (scores + 0.0).view(torch.int32)  # + 0.0 turns -0.0 into +0.0
    ordered = torch.where(bits < 0, bits ^ 0x7FFFFFFF, bits).long()  # monotonic in the score
    key = ordered * (1 << 32) + ((1 << 32) - 1 - torch.arange(scores.shape[-1]))
    return key.topk(k, dim=-1).indices
