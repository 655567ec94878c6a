"""The decode step's shortcuts: fused weights follow the parameters; the chunked top-k."""

import torch

from model import DeepseekV4, ModelConfig
from model.engine import Engine
from model.indexer import _topk_by_chunks


def test_fused_weights_follow_weights_changed_after_a_decode_step():
    torch.manual_seed(0)
    net = DeepseekV4(ModelConfig.preset("tiny", quant_sim=False))
    engine = Engine(net)
    ids = torch.randint(0, 8192, (40,), generator=torch.Generator().manual_seed(1)).tolist()
    warm = engine.new_session()
    engine.extend(warm, ids[:39])
    engine.extend(warm, ids[39:])  # a decode step: every fused weight is made
    with torch.no_grad():  # in place (an optimiser step, load_state_dict) and by `.data =`
        net.layers[2].attn.indexer.compressor.wgate.weight.mul_(3.0)
        net.layers[4].attn.wq_b.weight.add_(0.01)
        net.layers[1].ffn.gate.weight.mul_(-1.0)
        for e in net.layers[3].ffn.experts:
            e.w3.weight.data = e.w3.weight.data * 2.0
        net.layers[0].attn.kv_norm.weight.mul_(0.5)
    s = engine.new_session()
    engine.extend(s, ids[:39])  # prefill: the modules' own weights
    decoded = engine.extend(s, ids[39:])  # decode: the fused copies
    full = net(torch.tensor([ids]))[0, -1]
    assert (decoded - full).abs().max().item() <= 1e-4


def test_chunked_topk_finds_the_same_values_and_untied_entries():
    g = torch.Generator().manual_seed(0)
    for n in (1024 * 40, 1024 * 40 + 17, 300_000):
        distinct = torch.randn(n, generator=g).relu_()  # ReLU: many exact zeros as well
        tied = torch.randint(0, 40, (n,), generator=g).float()  # ties everywhere
        for scores in (distinct, tied):
            for m in (1, 9, 33):
                want = scores.topk(m)
                vals, idx = _topk_by_chunks(scores, m)
                assert torch.equal(vals, want.values)
                assert torch.equal(scores[idx], vals)
                if scores is distinct and want.values[-1] > 0:
                    assert torch.equal(idx.sort().values, want.indices.sort().values)


def test_weights_over_the_fuse_limit_are_used_as_they_are(monkeypatch):
    import model.fused

    monkeypatch.setattr(model.fused, "FUSE_MAX_BYTES", 0)  # as a real checkpoint's weights
    torch.manual_seed(0)
    net = DeepseekV4(ModelConfig.preset("tiny", quant_sim=False))
    engine = Engine(net)
    ids = torch.randint(0, 8192, (40,), generator=torch.Generator().manual_seed(2)).tolist()
    s = engine.new_session()
    engine.extend(s, ids[:39])
    decoded = engine.extend(s, ids[39:])
    full = net(torch.tensor([ids]))[0, -1]
    assert (decoded - full).abs().max().item() <= 1e-4
    fused = [m for mod in net.modules() for m in vars(mod).values()]
    fused = [f for f in fused if isinstance(f, model.fused.FusedWeight)]
    assert fused and all(not f.fused and f._weight.numel() == 0 for f in fused)  # no copies


def test_fp8_rounding_of_one_block_matches_the_blocked_tensor_path():
    from model.fp_formats import fp8_simulate, fp8_simulate_

    g = torch.Generator().manual_seed(0)
    for t in range(2000):
        x = torch.randn(1, 1, 128, generator=g) * 2.0 ** (t % 19 - 12)
        if t % 7 == 0:
            x[..., :64] = 0  # the 1e-4 floor of max |x|
        if t % 11 == 0:
            x[..., 3] = 448 * 2.0 ** (t % 13 - 6)  # a scale that is already a power of two
        want = torch.cat((fp8_simulate(x[..., :64], 64), x[..., 64:]), dim=-1)
        got = x.clone()
        fp8_simulate_(got[..., :64], 64)  # one block: the scale as a Python float
        assert torch.equal(got, want)
