"""Attention of V4: q-LoRA, one shared KV head, sink, grouped low-rank output, CSA / HCA."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from model.cache import LayerCache
from model.compressor import Compressor, simulate_kv_fp8
from model.config import ModelConfig
from model.fused import FusedWeight
from model.indexer import Indexer, select_topk, select_topk_one
from model.norm import RMSNorm, fp32, rms_normalize, scalar
from model.rope import Rotary, StepPositions, rotate


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
        # The decode step's products: everything that reads x, and everything that reads qr.
        reads_x = [self.wq_a, self.wkv]
        reads_qr = [self.wq_b]
        if self.compressor is not None:
            reads_x += [self.compressor.wkv, self.compressor.wgate]
        if self.indexer is not None:
            ic = self.indexer.compressor
            reads_x += [self.indexer.weights_proj, ic.wkv, ic.wgate]
            reads_qr.append(self.indexer.wq_b)
        self._reads_x = FusedWeight([m.weight for m in reads_x])
        self._reads_qr = FusedWeight([m.weight for m in reads_qr])
        self._row_scales_key: tuple[int, int] | None = None
        self._row_scales_cached = torch.empty(0)

    def forward(
        self,
        x: torch.Tensor,
        starts: list[int],
        caches: list[LayerCache],
        *,
        quant_sim: bool,
        positions: StepPositions | None = None,
    ) -> torch.Tensor:
        """x [B, n, dim] (normed) of B sequences, sequence b's tokens at starts[b]..; caches
        are read and advanced by n tokens. `positions` (of these starts and n) shares the RoPE
        factors between layers. Returns [B, n, dim]."""
        bsz, n, _ = x.shape
        if positions is None:
            positions = StepPositions(starts, n)
        if n == 1 and not torch.is_grad_enabled():
            return self._decode(x, starts, caches, positions, quant_sim=quant_sim)
        pos = positions.pos  # [B, n]
        cis = positions.cis(self.rotary)  # [B, n, rd/2]
        fresh = not torch.is_grad_enabled()  # new tensors may be rotated in place
        qr = self.q_norm(self.wq_a(x))
        q = fp32(self.wq_b(qr)).unflatten(-1, (self.n_heads, self.head_dim))
        q = rms_normalize(q, self.cfg.norm_eps) * scalar(self.head_dim**-0.5)
        q = rotate(q, cis.unsqueeze(-2), inplace=fresh)
        kv = rotate(fp32(self.kv_norm(self.wkv(x))), cis, inplace=fresh)  # [B, n, hd]
        if quant_sim:
            kv = simulate_kv_fp8(kv, self.rotary, inplace=fresh)
        iq = iw = None
        if self.indexer is not None:
            iq, iw = self.indexer.queries(x, qr, cis, quant_sim=quant_sim)
        outs = []
        for b in range(bsz):
            lc, start = caches[b], starts[b]
            comp_kv = None
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
            if n == 1:
                outs.append(self._attend_one(q[b, 0], kv[b], lc, start, comp_kv, iq, iw, b))
                continue
            comp_idx = None
            if self.indexer is not None:
                comp_idx = select_topk(
                    iq[b], iw[b], lc.index_keys.view(), pos[b], ratio=4, topk=self.indexer.topk
                )
            win_kv = torch.cat((lc.window, kv[b])) if lc.window.shape[0] else kv[b]
            lc_window_len = lc.window.shape[0]
            win_pos = torch.arange(start - lc_window_len, start + n)
            lc.window = win_kv[-self.window :].clone()
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
        o = outs[0].unsqueeze(0) if bsz == 1 else torch.stack(outs)
        o = rotate(o, cis.conj().unsqueeze(-2), inplace=fresh)
        return self.project_out(o.to(x.dtype))

    def _decode(
        self,
        x: torch.Tensor,
        starts: list[int],
        caches: list[LayerCache],
        positions: StepPositions,
        *,
        quant_sim: bool,
    ) -> torch.Tensor:
        """`forward` for one new token per sequence, outside autograd: the same maths with
        each group of projections that reads one input made as one product."""
        # Submodules read from their dict (nn.Module's __getattr__ costs ~0.5 us a name; None
        # is kept outside it) and called at their methods (the decode step runs no hooks).
        m = self._modules
        rotary, compressor, indexer = m["rotary"], m.get("compressor"), m.get("indexer")
        cis = positions.cis(rotary)  # [B, 1, rd/2]
        h = self._reads_x.linear(x).split_with_sizes(self._reads_x.sizes, -1)
        qr = m["q_norm"].forward(h[0])
        hq = self._reads_qr.linear(qr).split_with_sizes(self._reads_qr.sizes, -1)
        # q's heads and kv as the rows of one tensor [B, H + 1, hd]: normalised, scaled (q by
        # hd^-0.5, kv by kv_norm's weight) and rotated by one op each, not two.
        bsz, n_heads = x.shape[0], self.n_heads
        rows = torch.cat((fp32(hq[0]).view(bsz, n_heads, -1), fp32(h[1])), dim=1)
        rows = rms_normalize(rows, self.cfg.norm_eps) * self._row_scales()
        if h[1].dtype != torch.float32:  # kv_norm returns x's dtype
            rows[:, n_heads].copy_(rows[:, n_heads].to(h[1].dtype))
        rows = rotate(rows, cis, inplace=True)
        q, kv = rows[:, :n_heads], rows[:, n_heads:]  # [B, H, hd], [B, 1, hd]
        if quant_sim:
            simulate_kv_fp8(kv, rotary, inplace=True)
        iq = iw = None
        if indexer is not None:
            iq, iw = indexer.finish_queries(hq[1], h[4], cis, quant_sim=quant_sim)
        outs = []
        for b, (lc, start) in enumerate(zip(caches, starts, strict=True)):
            comp_kv = None
            if compressor is not None:
                entries, lc.comp_state = compressor.compress(
                    fp32(h[2][b]),
                    fp32(h[3][b]),
                    start,
                    lc.comp_state,
                    rotary,
                    quant_sim=quant_sim,
                )
                lc.comp.append(entries)
                comp_kv = lc.comp.view()
            if indexer is not None:
                keys, lc.index_state = indexer._modules["compressor"].compress(
                    fp32(h[5][b]),
                    fp32(h[6][b]),
                    start,
                    lc.index_state,
                    rotary,
                    quant_sim=quant_sim,
                )
                lc.index_keys.append(keys)
            outs.append(self._attend_one(q[b], kv[b], lc, start, comp_kv, iq, iw, b))
        o = outs[0].unsqueeze(0) if len(outs) == 1 else torch.stack(outs)
        o = rotate(o, positions.cis_conj(rotary).unsqueeze(-2), inplace=True)
        return self.project_out(o.to(x.dtype))

    def _row_scales(self) -> torch.Tensor:
        """[H + 1, hd]: hd^-0.5 for each query head's row, kv_norm's weight for kv's."""
        w = self._modules["kv_norm"]._parameters["weight"]
        key = (w._version, w.data_ptr())
        if self._row_scales_key != key:
            q_scale = torch.full((self.n_heads, self.head_dim), self.head_dim**-0.5)
            self._row_scales_cached = torch.cat((q_scale, w.detach().float().view(1, -1)))
            self._row_scales_key = key
        return self._row_scales_cached

    def _attend_one(
        self,
        q: torch.Tensor,
        kv: torch.Tensor,
        lc: LayerCache,
        pos: int,
        comp_kv: torch.Tensor | None,
        iq: torch.Tensor | None,
        iw: torch.Tensor | None,
        b: int,
    ) -> torch.Tensor:
        """`sparse_attention` for a single new token q [H, hd] (kv [1, hd], the caches already
        holding its compressed entries): every key it reads is visible, so nothing is masked
        and HCA reads the compressed entries in place. Returns [1, H, hd]."""
        win = lc.window
        if win.shape[0] >= self.window:  # the oldest position leaves the window
            win = win[1 - self.window :] if self.window > 1 else win[:0]
        win = lc.window = torch.cat((win, kv))  # positions pos - len + 1 .. pos
        sink = fp32(self._parameters["attn_sink"]).unsqueeze(1)  # [H, 1]
        if comp_kv is None:
            probs = torch.softmax(torch.cat((F.linear(q, win), sink), dim=1), dim=1)
            return (probs[:, :-1] @ win).unsqueeze(0)
        comp_kv = comp_kv[: (pos + 1) // self.ratio]  # the entries this token may see
        if iq is not None:  # CSA: the indexer's top-k entries join the window's keys
            topk = self._modules["indexer"].topk
            chosen = select_topk_one(iq[b, 0], iw[b, 0], lc.index_keys.view(), topk)
            keys = torch.cat((win, comp_kv[chosen]))
            probs = torch.softmax(torch.cat((F.linear(q, keys), sink), dim=1), dim=1)
            return (probs[:, :-1] @ keys).unsqueeze(0)
        m = win.shape[0]  # HCA: all entries, scored where they lie (no copy of the cache)
        scores = torch.cat((F.linear(q, win), F.linear(q, comp_kv), sink), dim=1)
        probs = torch.softmax(scores, dim=1)
        out = torch.addmm(probs[:, :m] @ win, probs[:, m:-1], comp_kv)
        return out.unsqueeze(0)

    def project_out(self, o: torch.Tensor) -> torch.Tensor:
        """Grouped low-rank output: heads split into g groups, wo_a per group, then wo_b."""
        g = self.cfg.o_groups
        lead = o.shape[:-2]
        m = self._modules  # not __getattr__ (~0.5 us a name)
        wa = m["wo_a"]._parameters["weight"].view(g, self.cfg.o_lora_rank, -1)  # [g, r, i]
        grouped = o.reshape(-1, g, o.shape[-2] * o.shape[-1] // g)  # [N, g, i]
        if grouped.shape[0] == 1:  # one token: [g, 1, i] and [g, 1, r] are plain views
            mid = torch.bmm(grouped.view(g, 1, -1), wa.transpose(1, 2))
        else:
            mid = torch.bmm(grouped.transpose(0, 1), wa.transpose(1, 2)).transpose(0, 1)
        return F.linear(mid.reshape(*lead, -1), m["wo_b"]._parameters["weight"])
