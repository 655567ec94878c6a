"""Attention of V4: q-LoRA, one shared KV head, sink, grouped low-rank output, CSA / HCA."""

from __future__ import annotations

import torch
from torch import nn

from model.cache import LayerCache
from model.compressor import Compressor, simulate_kv_fp8
from model.config import ModelConfig
from model.indexer import Indexer, select_topk
from model.norm import RMSNorm, rms_normalize
from model.rope import Rotary, apply_rope


def sparse_attention(
    q: torch.Tensor,
    q_pos: torch.Tensor,
    win_kv: torch.Tensor,
    win_pos: torch.Tensor,
    window: int,
    sink: torch.Tensor,
    *,
    comp_kv: torch.Tensor | None = None,
    comp_idx: torch.Tensor | None = None,
    ratio: int = 0,
    band_start: int | None = None,
) -> torch.Tensor:
    """Softmax attention of queries over a window of raw kv and compressed entries, with sink.

    q [n, H, hd] (already scaled by hd^-0.5) at absolute positions q_pos [n];
    win_kv [m, hd] raw kv at positions win_pos [m] (visible when q_pos - window < pos <= q_pos);
    comp_kv [E, hd] compressed entries: with comp_idx None all visible ones are attended
    (entry s visible when s < (q_pos + 1) // ratio, HCA), else comp_idx [n, k] lists each
    query's entries (-1 = none, CSA). The sink adds exp(sink[h]) to the denominator.
    K = V, so the output still carries RoPE on its rope dims. Returns [n, H, hd].
    band_start: when the queries are consecutive positions and win_kv holds consecutive
    positions from band_start on (win_pos = band_start + arange(m)), each query scores only its
    own `window` keys instead of all m.
    """
    n, n_heads, hd = q.shape
    qf = q.reshape(n * n_heads, hd)
    band = None
    if band_start is not None and n > 1 and win_kv.shape[0] > 2 * window:
        # Consecutive queries over consecutive keys: each query's window is a strided view.
        band, key_pos = _window_band(win_kv, band_start, int(q_pos[0]), n, window)
        win_ok = key_pos >= band_start
        parts = [torch.bmm(q, band).masked_fill(~win_ok.unsqueeze(1), -torch.inf)]
    else:
        d = q_pos.unsqueeze(1) - win_pos.unsqueeze(0)  # [n, m]
        win_ok = (d >= 0) & (d < window)
        s_win = (qf @ win_kv.t()).view(n, n_heads, -1)
        parts = [s_win.masked_fill(~win_ok.unsqueeze(1), -torch.inf)]
    gathered = None
    if comp_kv is not None and comp_kv.shape[0]:
        if comp_idx is None:
            ok = torch.arange(comp_kv.shape[0]) < ((q_pos + 1) // ratio).unsqueeze(1)
            s = (qf @ comp_kv.t()).view(n, n_heads, -1)
        else:
            ok = comp_idx >= 0
            gathered = comp_kv[comp_idx.clamp(min=0)]  # [n, k, hd]
            s = torch.bmm(q, gathered.transpose(1, 2))
        parts.append(s.masked_fill(~ok.unsqueeze(1), -torch.inf))
    parts.append(sink.float().view(1, n_heads, 1).expand(n, n_heads, 1))
    probs = torch.softmax(torch.cat(parts, dim=-1), dim=-1)
    m = parts[0].shape[-1]
    if band is not None:
        out = torch.bmm(probs[..., :m], band.transpose(1, 2))
    else:
        out = (probs[..., :m].reshape(n * n_heads, m) @ win_kv).view(n, n_heads, hd)
    if len(parts) == 3:
        pc = probs[..., m:-1]
        if gathered is None:
            out = out + (pc.reshape(n * n_heads, -1) @ comp_kv).view(n, n_heads, hd)
        else:
            out = out + torch.bmm(pc, gathered)
    return out


def _window_band(
    kv: torch.Tensor, kv_start: int, q_start: int, n: int, window: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per query, the kv rows of its window as a view [n, hd, window], and their positions."""
    first = q_start - window + 1  # position of query 0's oldest window key
    offset = first - kv_start
    if offset < 0:  # the sequence starts inside the window: pad (masked by position)
        kv = torch.cat((kv.new_zeros(-offset, kv.shape[1]), kv))
        offset = 0
    band = kv[offset : offset + n + window - 1].unfold(0, window, 1)
    key_pos = torch.arange(n).unsqueeze(1) + (first + torch.arange(window))
    return band, key_pos


class Attention(nn.Module):
    """Shared-KV multi-query attention over a sliding window and, per ratio, compressed kv."""

    def __init__(self, cfg: ModelConfig, ratio: int) -> None:
        super().__init__()
        self.cfg = cfg
        self.ratio = ratio
        self.n_heads = cfg.n_heads
        self.head_dim = cfg.head_dim
        self.window = cfg.window_size
        self.wq_a = nn.Linear(cfg.dim, cfg.q_lora_rank, bias=False)
        self.q_norm = RMSNorm(cfg.q_lora_rank, cfg.norm_eps)
        self.wq_b = nn.Linear(cfg.q_lora_rank, cfg.n_heads * cfg.head_dim, bias=False)
        self.wkv = nn.Linear(cfg.dim, cfg.head_dim, bias=False)
        self.kv_norm = RMSNorm(cfg.head_dim, cfg.norm_eps)
        group_in = cfg.n_heads * cfg.head_dim // cfg.o_groups
        self.wo_a = nn.Linear(group_in, cfg.o_groups * cfg.o_lora_rank, bias=False)
        self.wo_b = nn.Linear(cfg.o_groups * cfg.o_lora_rank, cfg.dim, bias=False)
        self.attn_sink = nn.Parameter(torch.zeros(cfg.n_heads))
        self.rotary = Rotary(cfg, compressed=ratio > 0)
        self.compressor = (
            Compressor(cfg.dim, cfg.head_dim, ratio, cfg.norm_eps, rotate=False) if ratio else None
        )
        self.indexer = Indexer(cfg) if ratio == 4 else None

    def forward(
        self, x: torch.Tensor, starts: list[int], caches: list[LayerCache], *, quant_sim: bool
    ) -> torch.Tensor:
        """x [B, n, dim] (normed) of B sequences, sequence b's tokens at starts[b]..; caches
        are read and advanced by n tokens. Returns [B, n, dim]."""
        bsz, n, _ = x.shape
        pos = torch.tensor(starts).unsqueeze(1) + torch.arange(n)  # [B, n]
        cos, sin = self.rotary(pos)  # [B, n, rd/2]
        qr = self.q_norm(self.wq_a(x))
        q = self.wq_b(qr).float().unflatten(-1, (self.n_heads, self.head_dim))
        q = rms_normalize(q, self.cfg.norm_eps) * self.head_dim**-0.5
        q = apply_rope(q, cos.unsqueeze(-2), sin.unsqueeze(-2))
        kv = apply_rope(self.kv_norm(self.wkv(x)).float(), cos, sin)  # [B, n, hd]
        if quant_sim:
            kv = simulate_kv_fp8(kv, self.rotary)
        if self.indexer is not None:
            iq, iw = self.indexer.queries(x, qr, cos, sin, quant_sim=quant_sim)
        outs = []
        for b in range(bsz):
            lc, start = caches[b], starts[b]
            win_kv = torch.cat((lc.window, kv[b])) if lc.window.shape[0] else kv[b]
            lc_window_len = lc.window.shape[0]
            win_pos = torch.arange(start - lc_window_len, start + n)
            lc.window = win_kv[-self.window :].clone()
            comp_kv = comp_idx = None
            if self.compressor is not None:
                entries, lc.comp_state = self.compressor(
                    x[b], start, lc.comp_state, self.rotary, quant_sim=quant_sim
                )
                lc.comp.append(entries)
                comp_kv = lc.comp.view()
            if self.indexer is not None:
                keys, lc.index_state = self.indexer.compressor(
                    x[b], start, lc.index_state, self.rotary, quant_sim=quant_sim
                )
                lc.index_keys.append(keys)
                comp_idx = select_topk(
                    iq[b], iw[b], lc.index_keys.view(), pos[b], ratio=4, topk=self.indexer.topk
                )
            outs.append(
                sparse_attention(
                    q[b],
                    pos[b],
                    win_kv,
                    win_pos,
                    self.window,
                    self.attn_sink,
                    comp_kv=comp_kv,
                    comp_idx=comp_idx,
                    ratio=self.ratio,
                    band_start=start - lc_window_len,
                )
            )
        o = apply_rope(torch.stack(outs), cos.unsqueeze(-2), sin.unsqueeze(-2), inverse=True)
        return self.project_out(o.to(x.dtype))

    def project_out(self, o: torch.Tensor) -> torch.Tensor:
        """Grouped low-rank output: heads split into g groups, wo_a per group, then wo_b."""
        g = self.cfg.o_groups
        grouped = o.flatten(-2).unflatten(-1, (g, -1))  # [..., g, H*hd/g]
        wa = self.wo_a.weight.view(g, self.cfg.o_lora_rank, -1)
        mid = torch.einsum("...gi,goi->...go", grouped, wa)
        return self.wo_b(mid.flatten(-2))
