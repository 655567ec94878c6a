"""Muon with the DeepSeek-V4 schedule: orthogonalisation, scale, momentum, decay, param split."""

import copy
import math

import torch
from torch import nn

from model.muon import MuonAdamW, build_optimizer, muon_update, newton_schulz, uses_muon


def test_newton_schulz_makes_singular_values_one():
    torch.manual_seed(0)
    for shape in [(32, 64), (64, 32), (48, 48)]:
        g = torch.randn(*shape) @ torch.diag(torch.logspace(-2, 1, shape[1]))[: shape[1]]
        s = torch.linalg.svdvals(newton_schulz(g))
        # The 8 fast steps land singular values in a band around 1; the 2 settling steps
        # pull them close to 1.
        assert s.min() > 0.7 and s.max() < 1.2, (shape, s.min(), s.max())
        u, _, vh = torch.linalg.svd(g, full_matrices=False)
        cos = torch.nn.functional.cosine_similarity(
            newton_schulz(g).flatten(), (u @ vh).flatten(), dim=0
        )
        assert cos > 0.98


def test_update_rms_is_point_18_for_any_shape():
    torch.manual_seed(1)
    for shape in [(16, 256), (256, 16), (96, 96)]:
        buf = torch.zeros(shape)
        upd = muon_update(torch.randn(shape), buf, 0.95)
        rms = upd.pow(2).mean().sqrt().item()
        assert abs(rms - 0.18) < 0.02, (shape, rms)


def test_nesterov_momentum_input_matches_the_formula():
    torch.manual_seed(2)
    g1, g2 = torch.randn(8, 12), torch.randn(8, 12)
    buf = torch.zeros(8, 12)
    muon_update(g1, buf, 0.95)
    assert torch.allclose(buf, g1)
    upd = muon_update(g2, buf, 0.95)
    m2 = 0.95 * g1 + g2
    expected = newton_schulz(g2 + 0.95 * m2) * (math.sqrt(12) * 0.18)
    assert torch.allclose(upd, expected, atol=1e-5)


def test_weight_decay_is_decoupled_and_lr_scaled():
    w = nn.Parameter(torch.ones(4, 6))
    opt = MuonAdamW([{"params": [w], "use_muon": True, "lr": 0.5, "weight_decay": 0.1}])
    w.grad = torch.zeros(4, 6)  # orthogonalising zero gives zero: only the decay acts
    opt.step()
    assert torch.allclose(w, torch.full((4, 6), 1 - 0.5 * 0.1))


class _Named(nn.Module):
    def __init__(self):
        super().__init__()
        self.embed = nn.Embedding(50, 16)
        self.head = nn.Linear(16, 50, bias=False)
        self.wq_a = nn.Linear(16, 8, bias=False)
        self.norm = nn.Parameter(torch.ones(16))
        self.hc_attn_fn = nn.Parameter(torch.randn(24, 64))
        self.hc_attn_base = nn.Parameter(torch.zeros(24))
        self.hc_attn_scale = nn.Parameter(torch.ones(3))
        self.ape = nn.Parameter(torch.zeros(4, 8))


def test_param_split_follows_v4_names():
    names = {n: uses_muon(n, p) for n, p in _Named().named_parameters()}
    assert names == {
        "embed.weight": False,
        "head.weight": False,
        "wq_a.weight": True,
        "norm": False,
        "hc_attn_fn": True,
        "hc_attn_base": False,
        "hc_attn_scale": False,
        "ape": False,
    }
    assert uses_muon("layers.2.attn.compressor.ape", torch.zeros(4, 8)) is False
    assert uses_muon("layers.0.ffn.experts.3.w1.weight", torch.zeros(8, 4)) is True


def test_optimizer_fits_a_linear_map_and_resumes_identically():
    torch.manual_seed(3)
    x = torch.randn(256, 16)
    target = x @ torch.randn(16, 8)

    def make():
        torch.manual_seed(4)
        m = nn.Sequential(nn.Linear(16, 32), nn.Linear(32, 8))
        return m, build_optimizer(m.named_parameters(), muon_lr=0.02, adamw_lr=1e-2)

    def steps(m, opt, n):
        for _ in range(n):
            loss = (m(x) - target).pow(2).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
        return (m(x) - target).pow(2).mean().item()

    m, opt = make()
    start = (m(x) - target).pow(2).mean().item()
    end = steps(m, opt, 150)
    assert end < 0.05 * start

    a, opt_a = make()
    steps(a, opt_a, 5)
    b, opt_b = make()
    # Deep copies: a state_dict shares tensors with the live optimiser, a file would not.
    b.load_state_dict(copy.deepcopy(a.state_dict()))
    opt_b.load_state_dict(copy.deepcopy(opt_a.state_dict()))
    assert steps(a, opt_a, 3) == steps(b, opt_b, 3)
