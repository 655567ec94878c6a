"""The network: official tensor names and shapes, and components against naive formulas."""

import torch

from model import DeepseekV4, ModelConfig
from model.attention import sparse_attention
from model.cache import CompressorState
from model.compressor import compress_blocks
from model.hyper_connections import hc_mix_weights


def test_flash_state_dict_has_official_names_and_shapes():
    cfg = ModelConfig.preset("flash")
    with torch.device("meta"):
        net = DeepseekV4(cfg)
    shapes = {k: tuple(v.shape) for k, v in net.state_dict().items()}
    expected = {
        "embed.weight": (129280, 4096),
        "head.weight": (129280, 4096),
        "norm.weight": (4096,),
        "hc_head_fn": (4, 4 * 4096),
        "hc_head_base": (4,),
        "hc_head_scale": (1,),
        "layers.0.hc_attn_fn": (24, 4 * 4096),
        "layers.0.hc_ffn_base": (24,),
        "layers.0.hc_attn_scale": (3,),
        "layers.0.attn.wq_a.weight": (1024, 4096),
        "layers.0.attn.q_norm.weight": (1024,),
        "layers.0.attn.wq_b.weight": (64 * 512, 1024),
        "layers.0.attn.wkv.weight": (512, 4096),
        "layers.0.attn.kv_norm.weight": (512,),
        "layers.0.attn.wo_a.weight": (8 * 1024, 64 * 512 // 8),
        "layers.0.attn.wo_b.weight": (4096, 8 * 1024),
        "layers.0.attn.attn_sink": (64,),
        "layers.0.ffn.gate.tid2eid": (129280, 6),
        "layers.2.attn.compressor.wkv.weight": (1024, 4096),
        "layers.2.attn.compressor.wgate.weight": (1024, 4096),
        "layers.2.attn.compressor.ape": (4, 1024),
        "layers.2.attn.compressor.norm.weight": (512,),
        "layers.2.attn.indexer.wq_b.weight": (64 * 128, 1024),
        "layers.2.attn.indexer.weights_proj.weight": (64, 4096),
        "layers.2.attn.indexer.compressor.wkv.weight": (256, 4096),
        "layers.2.attn.indexer.compressor.ape": (4, 256),
        "layers.2.attn.indexer.compressor.norm.weight": (128,),
        "layers.3.attn.compressor.ape": (128, 512),
        "layers.3.ffn.gate.weight": (256, 4096),
        "layers.3.ffn.gate.bias": (256,),
        "layers.3.ffn.experts.255.w1.weight": (2048, 4096),
        "layers.3.ffn.experts.255.w2.weight": (4096, 2048),
        "layers.3.ffn.shared_experts.w3.weight": (2048, 4096),
        "mtp.0.e_proj.weight": (4096, 4096),
        "mtp.0.h_proj.weight": (4096, 4096),
        "mtp.0.enorm.weight": (4096,),
        "mtp.0.hnorm.weight": (4096,),
        "mtp.0.norm.weight": (4096,),
        "mtp.0.hc_head_fn": (4, 4 * 4096),
        "mtp.0.attn.wkv.weight": (512, 4096),
        "mtp.0.ffn.gate.bias": (256,),
    }
    for name, shape in expected.items():
        assert shapes.get(name) == shape, name
    assert "layers.3.attn.indexer.wq_b.weight" not in shapes  # HCA: no indexer
    assert "layers.3.ffn.gate.tid2eid" not in shapes and "layers.0.ffn.gate.bias" not in shapes
    assert not any("inv_freq" in k or "rotary" in k for k in shapes)
    assert not any(k.startswith("mtp.0.embed") or k.startswith("mtp.0.head") for k in shapes)
    n_params = sum(torch.Size(s).numel() for s in shapes.values())
    assert 280e9 < n_params < 300e9  # V4-Flash: 284B parameters


def test_forward_is_causal_and_batched():
    torch.manual_seed(0)
    # Without the rounding simulations the logits do not depend on how rows are batched;
    # with them, a last-bit difference between matmul shapes can move a value across an
    # FP8/FP4 rounding boundary.
    cfg = ModelConfig.preset("tiny", quant_sim=False)
    net = DeepseekV4(cfg).eval()
    ids = torch.randint(0, cfg.vocab_size, (2, 150))
    full = net(ids)
    assert full.shape == (2, 150, cfg.vocab_size) and full.dtype == torch.float32
    prefix = net(ids[:1, :97])
    assert (full[0, :97] - prefix[0]).abs().max() < 1e-4
    alone = net(ids[1:])
    assert (full[1] - alone[0]).abs().max() < 1e-4


def test_quant_sim_is_a_switch():
    torch.manual_seed(0)
    cfg = ModelConfig.preset("tiny")
    net = DeepseekV4(cfg).eval()
    ids = torch.randint(0, cfg.vocab_size, (1, 140))
    on = net(ids)
    net.quant_sim = False
    off = net(ids)
    diff = (on - off).abs().max()
    assert diff > 1e-3 and torch.isfinite(on).all()


def test_mtp_block_drafts_logits():
    torch.manual_seed(0)
    cfg = ModelConfig.preset("tiny")
    net = DeepseekV4(cfg).eval()
    ids = torch.randint(0, cfg.vocab_size, (1, 40))
    cache = net.new_cache()
    with torch.no_grad():
        streams = net.forward_streams(ids[:, :-1], [cache])
        draft = net.mtp_logits(streams, ids[:, 1:])
    assert draft.shape == (1, 39, cfg.vocab_size) and torch.isfinite(draft).all()


def test_overlap_compressor_matches_the_per_entry_formula():
    torch.manual_seed(0)
    ratio, width, n = 4, 8, 22
    kv, score = torch.randn(n, 2 * width), torch.randn(n, 2 * width)
    ape = torch.randn(ratio, 2 * width)
    state = CompressorState.empty(width, overlap=True)
    # Any split of the tokens gives the same entries as one call.
    a, st = compress_blocks(kv[:7], score[:7], ape, state, ratio=ratio, width=width)
    b, st = compress_blocks(kv[7:], score[7:], ape, st, ratio=ratio, width=width)
    got = torch.cat((a, b))
    assert got.shape == (n // ratio, width) and st.tail_kv.shape[0] == n % ratio
    sc = score + ape.repeat(n // ratio + 1, 1)[:n]
    for i in range(n // ratio):
        rows = list(range(i * ratio, (i + 1) * ratio))
        k = [kv[r, width:] for r in rows]
        s = [sc[r, width:] for r in rows]
        if i:
            k += [kv[r - ratio, :width] for r in rows]
            s += [sc[r - ratio, :width] for r in rows]
        k, s = torch.stack(k), torch.stack(s)
        assert torch.allclose(got[i], (k * s.softmax(0)).sum(0), atol=1e-6)


def test_sparse_attention_matches_dense_masked_softmax():
    torch.manual_seed(0)
    n, heads, hd, window, ratio = 5, 3, 16, 4, 4
    q = torch.randn(n, heads, hd)
    q_pos = torch.arange(20, 25)
    win_kv, win_pos = torch.randn(9, hd), torch.arange(16, 25)
    comp = torch.randn(6, hd)
    sink = torch.randn(heads)
    idx = torch.tensor([[0, 3, -1], [1, 2, 4], [5, -1, -1], [0, 1, 2], [4, 5, 3]])
    got = sparse_attention(q, q_pos, win_kv, win_pos, window, sink, comp_kv=comp, comp_idx=idx)
    for t in range(n):
        keys = [win_kv[j] for j in range(9) if 0 <= q_pos[t] - win_pos[j] < window]
        keys += [comp[i] for i in idx[t].tolist() if i >= 0]
        k = torch.stack(keys)
        logits = torch.cat((q[t] @ k.t(), sink.unsqueeze(1)), dim=1)
        ref = logits.softmax(-1)[:, :-1] @ k
        assert torch.allclose(got[t], ref, atol=1e-5)
    dense = sparse_attention(q, q_pos, win_kv, win_pos, window, sink, comp_kv=comp, ratio=ratio)
    for t in range(n):
        keys = [win_kv[j] for j in range(9) if 0 <= q_pos[t] - win_pos[j] < window]
        keys += [comp[i] for i in range(6) if i < (q_pos[t] + 1) // ratio]
        k = torch.stack(keys)
        logits = torch.cat((q[t] @ k.t(), sink.unsqueeze(1)), dim=1)
        assert torch.allclose(dense[t], logits.softmax(-1)[:, :-1] @ k, atol=1e-5)


def test_hc_comb_is_doubly_stochastic():
    torch.manual_seed(0)
    hc, d = 4, 8
    streams = torch.randn(3, hc, d)
    fn = 0.1 * torch.randn((2 + hc) * hc, hc * d)
    base, scale = 0.1 * torch.randn((2 + hc) * hc), torch.ones(3)
    pre, post, comb = hc_mix_weights(
        streams, fn, base, scale, sinkhorn_iters=20, eps=1e-6, norm_eps=1e-6
    )
    assert torch.allclose(comb.sum(-1), torch.ones(3, hc), atol=1e-3)
    assert torch.allclose(comb.sum(-2), torch.ones(3, hc), atol=1e-3)
    assert (pre > 0).all() and (post > 0).all() and (post < 2).all()
